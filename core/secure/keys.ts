/**
 * Pre-shared agent keys: 256 random bits written as 64 hex digits, and the
 * short public id derived from each. A malformed key is an error, never a
 * reason to fall back to anything weaker.
 *
 * @example
 * ```ts
 * const key = generateKey();
 * const id = await keyId(key.bytes); // e.g. "3f9a0c12b4e7"
 * parseKey(key.hex).bytes.length; // 32
 * ```
 * @module
 */
import { fromHex, toHex } from "../bytes.ts";
import { randomBytes, sha256 } from "./crypto.ts";
import { InvalidKeyError } from "../errors.ts";

/** A key in both of its forms. */
export interface AgentKey {
  bytes: Uint8Array;
  hex: string;
}

/** Key bytes: 256 bits. */
export const KEY_SIZE = 32;
const KEY_ID_CONTEXT = new TextEncoder().encode("agent key id v1\0");

/**
 * A new random key.
 *
 * @example
 * ```ts
 * const key = generateKey();
 * console.log(key.hex.length, key.bytes.length); // 64 32
 * ```
 */
export function generateKey(): AgentKey {
  const bytes = randomBytes(KEY_SIZE);
  return { bytes, hex: toHex(bytes) };
}

/**
 * Parses 64 hex digits (surrounding white space allowed); throws {@link InvalidKeyError} otherwise.
 *
 * @example
 * ```ts
 * console.log(parseKey(generateKey().hex + "\n").bytes.length); // 32
 * try { parseKey("not a key"); } catch (e) { console.log((e as Error).message); } // … is not a valid agent key …
 * ```
 */
export function parseKey(text: string, where = "the key"): AgentKey {
  const hex = text.trim().toLowerCase();
  const bytes = hex.length === KEY_SIZE * 2 ? fromHex(hex) : null;
  if (!bytes) throw new InvalidKeyError(where);
  return { bytes, hex };
}

/**
 * The key's public id: the first 6 bytes of SHA-256("agent key id v1\0" ‖ key), as 12 hex digits.
 *
 * @example
 * ```ts
 * console.log(await keyId(generateKey().bytes)); // e.g. 3f9a0c12b4e7
 * ```
 */
export async function keyId(key: Uint8Array): Promise<string> {
  return toHex((await sha256(KEY_ID_CONTEXT, key)).subarray(0, 6));
}
