/**
 * The running agent, assembled from a resolved configuration: the control
 * socket, the session manager, the listener, the outbound targets and the
 * metrics endpoint, started in that order and closed together. `agent start`
 * (cli/commands/start.ts) only reads flags, prints, and handles signals.
 *
 * @example
 * ```ts
 * const daemon = await startDaemon(await loadDaemonSettings(config, true));
 * daemon.reload(await loadDaemonSettings(config, false)); // on SIGHUP
 * await daemon.close();
 * ```
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import type { AcceptedKey } from "../core/secure/opening.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { droppedLogLines, log } from "../runtime/log.ts";
import { proxyFor } from "../runtime/proxy.ts";
import { hostCommand } from "../runtime/self.ts";
import { formatHost } from "../runtime/tcp.ts";
import { parseFingerprint } from "../runtime/tls.ts";
import { type AgentConfig, transferWindowNote } from "./config.ts";
import { ConfigError } from "../runtime/errors.ts";
import { type ControlHandlers, controlPath, serveControl } from "./control.ts";
import { OutboundTarget, type OutboundTargetConfig } from "./dialer.ts";
import { cleanStaleChannels, type HostProcess } from "./host-process.ts";
import { ensureStateDir, type KeyScopes, loadAgentKeys } from "./keystore.ts";
import { type ProductAccount, resolveProductUsers } from "./product-users.ts";
import { serveMetrics } from "./metrics.ts";
import { AgentServer } from "./server.ts";
import { SessionManager, type SessionPeer, sessionSettings } from "./sessions.ts";
import type { SessionsSnapshot } from "./session-records.ts";

/** Everything a start needs, read and checked: what `agent start --check` reports and each reload applies. */
export interface DaemonSettings {
  config: AgentConfig;
  keys: AcceptedKey[];
  /** The products each key may use. */
  scopes: KeyScopes;
  /** The user each product's hosts run as, resolved (products without one run as the agent). */
  accounts: Map<string, ProductAccount>;
  /** The key created now because none was configured (a first start), to show once. */
  generated: { hex: string; file: string } | null;
  /** Each outbound target with its trust settings (CA and fingerprint read). */
  trust: OutboundTargetConfig[];
}

/** What a hand-over passes to the next agent version, besides the hosts' pipes (agent/upgrade.ts). */
export interface HandedOver {
  /** A copy of the listening socket's descriptor, or null when not listening. */
  listenFd: number | null;
  sessions: SessionsSnapshot;
}

/** How a start carries on from an earlier version (agent/takeover.ts). */
export interface Takeover {
  listenFd: number | null;
  sessions: SessionsSnapshot;
  /** Each session's host, already mapped and its pipes taken over, by session id. */
  hosts: ReadonlyMap<string, HostProcess>;
  /** Channel files the sessions use: not left-overs, whatever the run directory holds. */
  keepChannels: ReadonlySet<string>;
}

/** A started agent. */
export interface Daemon {
  readonly server: AgentServer;
  readonly sessions: SessionManager;
  readonly outbound: OutboundTarget[];
  /** Applies new keys and products at once; names the settings that need a restart. */
  reload(next: DaemonSettings): void;
  /**
   * Stops serving for a hand-over: no new connections are accepted (they wait in the listen
   * queue), every connection but `keep` closes, the sessions stop; returns what the next version
   * takes over. {@link takeBack} undoes it.
   */
  handOver(keep?: object): Promise<HandedOver>;
  /** Serves again after a hand-over that did not happen. */
  takeBack(handed: HandedOver): Promise<void>;
  /** Answers `agent upgrade` on the control socket; set by whoever can hand over. */
  upgrade?: (file: string | undefined) => Promise<unknown>;
  /** Stops listening and dialing, ends every session, closes the control socket and the metrics endpoint. */
  close(): Promise<void>;
}

/** Settings a running agent cannot change without a restart. */
const RESTART_ONLY = [
  "host",
  "port",
  "stateDir",
  "insecure",
  "listen",
  "connect",
  "handshakeTimeoutSeconds",
  "maxHandshakes",
  "keepaliveSeconds",
  "dialTimeoutSeconds",
  "metrics",
  "proxy",
  "warmHosts",
  "productUsers",
] as const;

/** Reads the keys and outbound trust `config` names; with `createKey`, a first start creates the key. */
export async function loadDaemonSettings(config: AgentConfig, createKey: boolean): Promise<DaemonSettings> {
  if (createKey) ensureStateDir(config.stateDir);
  if (config.insecure && config.connect.length > 0) {
    throw new ConfigError(
      "--insecure applies to inbound connections only; outbound connections always use TLS and the key",
    );
  }
  const trust = outboundTrust(config);
  const accounts = resolveProductUsers(config.productUsers);
  const loaded = config.insecure
    ? { keys: [], scopes: new Map(), generated: null }
    : await loadAgentKeys(config, createKey);
  return { config, trust, accounts, ...loaded };
}

/**
 * Starts the agent. `internalErrors` counts the errors the process caught
 * (the metrics endpoint reports it). A start that fails part way closes what
 * it had started.
 */
export async function startDaemon(
  settings: DaemonSettings,
  internalErrors: () => number,
  takeover?: Takeover,
): Promise<Daemon> {
  const { config, keys } = settings;
  // The control socket first: it refuses while another agent runs on this state directory, and
  // only then is it safe to treat channel files as left over.
  let daemon: Daemon | null = null;
  const handlers: ControlHandlers = {
    status: () => daemon?.server.status(),
    upgrade: (file) => daemon?.upgrade ? daemon.upgrade(file) : Promise.reject(new Error("this agent cannot upgrade")),
    // An upgrade's answer is out: the old agent need not linger for it.
    answered: (line) => line.includes('"upgrade"') && daemon?.server.upgrader?.leaveNow?.(),
  };
  const endpoints: Endpoints = { control: await serveControl(controlPath(config.stateDir), handlers), metrics: null };
  const runDir = path.join(config.stateDir, "run");
  const stale = cleanStaleChannels(runDir, takeover?.keepChannels);
  if (stale > 0) log.warn(`removed ${stale} channel file(s) left by an agent that did not stop cleanly`);
  const windowNote = transferWindowNote(config);
  if (windowNote) log.warn(windowNote);
  const sessions = new SessionManager(sessionSettings(config, {
    runDir,
    hostCommand: hostCommand(),
    log,
    keyScopes: config.insecure ? null : settings.scopes,
    accounts: settings.accounts,
  }));
  if (takeover) sessions.adopt(takeover.sessions, takeover.hosts);
  const provider = runtimeCryptoProvider();
  const server = new AgentServer(config, keys, provider, sessions);
  const outbound = outboundTargets(settings, server, sessions, provider);
  server.outbound = outbound;
  const started: Daemon = daemon = {
    server,
    sessions,
    outbound,
    reload: (next) => reload(started, settings, next),
    close: async () => {
      const { control, metrics } = endpoints;
      await Promise.all([server.close(), control.close(), metrics?.close(), ...outbound.map((t) => t.stop())]);
    },
    ...handOverSteps(() => started, endpoints, {
      reopenControl: () => serveControl(controlPath(config.stateDir), handlers),
      reopenMetrics: () => config.metrics ? serveHealth(started, config, internalErrors) : Promise.resolve(null),
    }),
  };
  try {
    if (config.listen) await listen(server, settings, takeover?.listenFd ?? undefined);
    dial(outbound, keys[0]);
    if (config.metrics) endpoints.metrics = await serveHealth(started, config, internalErrors);
  } catch (e) {
    if (!takeover) await started.close(); // after a hand-over the hosts are this process's alone: let them be
    throw e;
  }
  return started;
}

/** The control socket and the metrics endpoint: closed for a hand-over, opened again if it does not happen. */
interface Endpoints {
  control: { close(): Promise<void> };
  metrics: { close(): Promise<void> } | null;
}

/** {@link Daemon.handOver} and {@link Daemon.takeBack} over the started parts. */
function handOverSteps(
  daemon: () => Daemon,
  endpoints: Endpoints,
  reopen: {
    reopenControl(): Promise<Endpoints["control"]>;
    reopenMetrics(): Promise<Endpoints["metrics"]>;
  },
): Pick<Daemon, "handOver" | "takeBack"> {
  // Each step notes what it did, so that taking back after a failure part-way undoes exactly that.
  let closed = { control: false, outbound: false };
  let kept: OutboundTarget[] = [];
  const takeBack = async (handed: HandedOver) => {
    const { server, sessions, outbound } = daemon();
    sessions.thaw();
    if (handed.listenFd !== null) await server.listen(handed.listenFd);
    if (closed.control) {
      endpoints.control = await reopen.reopenControl();
      endpoints.metrics = await reopen.reopenMetrics();
    }
    if (closed.outbound) { for (const t of outbound) if (!kept.includes(t)) t.start(); }
    closed = { control: false, outbound: false };
    kept = [];
  };
  const handOver = async (keep?: object) => {
    const { server, sessions, outbound } = daemon();
    let listenFd: number | null = null;
    try {
      await sessions.freeze(QUIESCE_TIMEOUT_MS);
      listenFd = server.stopAccepting();
      closed = { control: true, outbound: true };
      // An outbound connection that pushed the update stays, for the answer; it ends with this process.
      kept = outbound.filter((t) => t.serves(keep));
      const stopping = outbound.filter((t) => !kept.includes(t)).map((t) => t.stop());
      await Promise.all([endpoints.control.close(), endpoints.metrics?.close(), ...stopping]);
      if (kept.length > 0) sessions.disconnected(keep as SessionPeer);
      endpoints.metrics = null;
      server.closeConnections(keep);
      await sessions.quiesce(QUIESCE_TIMEOUT_MS);
      return { listenFd, sessions: sessions.snapshot() };
    } catch (e) {
      await takeBack({ listenFd, sessions: { nextAttachment: 0, sessions: [] } });
      throw e;
    }
  };
  return { handOver, takeBack };
}

/** Longest a hand-over waits for the hosts to take the requests already on their way. */
const QUIESCE_TIMEOUT_MS = 10_000;

function outboundTargets(
  settings: DaemonSettings,
  server: AgentServer,
  sessions: SessionManager,
  provider: ReturnType<typeof runtimeCryptoProvider>,
): OutboundTarget[] {
  const { config, keys } = settings;
  return settings.trust.map((t) =>
    new OutboundTarget(t, {
      key: keys[0],
      provider,
      sessions,
      startedAt: server.startedAt,
      handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
      dialTimeoutMs: config.dialTimeoutSeconds * 1000,
      keepaliveMs: config.keepaliveSeconds * 1000,
      log,
    })
  );
}

async function listen(server: AgentServer, { config, keys }: DaemonSettings, inheritedFd?: number) {
  const address = await server.listen(inheritedFd);
  const mode = config.insecure
    ? "INSECURE plaintext mode"
    : `key mode, accepting key id${keys.length > 1 ? "s" : ""} ${keys.map((k) => k.id).join(", ")}`;
  log.info(`listening on ${formatHost(address.host)}:${address.port} (${mode}); state in ${config.stateDir}`);
}

function dial(outbound: OutboundTarget[], key: AcceptedKey) {
  for (const t of outbound) {
    const proxy = t.target.proxy ? ` through the proxy ${t.target.proxy.host}` : "";
    log.info(`outbound: dialing ${t.address} over TLS as key id ${key.id}${proxy}`);
    t.start();
  }
}

/** The health and metrics endpoint (`--metrics`); a port it cannot bind is a configuration error. */
async function serveHealth(daemon: Daemon, config: AgentConfig, internalErrors: () => number) {
  const counters = () => {
    const t = daemon.server.traffic();
    return {
      bytesReceived: t.received,
      bytesSent: t.sent,
      internalErrors: internalErrors(),
      logLinesDropped: droppedLogLines(),
    };
  };
  const { host, port } = config.metrics!;
  const metrics = await serveMetrics(host, port, () => daemon.server.status(), counters, config.listen).catch((e) => {
    throw new ConfigError((e as Error).message);
  });
  const address = `${formatHost(metrics.address.host)}:${metrics.address.port}`;
  log.info(`health and metrics on http://${address}/ (healthz, readyz, metrics)`);
  return metrics;
}

/** Keys and products change at once; settings that need a restart are named in a warning. */
function reload(daemon: Daemon, running: DaemonSettings, next: DaemonSettings) {
  const { config } = next;
  const changed = RESTART_ONLY.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(running.config[k]));
  const graceSeconds = config.revokedKeyGraceSeconds;
  const { added, removed } = daemon.server.replaceKeys(next.keys, graceSeconds * 1000);
  daemon.sessions.settings.products = config.products;
  daemon.sessions.applyKeyScopes(config.insecure ? null : next.scopes);
  daemon.sessions.settings.access.limits = {
    sessions: config.maxSessionsPerKey,
    attachments: config.maxAttachmentsPerKey,
  };
  const updates = daemon.server.updates.settings; // an update begun before keeps what it was checked against
  updates.releaseKeys = config.releaseKeys;
  updates.maxBytes = Math.floor(config.updateMaxMiB * 1024 * 1024);
  const ids = next.keys.map((k) => k.id).join(", ") || "(none: insecure)";
  log.info(
    `reloaded on SIGHUP: accepting key id${next.keys.length === 1 ? "" : "s"} ${ids}` +
      (added.length ? `; added ${added.join(", ")}` : "") +
      (removed.length ? `; removed ${removed.join(", ")} (its connections close in ${graceSeconds} s)` : ""),
  );
  if (changed.length) log.warn(`reload: ${changed.join(", ")} changed; these take effect at the next restart`);
}

/** The trust settings of each outbound target, read and checked. */
function outboundTrust(config: AgentConfig): OutboundTargetConfig[] {
  return config.connect.map((t) => ({
    host: t.host,
    port: t.port,
    alternates: t.alternates,
    serverName: t.serverName,
    proxy: proxyFor(t.host, process.env, config.proxy),
    ca: t.ca ? readCa(t.ca) : undefined,
    fingerprint: t.fingerprint ? fingerprintOf(t.fingerprint) : undefined,
  }));
}

function readCa(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read CA file ${file}: ${(e as Error).message}`);
  }
}

function fingerprintOf(text: string): Uint8Array {
  try {
    return parseFingerprint(text);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}
