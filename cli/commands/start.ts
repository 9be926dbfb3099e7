/**
 * `agent start`: run the agent in the foreground until SIGINT or SIGTERM.
 * @module
 */
import path from "node:path";
import { AgentServer } from "../../agent/server.ts";
import { cleanStaleChannels } from "../../agent/host-process.ts";
import { SessionManager } from "../../agent/sessions.ts";
import { controlPath, serveControl } from "../../agent/control.ts";
import { type AgentConfig, type Flags, resolveConfig, str } from "../../agent/config.ts";
import { ensureStateDir, loadAgentKeys } from "../../agent/keystore.ts";
import { droppedLogLines, log, LOG_FORMATS, type LogFormat, setLogFormat } from "../../runtime/log.ts";
import { serveMetrics } from "../../agent/metrics.ts";
import { proxyFor } from "../../runtime/proxy.ts";
import { runtimeCryptoProvider } from "../../runtime/crypto.ts";
import { hostCommand } from "../../runtime/self.ts";
import { parseFingerprint } from "../../runtime/tls.ts";
import { OutboundTarget } from "../../agent/dialer.ts";
import { ConfigError } from "../../agent/config.ts";
import { formatHost, isLoopback } from "../../runtime/tcp.ts";
import fs from "node:fs";

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

/** The trust settings of each outbound target, read and checked. */
function outboundTrust(config: AgentConfig) {
  return config.connect.map((t) => ({
    host: t.host,
    port: t.port,
    serverName: t.serverName,
    proxy: proxyFor(t.host, process.env, config.proxy),
    ca: t.ca ? readCa(t.ca) : undefined,
    fingerprint: t.fingerprint ? fingerprintOf(t.fingerprint) : undefined,
  }));
}

/** Resolves and checks everything a start needs, without starting: `agent start --check`, and each reload. */
async function loadSettings(flags: Flags, createKey: boolean) {
  const config = resolveConfig(flags, process.env);
  if (createKey) ensureStateDir(config.stateDir); // a first start creates the key there
  const format = str(flags.logFormat) ?? config.logFormat;
  if (format !== undefined && !(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new ConfigError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, not "${format}"`);
  }
  if (config.insecure && config.connect.length > 0) {
    throw new ConfigError(
      "--insecure applies to inbound connections only; outbound connections always use TLS and the key",
    );
  }
  const trust = outboundTrust(config);
  const loaded = config.insecure ? { keys: [], generated: null } : await loadAgentKeys(config, createKey);
  return { config, format: format as LogFormat | undefined, trust, ...loaded };
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
  "metrics",
  "proxy",
  "warmHosts",
] as const;

export async function startCommand(flags: Flags): Promise<void> {
  if (flags.check) {
    const { config, keys, trust } = await loadSettings(flags, false);
    process.stdout.write(
      `configuration OK${config.configFile ? ` (${config.configFile})` : ""}: ` +
        (config.insecure
          ? "insecure mode, no keys"
          : `${keys.length} key${keys.length === 1 ? "" : "s"} (${keys.map((k) => k.id).join(", ")})`) +
        `; ${config.listen ? `listening on ${formatHost(config.host)}:${config.port}` : "not listening"}` +
        `; ${trust.length} outbound target${trust.length === 1 ? "" : "s"}; state in ${config.stateDir}\n`,
    );
    return;
  }
  const { config, format, keys, generated, trust } = await loadSettings(flags, true);
  if (format) setLogFormat(format);
  if (config.insecure) {
    log.warn(
      "--insecure: encryption and authentication are OFF; only loopback peers will be served. Never use this in production.",
    );
    if (!isLoopback(config.host)) {
      log.warn(`listening on ${config.host} with --insecure; non-loopback peers will be refused`);
    }
  } else if (generated) {
    // The key goes to stdout only when a person is watching (or asked for it): under systemd stdout is the journal.
    const show = Boolean(flags.showKey) || process.stdout.isTTY === true;
    process.stdout.write(
      `No key was configured, so a new one was created (key id ${
        keys[0].id
      }) and saved to ${generated.file} (mode 0600).\n` +
        (show
          ? `\n  ${generated.hex}\n\nGive this key to the product that will connect to this agent; it stays in that file.\n`
          : `Give the product the key in that file (it is not printed here, since this is not a terminal; --show-key prints it).\n`),
    );
  }

  // A bug in one connection's handling must not take every session down with it: log it, keep serving.
  let internalErrors = 0;
  process.on(
    "uncaughtException",
    (e) => (internalErrors++, log.error(`internal error (please report): ${e.stack ?? e}`)),
  );
  process.on(
    "unhandledRejection",
    (e) => (internalErrors++, log.error(`internal error (please report): ${(e as Error)?.stack ?? e}`)),
  );

  // Signal handlers go in before anything listens, so an early SIGTERM still shuts down cleanly.
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onSignal = (signal: NodeJS.Signals) => () => stop(signal);
  process.on("SIGINT", onSignal("SIGINT"));
  process.on("SIGTERM", onSignal("SIGTERM"));
  let reloading = Promise.resolve();
  process.on("SIGHUP", () => void (reloading = reloading.then(() => reload())));

  // The control socket first: it refuses while another agent runs on this state directory, and
  // only then is it safe to treat channel files as left over.
  let server: AgentServer | null = null;
  const control = await serveControl(controlPath(config.stateDir), () => server?.status());
  const runDir = path.join(config.stateDir, "run");
  const stale = cleanStaleChannels(runDir);
  if (stale > 0) log.warn(`removed ${stale} channel file(s) left by an agent that did not stop cleanly`);
  const sessions = new SessionManager({
    stateDir: config.stateDir,
    runDir,
    products: config.products,
    idleTimeoutMs: config.idleTimeoutSeconds * 1000,
    reconnectGraceMs: config.reconnectGraceSeconds * 1000,
    replayLimitBytes: config.replayLimitMiB * 1024 * 1024,
    processGraceMs: config.processGraceSeconds * 1000,
    hostCommand: hostCommand(),
    warmHosts: config.warmHosts,
    log,
  });
  const provider = runtimeCryptoProvider();
  server = new AgentServer(config, keys, provider, sessions);
  const outbound = trust.map((t) =>
    new OutboundTarget(t, {
      key: keys[0],
      provider,
      sessions,
      meta: { info: () => server!.info() },
      handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
      keepaliveMs: config.keepaliveSeconds * 1000,
      log,
    })
  );
  server.outbound = outbound;
  if (config.listen) {
    let address;
    try {
      address = await server.listen();
    } catch (e) {
      await control.close();
      throw e;
    }
    const mode = config.insecure
      ? "INSECURE plaintext mode"
      : `key mode, accepting key id${keys.length > 1 ? "s" : ""} ${keys.map((k) => k.id).join(", ")}`;
    log.info(`listening on ${formatHost(address.host)}:${address.port} (${mode}); state in ${config.stateDir}`);
  }
  for (const t of outbound) {
    log.info(
      `outbound: dialing ${t.address} over TLS as key id ${keys[0].id}${
        t.target.proxy ? ` through the proxy ${t.target.proxy.host}` : ""
      }`,
    );
    t.start();
  }
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | null = null;
  if (config.metrics) {
    const counters = () => {
      const t = server!.traffic();
      return { bytesReceived: t.received, bytesSent: t.sent, internalErrors, logLinesDropped: droppedLogLines() };
    };
    try {
      metrics = await serveMetrics(
        config.metrics.host,
        config.metrics.port,
        () => server!.status(),
        counters,
        config.listen,
      );
    } catch (e) {
      await Promise.all([server.close(), control.close(), ...outbound.map((t) => t.stop())]);
      throw new ConfigError((e as Error).message);
    }
    log.info(
      `health and metrics on http://${
        formatHost(metrics.address.host)
      }:${metrics.address.port}/ (healthz, readyz, metrics)`,
    );
  }

  /**
   * SIGHUP: read the config and key files again. Keys and products change at
   * once; settings that need a restart are named. A new configuration that
   * does not load leaves the running one untouched.
   */
  async function reload() {
    if (!server) return log.warn("SIGHUP before the agent was up: nothing reloaded");
    let next;
    try {
      next = await loadSettings(flags, false);
    } catch (e) {
      log.error(`reload on SIGHUP failed, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    const changed = RESTART_ONLY.filter((k) => JSON.stringify(next.config[k]) !== JSON.stringify(config[k]));
    const { added, removed } = server!.replaceKeys(next.keys, next.config.revokedKeyGraceSeconds * 1000);
    sessions.settings.products = next.config.products;
    if (next.format) setLogFormat(next.format);
    log.info(
      `reloaded on SIGHUP: accepting key id${next.keys.length === 1 ? "" : "s"} ${
        next.keys.map((k) => k.id).join(", ") || "(none: insecure)"
      }` +
        (added.length ? `; added ${added.join(", ")}` : "") +
        (removed.length
          ? `; removed ${removed.join(", ")} (its connections close in ${next.config.revokedKeyGraceSeconds} s)`
          : ""),
    );
    if (changed.length) log.warn(`reload: ${changed.join(", ")} changed; these take effect at the next restart`);
  }

  log.info(`received ${await stopped}, shutting down`);
  await Promise.all([server.close(), control.close(), metrics?.close(), ...outbound.map((t) => t.stop())]);
  log.info("stopped");
}
