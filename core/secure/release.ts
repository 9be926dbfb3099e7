/**
 * Release keys: Ed25519 keys an operator makes to sign the agent binaries they
 * release, so that agents configured with the public half accept a pushed
 * update only when it carries a signature by one of them (docs/security.md
 * "Pushed updates"). What is signed is not the binary but a short statement
 * that names its SHA-256: `"agent release v1\0"` ‖ the 32-byte digest. The
 * agent checks it before the first byte of the binary arrives, and Ed25519 never
 * needs the whole binary in memory. WebCrypto's Ed25519, on Node and Deno alike.
 *
 * @example
 * ```ts
 * const key = await generateReleaseKey();
 * const signature = await signRelease(key.privateKey, sha256Hex);
 * await verifyRelease([key.publicKey], sha256Hex, signature); // the key id, or null
 * ```
 * @module
 */
import { concat, fromHex, toHex } from "../bytes.ts";
import { sha256 } from "./crypto.ts";
import { AgentError } from "../errors.ts";

const subtle = globalThis.crypto.subtle;
const ED25519 = { name: "Ed25519" } as const;
/** What a release signature covers, before the digest: a signature made for anything else never passes. */
const STATEMENT_CONTEXT = new TextEncoder().encode("agent release v1\0");
const KEY_ID_CONTEXT = new TextEncoder().encode("agent release key id v1\0");
// PKCS#8 prefix for a raw Ed25519 private key (RFC 8410).
const PKCS8_ED25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
// WebCrypto's typings want ArrayBuffer-backed views; ours always are.
const src = (bytes: Uint8Array) => bytes as Uint8Array<ArrayBuffer>;

/** A release key pair, each half as hex: 32 bytes of private seed, 32 bytes of public key. */
export interface ReleaseKey {
  privateKey: string;
  publicKey: string;
}

/** A new Ed25519 release key. */
export async function generateReleaseKey(): Promise<ReleaseKey> {
  const pair = await subtle.generateKey(ED25519, true, ["sign", "verify"]) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
  const publicKey = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return { privateKey: toHex(pkcs8.subarray(PKCS8_ED25519.length)), publicKey: toHex(publicKey) };
}

/** The public half of a private release key (64 hex digits). */
export async function releasePublicKey(privateHex: string): Promise<string> {
  const key = await importPrivate(privateHex, true);
  const jwk = await subtle.exportKey("jwk", key);
  return toHex(fromBase64Url(jwk.x!));
}

/** A release public key's short id: the first 6 bytes of SHA-256("agent release key id v1\0" ‖ key), as hex. */
export async function releaseKeyId(publicHex: string): Promise<string> {
  return toHex((await sha256(KEY_ID_CONTEXT, parseHex(publicHex, 32, "a release public key"))).subarray(0, 6));
}

/** The bytes a release signature covers for a binary with this SHA-256 (hex). */
export function releaseStatement(sha256Hex: string): Uint8Array {
  return concat([STATEMENT_CONTEXT, parseHex(sha256Hex, 32, "a SHA-256")]);
}

/** Signs the release of the binary with this SHA-256 (hex); returns the 64-byte signature as hex. */
export async function signRelease(privateHex: string, sha256Hex: string): Promise<string> {
  const key = await importPrivate(privateHex, false);
  return toHex(new Uint8Array(await subtle.sign(ED25519, key, src(releaseStatement(sha256Hex)))));
}

/**
 * The id of the first of `publicKeys` (hex) whose signature `signatureHex` is over the release of
 * the binary with this SHA-256, or null when none is (a malformed signature included).
 */
export async function verifyRelease(
  publicKeys: readonly string[],
  sha256Hex: string,
  signatureHex: string,
): Promise<string | null> {
  const signature = fromHex(signatureHex.trim());
  if (!signature || signature.length !== 64) return null;
  const statement = releaseStatement(sha256Hex);
  for (const publicHex of publicKeys) {
    const key = await subtle.importKey("raw", src(parseHex(publicHex, 32, "a release public key")), ED25519, false, [
      "verify",
    ]);
    if (await subtle.verify(ED25519, key, src(signature), src(statement))) return await releaseKeyId(publicHex);
  }
  return null;
}

/** Parses a release public key (64 hex digits); throws a sentence saying what is expected. */
export function parseReleasePublicKey(text: string, where: string): string {
  const hex = text.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new AgentError(
      "invalid-key",
      `${where} is not a release public key: expected 64 hex digits (make one with \`agent release keygen\`)`,
    );
  }
  return hex;
}

function importPrivate(privateHex: string, extractable: boolean): Promise<CryptoKey> {
  const der = new Uint8Array([...PKCS8_ED25519, ...parseHex(privateHex, 32, "a release private key")]);
  return subtle.importKey("pkcs8", src(der), ED25519, extractable, ["sign"]);
}

function parseHex(text: string, bytes: number, what: string): Uint8Array {
  const parsed = fromHex(text.trim());
  if (!parsed || parsed.length !== bytes) {
    throw new AgentError("invalid-argument", `not ${what}: expected ${bytes * 2} hex digits`);
  }
  return parsed;
}

function fromBase64Url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
