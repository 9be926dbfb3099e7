/**
 * Loading the keys an agent accepts, and creating the first one. Key files
 * hold one key per line (`#` starts a comment) and must not be readable by
 * group or others, as with SSH private keys.
 *
 * @example
 * ```ts
 * const { keys, generated } = await loadAgentKeys(config);
 * ```
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import type { AcceptedKey } from "../core/secure/opening.ts";
import { generateKey, keyId, parseKey } from "../core/secure/keys.ts";
import { ConfigError, type KeyEntry, type KeyRight } from "./config.ts";
import { checkSecretFile, checkStateDir } from "./file-trust.ts";
import { KEY_RIGHTS, PRODUCT_NAME } from "./config-schema.ts";

/** A key the agent accepts, with the rights it was given beyond sessions (none when absent). */
export interface ServedKey extends AcceptedKey {
  rights?: readonly KeyRight[];
}

/** True when `keyId` is among `keys` and was given `right`. */
export function keyHasRight(keys: readonly ServedKey[], keyId: string | null, right: KeyRight): boolean {
  return keyId !== null && (keys.find((k) => k.id === keyId)?.rights ?? []).includes(right);
}

/** File name of the key the agent creates on first start. */
export const DEFAULT_KEY_FILE = "agent.key";

/** Reads every key in `file` (hex, without the products a line may name), refusing a file others can read or another user owns. */
export function readKeyFile(file: string): string[] {
  return readKeyFileEntries(file).map((e) => e.key);
}

/**
 * Reads every key in `file` with the products its line limits it to and the rights it gives:
 * `<64 hex>` (every product, no rights), `<64 hex> products=name,name`, `<64 hex> rights=update`, or both.
 * Refuses a file others can read or another user owns.
 */
export function readKeyFileEntries(file: string): KeyEntry[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError(`key file ${file} does not exist`);
    throw new ConfigError(`cannot read key file ${file}: ${(e as Error).message}`);
  }
  checkSecretFile(file, stat, "key file");
  const entries: KeyEntry[] = [];
  fs.readFileSync(file, "utf8").split("\n").forEach((line, i) => {
    const [key, ...rest] = line.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
    if (key === undefined) return;
    const where = `line ${i + 1} of ${file}`;
    entries.push({ key: parseKey(key, where).hex, ...lineSettings(rest, where) });
  });
  if (entries.length === 0) throw new ConfigError(`key file ${file} holds no key`);
  return entries;
}

/** What a key file's line says after its key: `products=a,b` (else every product) and `rights=update` (else none). */
function lineSettings(words: string[], where: string): { products: string[] | null; rights?: KeyRight[] } {
  let products: string[] | null = null, rights: KeyRight[] | undefined;
  for (const word of words) {
    const m = /^(products|rights)=([a-z0-9,-]+)$/.exec(word);
    const names = m?.[2].split(",") ?? [];
    if (m?.[1] === "products" && products === null && names.every((n) => PRODUCT_NAME.test(n))) products = names;
    else if (m?.[1] === "rights" && !rights && names.every((n) => (KEY_RIGHTS as readonly string[]).includes(n))) {
      rights = names as KeyRight[];
    } else {
      throw new ConfigError(
        `${where}: ${JSON.stringify(words.join(" "))} is not products=name,name and/or rights=update (after the ` +
          "key, only the products it may use, each 1–32 of a-z, 0-9 and -, starting with a letter, and its rights)",
      );
    }
  }
  return rights ? { products, rights } : { products };
}

/** Creates the state directory (mode 0700) if it does not exist, refusing one it may not trust. */
export function ensureStateDir(dir: string): void {
  checkStateDir(dir);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new ConfigError(
      `cannot create the state directory ${dir}: ${(e as Error).message}; create it for this user ` +
        `(install -d -m 0700 -o $(id -un) ${dir}) or choose another with --state-dir or AGENT_STATE_DIR`,
    );
  }
  if (process.platform !== "win32") {
    const mode = fs.statSync(dir).mode & 0o777;
    if ((mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  }
}

/** The products each accepted key may use, by key id: null for every product. */
export type KeyScopes = Map<string, readonly string[] | null>;

/**
 * The keys to accept: all explicit ones, or else the state directory's key
 * file, created with a new key on first start. `generated` is set when a key
 * was created now, so the caller can show it once. `scopes` holds every
 * accepted key's products; keys from key files may use every product.
 */
export async function loadAgentKeys(
  config: { keys: KeyEntry[]; keyFiles: string[]; stateDir: string },
  createIfMissing = true,
): Promise<{
  keys: ServedKey[];
  scopes: KeyScopes;
  generated: { hex: string; file: string } | null;
}> {
  const entries: KeyEntry[] = config.keys.map((k, i) => ({ ...k, key: parseKey(k.key, `--key #${i + 1}`).hex }));
  for (const f of config.keyFiles) {
    entries.push(...readKeyFileEntries(f));
  }
  let generated: { hex: string; file: string } | null = null;
  if (entries.length === 0) {
    const file = path.join(config.stateDir, DEFAULT_KEY_FILE);
    if (!fs.existsSync(file)) {
      if (!createIfMissing) {
        throw new ConfigError(`no key is configured and ${file} does not exist yet (a first start creates it)`);
      }
      ensureStateDir(config.stateDir);
      const key = generateKey();
      fs.writeFileSync(file, `# agent key, created ${new Date().toISOString()}\n${key.hex}\n`, {
        mode: 0o600,
        flag: "wx",
      });
      generated = { hex: key.hex, file };
    }
    entries.push(...readKeyFileEntries(file));
  }
  const byHex = scopesByHex(entries);
  const keys: ServedKey[] = [];
  const scopes: KeyScopes = new Map();
  for (const [hex, { products, rights }] of byHex) {
    const bytes = parseKey(hex).bytes;
    const id = await keyId(bytes);
    keys.push(rights.length ? { id, bytes, rights } : { id, bytes });
    scopes.set(id, products);
  }
  return { keys, scopes, generated };
}

/** Each distinct key with its products and rights; a key given twice must be given the same both times. */
function scopesByHex(entries: KeyEntry[]): Map<string, { products: readonly string[] | null; rights: KeyRight[] }> {
  const byHex = new Map<string, { products: readonly string[] | null; rights: KeyRight[] }>();
  const describe = ({ products, rights }: { products: readonly string[] | null; rights: KeyRight[] }) =>
    (products ? `products ${[...products].sort().join(", ")}` : "every product") +
    (rights.length ? `, rights ${[...rights].sort().join(", ")}` : "");
  for (const { key, products, rights } of entries) {
    const hex = key.toLowerCase();
    const entry = { products, rights: [...new Set(rights ?? [])] };
    if (!byHex.has(hex)) {
      byHex.set(hex, entry);
      continue;
    }
    const before = byHex.get(hex)!;
    if (describe(before) !== describe(entry)) {
      const what = String(before.products) === String(entry.products) ? "rights" : "products";
      throw new ConfigError(
        `a key is given twice with different ${what} (${describe(before)}; ${describe(entry)}): give each key once`,
      );
    }
  }
  return byHex;
}
