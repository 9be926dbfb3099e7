/**
 * The SHA-256 of a file, read as a stream: what `agent release sign` signs and what an upgrade
 * names a build by.
 *
 * @example
 * ```ts
 * console.log(await fileSha256("/usr/local/bin/agent")); // 64 hex digits
 * ```
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";

/** Hex SHA-256 of `file`; rejects with the file system's error when it cannot be read. */
export async function fileSha256(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Uint8Array);
  return hash.digest("hex");
}
