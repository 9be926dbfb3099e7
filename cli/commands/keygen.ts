/**
 * `agent keygen`: print (or save) a new 256-bit key and its id.
 * @module
 */
import fs from "node:fs";
import { generateKey, keyId } from "../../core/secure/keys.ts";
import { type Flags, str } from "../../agent/config.ts";

export async function keygenCommand(flags: Flags): Promise<void> {
  const key = generateKey();
  const id = await keyId(key.bytes);
  const out = str(flags.out) ?? null;
  if (out) fs.writeFileSync(out, `# agent key ${id}, created ${new Date().toISOString()}\n${key.hex}\n`, { mode: 0o600, flag: "wx" });
  if (flags.json) {
    process.stdout.write(JSON.stringify(out ? { keyId: id, file: out } : { keyId: id, key: key.hex }) + "\n");
    return;
  }
  process.stdout.write(
    (out ? `Saved a new key (id ${id}) to ${out} (mode 0600).\n` : `Key id: ${id}\nKey:    ${key.hex}\n`) +
      `\nThe key is a shared secret between this agent and the product; the key id is public and names it.\n` +
      `  Inbound (the product connects here): start the agent with --key-file FILE, and give the product the same key.\n` +
      `  Outbound (agent start --connect product:port): register the key with the product's listener under this\n` +
      `  server's name. The agent announces the key id, which is how the listener recognises this server, and\n` +
      `  proves it holds the key without sending it. Use one key per server so one can be revoked alone.\n` +
      `Keep key files at mode 0600; prefer --key-file to --key, since command lines are visible to other users.\n`,
  );
}
