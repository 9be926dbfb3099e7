/**
 * `agent release keygen|sign`: an operator's release key (Ed25519), and the
 * signature of a binary by it. Agents configured with the public half
 * (`"releaseKeys"`) accept a pushed update only with such a signature
 * (docs/security.md "Pushed updates").
 * @module
 */
import fs from "node:fs";
import { generateReleaseKey, releaseKeyId, releasePublicKey, signRelease } from "../../core/secure/release.ts";
import { type Flags, str } from "../flags.ts";
import { fileSha256 as sha256OfFile } from "../../runtime/file-sha256.ts";
import { ExitError } from "../errors.ts";
import { checkSecretFile } from "../../agent/file-trust.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { writeKeyFile } from "./keygen.ts";

export async function releaseCommand(action: string | undefined, file: string | undefined, flags: Flags) {
  if (action === "keygen") return await keygen(flags);
  if (action === "sign") return await sign(file, flags);
  throw new ExitError(
    2,
    `agent release needs an action: keygen or sign (not ${action === undefined ? "nothing" : `"${action}"`})`,
  );
}

async function keygen(flags: Flags) {
  const key = await generateReleaseKey();
  const id = await releaseKeyId(key.publicKey);
  const out = str(flags.out);
  if (out) {
    writeKeyFile(
      out,
      `# agent release key ${id}, created ${new Date().toISOString()}\n# public ${key.publicKey}\n${key.privateKey}\n`,
      Boolean(flags.force),
    );
  }
  if (flags.json) {
    const secret = out ? { file: out } : { privateKey: key.privateKey };
    process.stdout.write(JSON.stringify({ keyId: id, publicKey: key.publicKey, ...secret }) + "\n");
    return;
  }
  process.stdout.write(
    (out ? `Saved a new release key (id ${id}) to ${out} (mode 0600).\n` : `Private key: ${key.privateKey}\n`) +
      `Release key id: ${id}\nPublic key:     ${key.publicKey}\n\n` +
      `Agents that should take only updates signed with it list the public key in their config file:\n` +
      `  "releaseKeys": ["${key.publicKey}"]\n` +
      `Sign a binary with: agent release sign FILE --key ${out ?? "RELEASE-KEY-FILE"} > FILE.sig\n` +
      `Keep the private key off the agents' machines, at mode 0600, where only whoever releases can read it.\n`,
  );
}

async function sign(file: string | undefined, flags: Flags) {
  if (!file) throw new ExitError(2, "agent release sign needs the binary: agent release sign FILE --key KEYFILE");
  const keyFile = str(flags.key);
  if (!keyFile) throw new ExitError(2, "agent release sign needs --key KEYFILE (from agent release keygen --out)");
  const privateKey = readReleaseKey(keyFile);
  const sha256 = await fileSha256(file);
  const signature = await signRelease(privateKey, sha256);
  const id = await releaseKeyId(await releasePublicKey(privateKey));
  const out = str(flags.out);
  if (out) fs.writeFileSync(out, signature + "\n", { flag: flags.force ? "w" : "wx" });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ file, sha256, keyId: id, signature, ...(out ? { out } : {}) }) + "\n");
  } else if (out) {
    process.stdout.write(`Signed ${file} (sha256 ${sha256}) with release key ${id}: ${out}\n`);
  } else {
    process.stdout.write(signature + "\n");
    process.stderr.write(`signed ${file} (sha256 ${sha256}) with release key ${id}\n`);
  }
}

/** The private key of a release key file (mode 0600, this user's): its one line that is not a comment. */
function readReleaseKey(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    throw new ConfigError(`cannot read release key file ${file}: ${(e as Error).message}`);
  }
  checkSecretFile(file, stat, "release key file");
  const lines = fs.readFileSync(file, "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
  if (lines.length !== 1 || !/^[0-9a-fA-F]{64}$/.test(lines[0])) {
    throw new ConfigError(`${file} is not a release key file (one line of 64 hex digits, from agent release keygen)`);
  }
  return lines[0];
}

/** The SHA-256 of a file; one it cannot read is a usage error (exit 2). */
async function fileSha256(file: string): Promise<string> {
  return await sha256OfFile(file).catch((e) => {
    throw new ExitError(2, `cannot read ${file}: ${(e as Error).message}`);
  });
}
