/**
 * The config file's schema (JSON), checked with zod: every setting's type
 * and range, and a sentence saying what is allowed, so an error names the
 * file, the setting, what it held and what it may hold.
 *
 * @example
 * ```ts
 * const settings = parseConfigFile("/etc/agent/config.json", '{ "port": 4000, "insecure": false }');
 * ```
 * @module
 */
import { z } from "zod";
import { ConfigError } from "./config-error.ts";
import { LOG_FORMATS } from "../runtime/log.ts";

/** A product name: 1–32 of a-z, 0-9 and "-", starting with a letter. */
export const PRODUCT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const seconds = z.number().positive();
const hostPort = z.string().regex(/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/);
const target = z.union([
  hostPort,
  z.strictObject({ address: hostPort, ca: z.string().min(1).optional(), fingerprint: z.string().min(1).optional(), serverName: z.string().min(1).optional() }),
]);

/** Every setting the file may hold. */
export const CONFIG_FILE = z.strictObject({
  host: z.string().min(1).optional(),
  port: z.number().int().min(0).max(65535).optional(),
  stateDir: z.string().min(1).optional(),
  keys: z.array(z.string().regex(/^\s*[0-9a-fA-F]{64}\s*$/)).optional(),
  keyFiles: z.array(z.string().min(1)).optional(),
  insecure: z.boolean().optional(),
  handshakeTimeoutSeconds: seconds.optional(),
  maxHandshakes: z.number().int().positive().optional(),
  authFailuresPerMinute: z.number().int().positive().optional(),
  products: z.array(z.string().regex(PRODUCT_NAME)).optional(),
  idleTimeoutSeconds: seconds.optional(),
  reconnectGraceSeconds: seconds.optional(),
  processGraceSeconds: seconds.optional(),
  warmHosts: z.number().int().min(0).max(64).optional(),
  replayLimitMiB: z.number().positive().optional(),
  listen: z.boolean().optional(),
  connect: z.array(target).optional(),
  keepaliveSeconds: seconds.optional(),
  logFormat: z.enum(LOG_FORMATS).optional(),
  revokedKeyGraceSeconds: z.number().min(0).optional(),
  metrics: hostPort.optional(),
  proxy: z.string().min(1).optional(),
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
    throw new ConfigError(`config file ${file}: unknown setting "${issue.keys[0]}" (known: ${Object.keys(ALLOWED).join(", ")})`);
  }
  const setting = String(issue.path[0]) as keyof ConfigFile;
  let held: unknown = value;
  for (const p of issue.path) held = (held as Record<PropertyKey, unknown>)?.[p as PropertyKey];
  const where = issue.path.length > 1 ? `"${setting}" (at ${issue.path.slice(1).join(".")})` : `"${setting}"`;
  throw new ConfigError(`config file ${file}: setting ${where} is ${describe(held)}; allowed: ${ALLOWED[setting]}`);
}
