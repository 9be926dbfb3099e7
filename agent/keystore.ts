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
import { ConfigError } from "./config.ts";
import { checkSecretFile, checkStateDir } from "./file-trust.ts";

/** File name of the key the agent creates on first start. */
export const DEFAULT_KEY_FILE = "agent.key";

/** Reads every key in `file`, refusing a file others can read or another user owns. */
export function readKeyFile(file: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError(`key file ${file} does not exist`);
    throw new ConfigError(`cannot read key file ${file}: ${(e as Error).message}`);
  }
  checkSecretFile(file, stat, "key file");
  // Numbered before comments and blank lines go, so that a message points at the line an editor shows.
  const lines = fs.readFileSync(file, "utf8").split("\n").map((l, i) => ({
    key: l.replace(/#.*/, "").trim(),
    line: i + 1,
  }))
    .filter((l) => l.key !== "");
  if (lines.length === 0) throw new ConfigError(`key file ${file} holds no key`);
  lines.forEach((l) => parseKey(l.key, `line ${l.line} of ${file}`));
  return lines.map((l) => l.key);
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

/**
 * The keys to accept: all explicit ones, or else the state directory's key
 * file, created with a new key on first start. `generated` is set when a key
 * was created now, so the caller can show it once.
 */
export async function loadAgentKeys(
  config: { keys: string[]; keyFiles: string[]; stateDir: string },
  createIfMissing = true,
): Promise<{
  keys: AcceptedKey[];
  generated: { hex: string; file: string } | null;
}> {
  const hexes = [...config.keys.map((k, i) => parseKey(k, `--key #${i + 1}`).hex)];
  for (const f of config.keyFiles) hexes.push(...readKeyFile(f).map((k) => parseKey(k).hex));
  let generated: { hex: string; file: string } | null = null;
  if (hexes.length === 0) {
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
    hexes.push(...readKeyFile(file));
  }
  const unique = [...new Set(hexes)];
  const keys = await Promise.all(unique.map(async (hex) => {
    const bytes = parseKey(hex).bytes;
    return { id: await keyId(bytes), bytes };
  }));
  return { keys, generated };
}
