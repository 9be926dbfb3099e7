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
  keys: z.optional(z.array(z.string().check(z.regex(/^\s*[0-9a-fA-F]{64}\s*$/)))),
  keyFiles: z.optional(z.array(z.string().check(z.minLength(1)))),
  insecure: z.optional(z.boolean()),
  handshakeTimeoutSeconds: z.optional(seconds),
  maxHandshakes: z.optional(z.int().check(z.positive())),
  authFailuresPerMinute: z.optional(z.int().check(z.positive())),
  products: z.optional(z.array(z.string().check(z.regex(PRODUCT_NAME)))),
  idleTimeoutSeconds: z.optional(seconds),
  reconnectGraceSeconds: z.optional(seconds),
  processGraceSeconds: z.optional(seconds),
  warmHosts: z.optional(z.int().check(z.minimum(0), z.maximum(64))),
  replayLimitMiB: z.optional(z.number().check(z.positive())),
  transferWindowMiB: z.optional(z.number().check(z.positive())),
  listen: z.optional(z.boolean()),
  connect: z.optional(z.array(target)),
  keepaliveSeconds: z.optional(seconds),
  logFormat: z.optional(z.enum(LOG_FORMATS)),
  revokedKeyGraceSeconds: z.optional(z.number().check(z.minimum(0))),
  metrics: z.optional(hostPort),
  proxy: z.optional(z.string().check(z.minLength(1))),
});

/** The settings as the file gives them (all optional). */
export type ConfigFile = z.infer<typeof CONFIG_FILE>;

/** What each setting may hold, in words (for error messages and docs/operations.md). */
export const ALLOWED: Record<keyof ConfigFile, string> = {
  host: "an address or host name to listen on, as a string",
  port: "a whole number from 0 to 65535",
  stateDir: "a directory path, as a string",
  keys: "a list of keys, each 64 hex digits",
  keyFiles: "a list of file paths (relative to the config file)",
  insecure: "true or false (a JSON boolean, not a string)",
  handshakeTimeoutSeconds: "a positive number of seconds",
  maxHandshakes: "a positive whole number",
  authFailuresPerMinute: "a positive whole number",
  products: "a list of product names (1–32 of a-z, 0-9 and -, starting with a letter)",
  idleTimeoutSeconds: "a positive number of seconds",
  reconnectGraceSeconds: "a positive number of seconds",
  processGraceSeconds: "a positive number of seconds",
  warmHosts: "a whole number from 0 to 64 (products to keep a started host ready for)",
  replayLimitMiB: "a positive number of MiB",
  transferWindowMiB: "a positive number of MiB",
  listen: "true or false (a JSON boolean)",
  connect: 'a list of "host:port" strings or { "address": "host:port", "ca"?, "fingerprint"?, "serverName"? } objects',
  keepaliveSeconds: "a positive number of seconds",
  logFormat: `one of ${LOG_FORMATS.map((f) => `"${f}"`).join(", ")}`,
  revokedKeyGraceSeconds: "a number of seconds, 0 or more",
  metrics: '"host:port" for the health and metrics endpoint, e.g. "127.0.0.1:9464"',
  proxy: 'an HTTP proxy URL for outbound connections, e.g. "http://proxy.example.com:3128"',
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
    throw new ConfigError(
      `config file ${file}: unknown setting "${issue.keys[0]}" (known: ${Object.keys(ALLOWED).join(", ")})`,
    );
  }
  const setting = String(issue.path[0]) as keyof ConfigFile;
  let held: unknown = value;
  for (const p of issue.path) held = (held as Record<PropertyKey, unknown>)?.[p as PropertyKey];
  const where = issue.path.length > 1 ? `"${setting}" (at ${issue.path.slice(1).join(".")})` : `"${setting}"`;
  throw new ConfigError(`config file ${file}: setting ${where} is ${describe(held)}; allowed: ${ALLOWED[setting]}`);
}
