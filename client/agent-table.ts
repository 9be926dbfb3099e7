/**
 * The listener's table of servers and their agents' keys, indexed both ways
 * (server name → entry, key id → entry). A change costs the entries it
 * touches: replacing a 20,000-server table that differs in one line hashes one key.
 * @module
 */
import crypto from "node:crypto";
import { parseKey } from "../core/secure/keys.ts";

/** One server's row: its agent's key, the key's public id, and whether it is revoked. */
export interface TableEntry {
  server: string;
  hex: string;
  key: Uint8Array;
  keyId: string;
  revoked: boolean;
}

const KEY_ID_CONTEXT = new TextEncoder().encode("agent key id v1\0");

/** core/secure/keys.ts's keyId, computed synchronously (node:crypto), so a large table loads without awaiting. */
function keyIdOf(key: Uint8Array): string {
  return crypto.createHash("sha256").update(KEY_ID_CONTEXT).update(key).digest("hex").slice(0, 12);
}

export class AgentTable {
  #byServer = new Map<string, TableEntry>();
  #byKeyId = new Map<string, TableEntry>();

  get size(): number {
    return this.#byServer.size;
  }

  byKeyId(id: string): TableEntry | undefined {
    return this.#byKeyId.get(id);
  }

  byServer(server: string): TableEntry | undefined {
    return this.#byServer.get(server);
  }

  /**
   * Sets one server's row; returns true when the agent connected under the old
   * row must go (its key changed or is now revoked).
   */
  set(server: string, entry: string | { key: string; revoked?: boolean }): boolean {
    const e = typeof entry === "string" ? { key: entry } : entry;
    const revoked = e.revoked === true;
    const old = this.#byServer.get(server);
    if (old && old.hex === e.key && old.revoked === revoked) return false; // the common case: nothing to parse
    const { hex, bytes } = parseKey(e.key, `the key of server "${server}"`);
    if (old && old.hex === hex && old.revoked === revoked) return false;
    if (old) this.#byKeyId.delete(old.keyId);
    const row: TableEntry = { server, hex, key: bytes, keyId: old?.hex === hex ? old.keyId : keyIdOf(bytes), revoked };
    this.#byServer.set(server, row);
    this.#byKeyId.set(row.keyId, row);
    return old !== undefined;
  }

  /** Removes one server's row; true if it was there. */
  delete(server: string): boolean {
    const old = this.#byServer.get(server);
    if (!old) return false;
    this.#byServer.delete(server);
    if (this.#byKeyId.get(old.keyId) === old) this.#byKeyId.delete(old.keyId);
    return true;
  }

  /** The servers not named in `keep`. */
  serversNotIn(keep: Record<string, unknown>): string[] {
    const gone: string[] = [];
    for (const server of this.#byServer.keys()) if (!Object.hasOwn(keep, server)) gone.push(server);
    return gone;
  }
}
