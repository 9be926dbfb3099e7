/**
 * The cryptographic primitives the key proof and sealed records use, behind a small
 * interface. {@link webCryptoProvider} works on every runtime; a runtime may
 * inject a faster AES-GCM (the Node CLI uses node:crypto, see
 * runtime/crypto.ts).
 *
 * @example
 * ```ts
 * const aead = await webCryptoProvider.aesGcm(key32);
 * const sealed = await aead.seal(nonce12, plaintext, ad);
 * ```
 * @module
 */
import { concat } from "../bytes.ts";

/** AES-256-GCM under one key. `open` returns null when the tag does not verify. */
export interface Aead {
  seal(nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array | Promise<Uint8Array>;
  open(nonce: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): Uint8Array | null | Promise<Uint8Array | null>;
  /**
   * Optional, for bulk messages: seals the concatenation of `parts` into `out`, which is
   * exactly its length plus {@link TAG_SIZE} (ciphertext, then tag), allocating nothing.
   */
  sealInto?(nonce: Uint8Array, parts: readonly Uint8Array[], ad: Uint8Array, out: Uint8Array): void;
  /**
   * Optional, for bulk messages: opens the ciphertext-and-tag given as consecutive `pieces`
   * into `out`, which is exactly the plaintext's length. False when the tag does not verify:
   * `out` then holds unauthenticated bytes and must be discarded.
   */
  openInto?(nonce: Uint8Array, pieces: readonly Uint8Array[], ad: Uint8Array, out: Uint8Array): boolean;
}

/**
 * Supplies AES-256-GCM, and optionally faster synchronous SHA-256, HMAC and
 * X25519; whatever it leaves out comes from WebCrypto. (On Node each
 * WebCrypto call costs about a millisecond of dispatch, and a handshake
 * makes some twenty-five of them per side.)
 */
export interface CryptoProvider {
  readonly name: string;
  aesGcm(key: Uint8Array): Promise<Aead>;
  sha256?(...parts: Uint8Array[]): Uint8Array;
  hmacSha256?(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array;
  x25519Generate?(): X25519KeyPair;
}

/** Length of the AES-GCM authentication tag. */
export const TAG_SIZE = 16;

/**
 * Plaintext length from which a message counts as bulk: the frame stream seals and opens such
 * messages into buffers it holds ({@link Aead.sealInto}, {@link Aead.openInto}), and a provider
 * may carry them on a path whose per-call cost only pays off at that size.
 */
export const BULK_MESSAGE = 16 * 1024;

const subtle = globalThis.crypto.subtle;
// WebCrypto's typings want ArrayBuffer-backed views; ours always are.
const src = (bytes: Uint8Array) => bytes as Uint8Array<ArrayBuffer>;

/** AES-256-GCM through WebCrypto. */
export const webCryptoProvider: CryptoProvider = {
  name: "webcrypto",
  async aesGcm(key: Uint8Array): Promise<Aead> {
    const k = await subtle.importKey("raw", src(key), "AES-GCM", false, ["encrypt", "decrypt"]);
    return {
      async seal(iv, plaintext, additionalData) {
        return new Uint8Array(
          await subtle.encrypt(
            { name: "AES-GCM", iv: src(iv), additionalData: src(additionalData) },
            k,
            src(plaintext),
          ),
        );
      },
      async open(iv, ciphertext, additionalData) {
        try {
          return new Uint8Array(
            await subtle.decrypt(
              { name: "AES-GCM", iv: src(iv), additionalData: src(additionalData) },
              k,
              src(ciphertext),
            ),
          );
        } catch {
          return null;
        }
      },
    };
  },
};

/** Fills a new array with cryptographically strong random bytes. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

/** SHA-256 of the concatenation of `parts`. */
export async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const data = parts.length === 1 ? parts[0] : concat(parts);
  return new Uint8Array(await subtle.digest("SHA-256", src(data)));
}

/** HMAC-SHA-256 of the concatenation of `parts` under `key`. */
export async function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Promise<Uint8Array> {
  const k = await subtle.importKey("raw", src(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, src(parts.length === 1 ? parts[0] : concat(parts))));
}

/**
 * An X25519 key pair: the 32-byte raw public key, and the agreement with a
 * peer's public key (the private key stays with whichever provider made it).
 * The agreement rejects an all-zero result (a small-order peer key).
 */
export interface X25519KeyPair {
  publicKey: Uint8Array;
  agree(peerPublic: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/** A WebCrypto X25519 key pair, whose private key is a CryptoKey. */
export interface WebCryptoX25519KeyPair extends X25519KeyPair {
  privateKey: CryptoKey;
}

function webPair(publicKey: Uint8Array, privateKey: CryptoKey): WebCryptoX25519KeyPair {
  return { publicKey, privateKey, agree: (peer) => x25519(privateKey, peer) };
}

/** A fresh ephemeral X25519 key pair, through WebCrypto. */
export async function x25519Generate(): Promise<WebCryptoX25519KeyPair> {
  const pair = await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]) as CryptoKeyPair;
  return webPair(new Uint8Array(await subtle.exportKey("raw", pair.publicKey)), pair.privateKey);
}

// PKCS#8 prefix for a raw X25519 private key (RFC 8410).
const PKCS8_X25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20];

/** An X25519 key pair from a fixed 32-byte private key: for test vectors only. */
export async function x25519FromPrivate(raw: Uint8Array): Promise<WebCryptoX25519KeyPair> {
  const der = new Uint8Array([...PKCS8_X25519, ...raw]);
  const privateKey = await subtle.importKey("pkcs8", src(der), { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await subtle.exportKey("jwk", privateKey);
  return webPair(fromBase64Url(jwk.x!), privateKey);
}

/** X25519(private, peer public): the 32-byte shared secret. Rejects an all-zero result (small-order peer key). */
export async function x25519(privateKey: CryptoKey, peerPublic: Uint8Array): Promise<Uint8Array> {
  const pub = await subtle.importKey("raw", src(peerPublic), { name: "X25519" }, false, []);
  const shared = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256));
  if (shared.every((b) => b === 0)) throw new Error("X25519 produced an all-zero secret");
  return shared;
}

function fromBase64Url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
