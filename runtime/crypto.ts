/**
 * The AES-GCM provider for this runtime. On Node, `node:crypto` runs the
 * cipher synchronously on the calling thread, which is markedly faster than
 * WebCrypto for small records; on Deno its `node:crypto` is the slowest, and
 * the system libcrypto through FFI (runtime/libcrypto.ts) the fastest, with
 * WebCrypto where that cannot load (bench/ measures them).
 *
 * @example
 * ```ts
 * const provider = runtimeCryptoProvider();
 * ```
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
} from "node:crypto";
import type { Aead, CryptoProvider, X25519KeyPair } from "../core/secure/crypto.ts";
import { concat } from "../core/bytes.ts";
import { BULK_MESSAGE, TAG_SIZE, webCryptoProvider } from "../core/secure/crypto.ts";
import { libcryptoAead, libcryptoProvider } from "./libcrypto.ts";

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
const view = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.length);

const x25519Public = (raw: Uint8Array) =>
  createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64url(raw) }, format: "jwk" });
/** X25519's base point, u = 9 (RFC 7748 §4.1): a private key's agreement with it is its public key. */
const X25519_BASE_POINT = x25519Public(Uint8Array.of(9, ...new Uint8Array(31)));

/**
 * An ephemeral X25519 pair through `node:crypto`: synchronous, microseconds rather than WebCrypto's
 * milliseconds. The public key comes from an agreement with the base point, not from exporting
 * the new key: Node 20's generateKeyPairSync leaves a job behind that locks the key when it is
 * collected, and a collection during an export, which holds that lock, hung the process for good.
 */
function nodeX25519(): X25519KeyPair {
  const { privateKey } = generateKeyPairSync("x25519");
  return {
    publicKey: view(diffieHellman({ privateKey, publicKey: X25519_BASE_POINT })),
    agree(peer) {
      const shared = view(diffieHellman({ privateKey, publicKey: x25519Public(peer) }));
      if (shared.every((b) => b === 0)) throw new Error("X25519 produced an all-zero secret");
      return shared;
    },
  };
}

/** AES-256-GCM, SHA-256, HMAC-SHA-256 and X25519 through `node:crypto`; bulk AES-GCM through libcrypto where it loads. */
export const nodeCryptoProvider: CryptoProvider = {
  name: "node:crypto",
  sha256(...parts) {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    return view(h.digest());
  },
  hmacSha256(key, ...parts) {
    const h = createHmac("sha256", key);
    for (const p of parts) h.update(p);
    return view(h.digest());
  },
  x25519Generate: nodeX25519,
  aesGcm(raw: Uint8Array): Promise<Aead> {
    const key = createSecretKey(raw);
    const sealParts = (iv: Uint8Array, parts: readonly Uint8Array[], ad: Uint8Array): Uint8Array[] => {
      const c = createCipheriv("aes-256-gcm", key, iv);
      if (ad.length) c.setAAD(ad);
      const out: Uint8Array[] = [];
      for (const p of parts) if (p.length) out.push(c.update(p));
      const tail = c.final();
      if (tail.length) out.push(tail);
      out.push(c.getAuthTag());
      return out;
    };
    // Bulk messages sealed or opened into a caller's buffer go through libcrypto where it loads: one
    // reused context and no output buffer per message. Smaller ones stay on node:crypto, whose per-call
    // cost is lower than the FFI's, and a process that never moves bulk data never loads the library.
    let bulk: Aead | null | undefined;
    const bulkFor = (
      length: number,
    ) => (length < BULK_MESSAGE ? null : bulk !== undefined ? bulk : (bulk = libcryptoAead(raw)));
    const self: Aead = {
      seal: (iv, plaintext, ad) => concat(sealParts(iv, [plaintext], ad)),
      sealInto(iv, parts, ad, out) {
        const fast = bulkFor(out.length);
        if (fast) return fast.sealInto!(iv, parts, ad, out);
        let at = 0;
        for (const piece of sealParts(iv, parts, ad)) {
          out.set(piece, at);
          at += piece.length;
        }
      },
      openInto(iv, pieces, ad, out) {
        const fast = bulkFor(out.length);
        if (fast) return fast.openInto!(iv, pieces, ad, out);
        const plain = self.open(iv, pieces.length === 1 ? pieces[0] : concat(pieces), ad) as Uint8Array | null;
        if (plain === null || plain.length !== out.length) return false;
        out.set(plain);
        return true;
      },
      open(iv, sealed, ad) {
        if (sealed.length < TAG_SIZE) return null;
        const d = createDecipheriv("aes-256-gcm", key, iv);
        d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
        if (ad.length) d.setAAD(ad);
        try {
          const head = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
          const tail = d.final();
          return tail.length === 0 ? new Uint8Array(head.buffer, head.byteOffset, head.length) : concat([head, tail]);
        } catch {
          return null;
        }
      },
    };
    return Promise.resolve(self);
  },
};

let chosen: CryptoProvider | null = null;

/**
 * The faster provider for the runtime this process runs on: `node:crypto` on Node; on Deno the
 * system libcrypto through FFI where it loads (3× WebCrypto there), else WebCrypto.
 */
export function runtimeCryptoProvider(): CryptoProvider {
  chosen ??= "Deno" in globalThis ? libcryptoProvider() ?? webCryptoProvider : nodeCryptoProvider;
  return chosen;
}

/** Runtime name and version, for agent info and status. */
export function runtimeInfo(): { name: string; version: string } {
  const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
  return deno ? { name: "deno", version: deno.version.deno } : { name: "node", version: process.versions.node };
}
