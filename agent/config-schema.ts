/**
 * The config file's schema (JSON), checked with zod (its tree-shakable "mini" form): every setting's type
 * and range, and a sentence saying what is allowed, so an error names the
 * file, the setting, what it held and what it may hold.
 *
 * @example
 * ```ts
 * const settings = parseConfigFile("/etc/agent/config.json", '{ "port": 4000, "insecure": false }');
 * ```
 * @module
 */
import * as z from "zod/mini";
import { ConfigError } from "../runtime/errors.ts";
import { LOG_FORMATS } from "../runtime/log.ts";

/** A product name: 1–32 of a-z, 0-9 and "-", starting with a letter. */
export const PRODUCT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const seconds = z.number().check(z.positive());
const keyHex = z.string().check(z.regex(/^\s*[0-9a-fA-F]{64}\s*$/));
const productName = z.string().check(z.regex(PRODUCT_NAME));
/** A user or group: a name or a numeric id. */
const account = z.union([z.string().check(z.regex(/^[a-z_][a-z0-9_.-]{0,31}\$?$|^\d+$/)), z.int().check(z.minimum(0))]);
/** What a key may do beyond sessions: "update" pushes a new agent binary (docs/security.md "Pushed updates"). */
export const KEY_RIGHTS = ["update"] as const;
/** A key for every product, or one limited to some, or given rights. */
const keyEntry = z.union([
  keyHex,
  z.strictObject({
    key: keyHex,
    products: z.optional(z.array(productName).check(z.minLength(1))),
    rights: z.optional(z.array(z.enum(KEY_RIGHTS))),
  }),
]);
/** What a product's hosts run as. */
const productSettings = z.strictObject({ user: z.optional(account), group: z.optional(account) });
const hostPort = z.string().check(z.regex(/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/));
const target = z.union([
  hostPort,
  z.strictObject({
    address: hostPort,
    ca: z.optional(z.string().check(z.minLength(1))),
    fingerprint: z.optional(z.string().check(z.minLength(1))),
    serverName: z.optional(z.string().check(z.minLength(1))),
  }),
]);

/** Every setting the file may hold. */
export const CONFIG_FILE = z.strictObject({
  host: z.optional(z.string().check(z.minLength(1))),
  port: z.optional(z.int().check(z.minimum(0), z.maximum(65535))),
  stateDir: z.optional(z.string().check(z.minLength(1))),
  keys: z.optional(z.array(keyEntry)),
  keyFiles: z.optional(z.array(z.string().check(z.minLength(1)))),
  insecure: z.optional(z.boolean()),
  handshakeTimeoutSeconds: z.optional(seconds),
  maxHandshakes: z.optional(z.int().check(z.positive())),
  authFailuresPerMinute: z.optional(z.int().check(z.positive())),
  firstFrameTimeoutSeconds: z.optional(seconds),
  connectionIdleTimeoutSeconds: z.optional(seconds),
  maxConnectionsPerAddress: z.optional(z.int().check(z.positive())),
  maxConnectionsPerKey: z.optional(z.int().check(z.positive())),
  products: z.optional(z.union([z.array(productName), z.record(productName, productSettings)])),
  maxSessionsPerKey: z.optional(z.int().check(z.positive())),
  maxAttachmentsPerKey: z.optional(z.int().check(z.positive())),
  idleTimeoutSeconds: z.optional(seconds),
  reconnectGraceSeconds: z.optional(seconds),
  processGraceSeconds: z.optional(seconds),
  warmHosts: z.optional(z.int().check(z.minimum(0), z.maximum(64))),
  replayLimitMiB: z.optional(z.number().check(z.positive())),
  transferWindowMiB: z.optional(z.number().check(z.positive())),
  listen: z.optional(z.boolean()),
  connect: z.optional(z.array(target)),
  keepaliveSeconds: z.optional(seconds),
  dialTimeoutSeconds: z.optional(seconds),
  logFormat: z.optional(z.enum(LOG_FORMATS)),
  revokedKeyGraceSeconds: z.optional(z.number().check(z.minimum(0))),
  upgradeTimeoutSeconds: z.optional(seconds),
  metrics: z.optional(hostPort),
  proxy: z.optional(z.string().check(z.minLength(1))),
  releaseKeys: z.optional(z.array(keyHex)),
  updateMaxMiB: z.optional(z.number().check(z.positive())),
});

/** The settings as the file gives them (all optional). */
export type ConfigFile = z.infer<typeof CONFIG_FILE>;

/** What each setting may hold, in words (for error messages and docs/operations.md). */
export const ALLOWED: Record<keyof ConfigFile, string> = {
  host: "an address or host name to listen on, as a string",
  port: "a whole number from 0 to 65535",
  stateDir: "a directory path, as a string",
  keys:
    'a list of keys, each 64 hex digits or { "key": "<64 hex>", "products"?: ["name", ...], "rights"?: ["update"] }',
  keyFiles: "a list of file paths (relative to the config file)",
  insecure: "true or false (a JSON boolean, not a string)",
  handshakeTimeoutSeconds: "a positive number of seconds",
  maxHandshakes: "a positive whole number",
  authFailuresPerMinute: "a positive whole number",
  firstFrameTimeoutSeconds: "a positive number of seconds",
  connectionIdleTimeoutSeconds: "a positive number of seconds",
  maxConnectionsPerAddress: "a positive whole number",
  maxConnectionsPerKey: "a positive whole number",
  products: "a list of product names (1–32 of a-z, 0-9 and -, starting with a letter), or an object from " +
    'product name to { "user"?: name or uid, "group"?: name or gid } (its hosts run as that user; {}: as the agent)',
  maxSessionsPerKey: "a positive whole number (sessions open at once per key)",
  maxAttachmentsPerKey: "a positive whole number (attachments at once per key, in reconnect grace included)",
  idleTimeoutSeconds: "a positive number of seconds",
  reconnectGraceSeconds: "a positive number of seconds",
  processGraceSeconds: "a positive number of seconds",
  warmHosts: "a whole number from 0 to 64 (products to keep a started host ready for)",
  replayLimitMiB: "a positive number of MiB",
  transferWindowMiB: "a positive number of MiB",
  listen: "true or false (a JSON boolean)",
  connect: 'a list of "host:port" strings or { "address": "host:port", "ca"?, "fingerprint"?, "serverName"? } objects',
  keepaliveSeconds: "a positive number of seconds",
  dialTimeoutSeconds: "a positive number of seconds",
  logFormat: `one of ${LOG_FORMATS.map((f) => `"${f}"`).join(", ")}`,
  revokedKeyGraceSeconds: "a number of seconds, 0 or more",
  upgradeTimeoutSeconds: "a positive number of seconds",
  metrics: '"host:port" for the health and metrics endpoint, e.g. "127.0.0.1:9464"',
  proxy: 'an HTTP proxy URL for outbound connections, e.g. "http://proxy.example.com:3128"',
  releaseKeys: "a list of release public keys, each 64 hex digits (from `agent release keygen`)",
  updateMaxMiB: "a positive number of MiB (the largest pushed update accepted)",
};

function describe(value: unknown): string {
  const json = JSON.stringify(value);
  const shown = json === undefined ? String(value) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
  return `${shown} (${Array.isArray(value) ? "a list" : value === null ? "null" : `a ${typeof value}`})`;
}

/** Parses and checks a config file's text; throws {@link ConfigError} naming the file, the setting and what is allowed. */
export function parseConfigFile(file: string, text: string): ConfigFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`config file ${file} must hold a JSON object of settings, not ${describe(value)}`);
  }
  const result = CONFIG_FILE.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    const known = Object.keys(ALLOWED);
    const meant = closest(issue.keys[0], known);
    throw new ConfigError(
      `config file ${file}: unknown setting "${issue.keys[0]}" (${
        meant ? `did you mean "${meant}"?` : `known: ${known.join(", ")}`
      })`,
    );
  }
  const setting = String(issue.path[0]) as keyof ConfigFile;
  let held: unknown = value;
  for (const p of issue.path) held = (held as Record<PropertyKey, unknown>)?.[p as PropertyKey];
  const where = issue.path.length > 1 ? `"${setting}" (at ${issue.path.slice(1).join(".")})` : `"${setting}"`;
  throw new ConfigError(`config file ${file}: setting ${where} is ${describe(held)}; allowed: ${ALLOWED[setting]}`);
}

/** The candidate `word` is most likely a typo of: at most two edits away (one for a short word), else undefined. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  const distance = (a: string, b: string) => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) {
        next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
      row = next;
    }
    return row[b.length];
  };
  const limit = word.length >= 4 ? 2 : 1; // "prot" for "port" is two edits
  const ranked = candidates.map((c) => ({ c, d: distance(word.toLowerCase(), c.toLowerCase()) })).sort((x, y) =>
    x.d - y.d
  );
  return ranked[0] && ranked[0].d <= limit ? ranked[0].c : undefined;
}
