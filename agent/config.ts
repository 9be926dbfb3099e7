/**
 * Where settings come from, lowest to highest precedence: built-in defaults,
 * the config file, environment variables, command-line options. Every bad value
 * is reported with where it came from; nothing is silently ignored.
 *
 * @example
 * ```ts
 * const config = resolveConfig({ port: "4000" }, process.env);
 * ```
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { ConfigError } from "../runtime/errors.ts";
import { type ConfigFile, type KEY_RIGHTS, parseConfigFile } from "./config-schema.ts";
import { DEFAULT_PORT } from "../core/wire/hello.ts";
import { defaultStateDir } from "./state-dir.ts";
import { checkSecretFile, checkStateDir } from "./file-trust.ts";

/** The agent's resolved settings. */
export interface AgentConfig {
  host: string;
  port: number;
  stateDir: string;
  /** Path of the config file that was read, if any. */
  configFile: string | null;
  /** Keys given inline (hex), each with the products it may use (null: all); prefer keyFiles for keys of every product, as command lines are visible to other users. */
  keys: KeyEntry[];
  keyFiles: string[];
  insecure: boolean;
  handshakeTimeoutSeconds: number;
  maxHandshakes: number;
  authFailuresPerMinute: number;
  /** An authenticated inbound connection that sends no frame within this is closed. */
  firstFrameTimeoutSeconds: number;
  /** An inbound connection with no session attached and no frame either way for this long is closed. */
  connectionIdleTimeoutSeconds: number;
  /** Inbound connections (handshaking or open) from one address, an IPv6 /64 counted as one. */
  maxConnectionsPerAddress: number;
  /** Authenticated inbound connections with one key. */
  maxConnectionsPerKey: number;
  /** Products served; null accepts any well-formed product name. */
  products: string[] | null;
  /** The user (and group) each listed product's hosts run as; a product not here runs as the agent's user. */
  productUsers: Record<string, ProductUser>;
  /** Sessions open at once per key. */
  maxSessionsPerKey: number;
  /** Attachments at once per key (those in reconnect grace count). */
  maxAttachmentsPerKey: number;
  idleTimeoutSeconds: number;
  reconnectGraceSeconds: number;
  /** Seconds launched processes get between TERM and KILL when their session ends. */
  processGraceSeconds: number;
  /** Products to keep one already started host ready for (0: every session starts its own). */
  warmHosts: number;
  /** Unacknowledged session output kept per client, in MiB. */
  replayLimitMiB: number;
  /** The most a client's transfer keeps in flight, in MiB: told to clients as they attach. */
  transferWindowMiB: number;
  /** Listen for inbound connections (off with --no-listen, for outbound-only agents). */
  listen: boolean;
  /** Product listeners to dial (outbound mode). */
  connect: Array<{
    host: string;
    port: number;
    /** The other nodes of a listener cluster (`--connect a:1,b:2`): dialled in turn. */
    alternates?: Array<{ host: string; port: number }>;
    ca?: string;
    fingerprint?: string;
    serverName?: string;
  }>;
  /** Seconds between heartbeats on outbound connections; silence for 3× this ends one. */
  keepaliveSeconds: number;
  /**
   * Outbound: how long a dial may take, the TCP connection and the listener's TLS answer. A busy
   * listener keeps new connections in line before it starts TLS (its `queueWaitSeconds`).
   */
  dialTimeoutSeconds: number;
  /** After a reload removes a key, connections that authenticated with it are closed this long after. */
  revokedKeyGraceSeconds: number;
  /** How long a new version has to report itself prepared in a hand-over before the running one takes back over. */
  upgradeTimeoutSeconds: number;
  /** The HTTP CONNECT proxy for outbound connections, as given (else HTTPS_PROXY applies). */
  proxy: string | undefined;
  /** Where to serve /healthz, /readyz and /metrics; null for nowhere (the default). */
  metrics: { host: string; port: number } | null;
  /** The log format from the config file, if it sets one. */
  logFormat: ConfigFile["logFormat"];
  /** Ed25519 public keys (hex) a pushed update must be signed by; none: the SHA-256 alone is checked. */
  releaseKeys: string[];
  /** The largest pushed update accepted, in MiB. */
  updateMaxMiB: number;
}

export { ConfigError };

/** A key the agent accepts, as hex, the products it may use (null: every product), and its rights beyond sessions. */
export interface KeyEntry {
  key: string;
  products: string[] | null;
  rights?: KeyRight[];
}

/** A right a key may be given beyond sessions. */
export type KeyRight = typeof KEY_RIGHTS[number];

/** The user a product's hosts run as, and its group (by default the user's primary group): names or ids. */
export interface ProductUser {
  /** Absent: the product's hosts run as the agent's user. */
  user?: string | number;
  group?: string | number;
}

/**
 * The settings a command line gives, by option name (`keyFile` for --key-file): each a string,
 * number or boolean, or a list of them when the option was repeated. Others are ignored.
 */
export interface ConfigOptions {
  config?: unknown;
  stateDir?: unknown;
  host?: unknown;
  port?: unknown;
  key?: unknown;
  keyFile?: unknown;
  insecure?: unknown;
  handshakeTimeout?: unknown;
  maxHandshakes?: unknown;
  product?: unknown;
  idleTimeout?: unknown;
  reconnectGrace?: unknown;
  warmHosts?: unknown;
  /** false for --no-listen. */
  listen?: unknown;
  connect?: unknown;
  ca?: unknown;
  fingerprint?: unknown;
  serverName?: unknown;
  keepalive?: unknown;
  dialTimeout?: unknown;
  metrics?: unknown;
  proxy?: unknown;
}

/** Merges defaults, the config file, environment and options. Throws {@link ConfigError}. */
export function resolveConfig(options: ConfigOptions, env: Record<string, string | undefined>): AgentConfig {
  const explicitFile = last(options.config) ?? env.AGENT_CONFIG;
  const earlyStateDir = last(options.stateDir) ?? (env.AGENT_STATE_DIR || undefined);
  const configFile = explicitFile ?? path.join(earlyStateDir ?? defaultStateDir(env), "config.json");
  const file = readConfigFile(configFile, explicitFile !== undefined);

  // The first source that sets a value: flag, environment, file, default.
  const pick = <T>(...values: unknown[]) => values.find((v) => v !== undefined) as T;
  const fileKeyFiles = file?.keyFiles?.map((f) => path.resolve(path.dirname(configFile), f));

  const config: AgentConfig = {
    host: pick<string>(last(options.host), env.AGENT_HOST, file?.host, "0.0.0.0"),
    port: portOf(pick<string | number>(last(options.port), env.AGENT_PORT, file?.port, DEFAULT_PORT)),
    stateDir: path.resolve(pick<string>(earlyStateDir, undefined, file?.stateDir, defaultStateDir(env))),
    configFile: file ? configFile : null,
    keys: keyEntries(list(options.key), file?.keys),
    keyFiles: [
      ...list(options.keyFile).map((f) => path.resolve(f)),
      ...(env.AGENT_KEY_FILE ? [path.resolve(env.AGENT_KEY_FILE)] : []),
      ...(fileKeyFiles ?? []),
    ],
    insecure: Boolean(options.insecure ?? file?.insecure ?? false),
    handshakeTimeoutSeconds: positive(
      "--handshake-timeout (or AGENT_HANDSHAKE_TIMEOUT)",
      pick(last(options.handshakeTimeout), numEnv(env.AGENT_HANDSHAKE_TIMEOUT), file?.handshakeTimeoutSeconds, 30),
    ),
    maxHandshakes: positive("--max-handshakes", pick(last(options.maxHandshakes), undefined, file?.maxHandshakes, 100)),
    authFailuresPerMinute: positive(
      "authFailuresPerMinute",
      pick(undefined, undefined, file?.authFailuresPerMinute, 20),
    ),
    ...connectionLimits(file),
    products: list(options.product).length > 0 ? list(options.product) : productNames(file?.products),
    productUsers: file?.products && !Array.isArray(file.products) ? file.products : {},
    maxSessionsPerKey: positive("maxSessionsPerKey", file?.maxSessionsPerKey ?? 64),
    maxAttachmentsPerKey: positive("maxAttachmentsPerKey", file?.maxAttachmentsPerKey ?? 256),
    idleTimeoutSeconds: positive(
      "--idle-timeout (or AGENT_IDLE_TIMEOUT)",
      pick(last(options.idleTimeout), numEnv(env.AGENT_IDLE_TIMEOUT), file?.idleTimeoutSeconds, 1800),
    ),
    reconnectGraceSeconds: positive(
      "--reconnect-grace (or AGENT_RECONNECT_GRACE)",
      pick(last(options.reconnectGrace), numEnv(env.AGENT_RECONNECT_GRACE), file?.reconnectGraceSeconds, 1800),
    ),
    processGraceSeconds: positive("processGraceSeconds", pick(undefined, undefined, file?.processGraceSeconds, 5)),
    warmHosts: wholeNumber("--warm-hosts", pick(last(options.warmHosts), undefined, file?.warmHosts, 2), 64),
    ...transferLimits(file),
    listen: pick<boolean>(options.listen === false ? false : undefined, undefined, file?.listen, true),
    ...outboundSettings(options, file, configFile),
    metrics: metricsAddress(last(options.metrics) ?? file?.metrics),
    proxy: last(options.proxy) ?? file?.proxy,
    ...fileOnlySettings(file),
  };
  if (!config.listen && config.connect.length === 0) {
    throw new ConfigError("--no-listen leaves nothing to do: give at least one --connect host:port");
  }
  return config;
}

/** Outbound mode: the listeners to dial, their trust, the heartbeat and the dial timeout (flag, then file). */
function outboundSettings(options: ConfigOptions, file: ConfigFile | null | undefined, configFile: string) {
  const trust = { ca: last(options.ca), fingerprint: last(options.fingerprint), serverName: last(options.serverName) };
  return {
    connect: [
      ...list(options.connect).map((a) => target(a, trust, "--connect")),
      ...(file?.connect ?? []).map((t) => fileTarget(t, configFile)),
    ],
    keepaliveSeconds: positive("--keepalive", last(options.keepalive) ?? file?.keepaliveSeconds ?? 15),
    dialTimeoutSeconds: positive(
      "--dial-timeout",
      last(options.dialTimeout) ?? file?.dialTimeoutSeconds ?? DIAL_TIMEOUT_SECONDS,
    ),
  };
}

/** The settings that bound authenticated inbound connections (config file only). */
function connectionLimits(file: ConfigFile | null | undefined) {
  return {
    firstFrameTimeoutSeconds: file?.firstFrameTimeoutSeconds ?? 30,
    connectionIdleTimeoutSeconds: file?.connectionIdleTimeoutSeconds ?? 600,
    maxConnectionsPerAddress: file?.maxConnectionsPerAddress ?? 1000,
    maxConnectionsPerKey: file?.maxConnectionsPerKey ?? 1000,
  };
}

/** Settings only the config file gives: the grace after a key's removal, the log format, and pushed updates'. */
function fileOnlySettings(file: ConfigFile | null | undefined) {
  return {
    revokedKeyGraceSeconds: file?.revokedKeyGraceSeconds ?? 60,
    upgradeTimeoutSeconds: file?.upgradeTimeoutSeconds ?? 30,
    logFormat: file?.logFormat,
    releaseKeys: (file?.releaseKeys ?? []).map((k) => k.trim().toLowerCase()),
    updateMaxMiB: positive("updateMaxMiB", file?.updateMaxMiB ?? 512),
  };
}

/** Keys from --key (every product) and the file's "keys" (a string, or an object limiting its products). */
function keyEntries(flags: string[], fromFile: ConfigFile["keys"]): KeyEntry[] {
  return [
    ...flags.map((key) => ({ key, products: null })),
    ...(fromFile ?? []).map((k) =>
      typeof k === "string"
        ? { key: k, products: null }
        : { key: k.key, products: k.products ?? null, ...(k.rights ? { rights: k.rights } : {}) }
    ),
  ];
}

/** The product names of the file's "products" setting, a list or an object by name. */
function productNames(products: ConfigFile["products"]): string[] | null {
  if (!products) return null;
  return Array.isArray(products) ? products : Object.keys(products);
}

/** The --metrics address ("host:port", port 0 picks one), or null when not asked for. */
function metricsAddress(v: string | undefined): { host: string; port: number } | null {
  if (v === undefined) return null;
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:]+):(\d+)$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`--metrics needs host:port (e.g. 127.0.0.1:9464), not "${v}"`);
  return { host: m[1], port: Number(m[2]) };
}

/** `host:port`, or several separated by commas: the nodes of one listener cluster, dialled in turn. */
function target(address: string, trust: { ca?: string; fingerprint?: string; serverName?: string }, where: string) {
  const [first, ...alternates] = address.split(",").map((a) => hostPort(a.trim(), where));
  return {
    ...first,
    ...(alternates.length ? { alternates } : {}),
    ...(trust.ca ? { ca: path.resolve(trust.ca) } : {}),
    ...(trust.fingerprint ? { fingerprint: trust.fingerprint } : {}),
    ...(trust.serverName ? { serverName: trust.serverName } : {}),
  };
}

function hostPort(address: string, where: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new ConfigError(`${where} needs host:port (IPv6 as [::1]:46340), not "${address}"`);
  }
  return { host: m[1], port: Number(m[2]) };
}

function fileTarget(t: NonNullable<ConfigFile["connect"]>[number], file: string) {
  if (typeof t === "string") return target(t, {}, `config file ${file}: "connect"`);
  return target(
    t.address,
    { ...t, ca: t.ca ? path.resolve(path.dirname(file), t.ca) : undefined },
    `config file ${file}: "connect"`,
  );
}

function readConfigFile(file: string, required: boolean): ConfigFile | null {
  if (!required) checkStateDir(path.dirname(file)); // the default file sits in the state directory
  let text: string, stat: fs.Stats;
  try {
    stat = fs.statSync(file);
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  const parsed = parseConfigFile(file, text);
  if (parsed.keys?.length) checkSecretFile(file, stat, "config file", " holds keys and");
  return parsed;
}

/** The option's value as a string: the last one when it was given more than once. */
function last(v: unknown): string | undefined {
  if (Array.isArray(v)) v = v[v.length - 1];
  return v === undefined || v === null || v === "" ? undefined : String(v);
}

function list(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

function numEnv(v: string | undefined): number | undefined {
  return v === undefined || v === "" ? undefined : Number(v);
}

function portOf(v: string | number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ConfigError(`--port (or AGENT_PORT) must be a whole number from 0 to 65535, not "${v}"`);
  }
  return n;
}

function wholeNumber(name: string, v: unknown, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new ConfigError(`${name} must be a whole number from 0 to ${max}, not "${v}"`);
  }
  return n;
}

/** The client library's most (core/client/files.ts TRANSFER_WINDOW_MAX_BYTES): under the 16 MiB bounds. */
const DEFAULT_TRANSFER_WINDOW_MIB = 15;
/** Longer than a listener's default wait in line (45 s), so a busy listener's line is not given up on. */
const DIAL_TIMEOUT_SECONDS = 60;

/**
 * The replay bound and the transfer window: a download keeps its whole window of replies
 * unacknowledged, and the agent closes a connection that holds twice the bound, so the window the
 * agent announces is never above the bound (agent/sessions.ts), and the default follows it down.
 */
function transferLimits(file: ConfigFile | null) {
  const replayLimitMiB = positive("replayLimitMiB", file?.replayLimitMiB ?? 16);
  if (replayLimitMiB < 1) {
    throw new ConfigError(
      `replayLimitMiB must be at least 1, not ${replayLimitMiB}: twice the bound must hold a download's 512 KiB replies`,
    );
  }
  const transferWindowMiB = file?.transferWindowMiB === undefined
    ? Math.min(DEFAULT_TRANSFER_WINDOW_MIB, replayLimitMiB)
    : positive("transferWindowMiB", file.transferWindowMiB);
  return { replayLimitMiB, transferWindowMiB };
}

/** What the agent logs at start about `config`'s transfer window, if it cannot be had as set. */
export function transferWindowNote(config: Pick<AgentConfig, "transferWindowMiB" | "replayLimitMiB">): string | null {
  if (config.transferWindowMiB <= config.replayLimitMiB) return null;
  return `transferWindowMiB (${config.transferWindowMiB}) is above replayLimitMiB (${config.replayLimitMiB}): ` +
    `transfers keep at most ${config.replayLimitMiB} MiB in flight (a download keeps its whole window unacknowledged)`;
}

function positive(name: string, v: unknown): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${name} must be a positive number, not "${v}"`);
  return n;
}
