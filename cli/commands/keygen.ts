/**
 * `agent keygen`: make a new 256-bit key and print it, or save it to a file;
 * or, with `--show FILE`, print the ids of the keys a file holds (offline:
 * no agent needed).
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { generateKey, keyId, parseKey } from "../../core/secure/keys.ts";
import { type Flags, str } from "../flags.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { readKeyFile } from "../../agent/keystore.ts";

const ADVICE = `\nThe key is a shared secret between this agent and the product; the key id is public and names it.\n` +
  `  Inbound (the product connects here): start the agent with --key-file FILE, and give the product the same key.\n` +
  `  Outbound (agent start --connect product:port): register the key with the product's listener under this\n` +
  `  server's name. The agent announces the key id, which is how the listener recognises this server, and\n` +
  `  proves it holds the key without sending it. Use one key per server so one can be revoked alone.\n` +
  `Keep key files at mode 0600; prefer --key-file to --key, since command lines are visible to other users.\n`;

export async function keygenCommand(flags: Flags): Promise<void> {
  const show = str(flags.show);
  if (show !== undefined) return await showKeyIds(show, Boolean(flags.json));
  const key = generateKey();
  const id = await keyId(key.bytes);
  const out = str(flags.out) ?? null;
  if (out) {
    writeKeyFile(out, `# agent key ${id}, created ${new Date().toISOString()}\n${key.hex}\n`, Boolean(flags.force));
  }
  if (flags.json) {
    process.stdout.write(JSON.stringify(out ? { keyId: id, file: out } : { keyId: id, key: key.hex }) + "\n");
    return;
  }
  process.stdout.write(
    (out ? `Saved a new key (id ${id}) to ${out} (mode 0600).\n` : `Key id: ${id}\nKey:    ${key.hex}\n`) + ADVICE,
  );
}

/**
 * Writes a new key file with mode 0600, creating a missing parent directory
 * with mode 0700. An existing file is replaced only with `force`.
 */
export function writeKeyFile(file: string, text: string, force: boolean): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  if (fs.existsSync(file) && !force) {
    throw new ConfigError(
      `${file} already exists; not overwriting a key that may be in use (pass --force to replace it)`,
    );
  }
  try {
    if (force) fs.rmSync(file, { force: true });
    fs.writeFileSync(file, text, { mode: 0o600, flag: "wx" });
  } catch (e) {
    throw new ConfigError(`cannot write key file ${file}: ${(e as Error).message}`);
  }
}

/** Prints the id of every key in `file`, one per line (or a JSON object). */
async function showKeyIds(file: string, json: boolean): Promise<void> {
  const ids = await Promise.all(
    readKeyFile(file).map((hex, i) => keyId(parseKey(hex, `line ${i + 1} of ${file}`).bytes)),
  );
  process.stdout.write(
    json ? JSON.stringify({ file, keyIds: ids }) + "\n" : ids.map((id) => `${id}  ${file}\n`).join(""),
  );
}
