/**
 * The AES-GCM provider for this runtime. On Node, `node:crypto` runs the
 * cipher synchronously on the calling thread, which is markedly faster than
 * WebCrypto for small records; on Deno its `node:crypto` is slower than its
 * WebCrypto, so WebCrypto is used there (bench/ measures both).
 *
 * @example
 * ```ts
 * const provider = runtimeCryptoProvider();
 * ```
 * @module
 */
import { createCipheriv, createDecipheriv, createSecretKey } from "node:crypto";
import type { Aead, CryptoProvider } from "../core/secure/crypto.ts";
import { concat } from "../core/bytes.ts";
import { TAG_SIZE, webCryptoProvider } from "../core/secure/crypto.ts";

/** AES-256-GCM through `node:crypto`. */
export const nodeCryptoProvider: CryptoProvider = {
  name: "node:crypto",
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
    return Promise.resolve({
      seal: (iv, plaintext, ad) => concat(sealParts(iv, [plaintext], ad)),
      sealParts,
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
    });
  },
};

/** The faster provider for the runtime this process runs on. */
export function runtimeCryptoProvider(): CryptoProvider {
  return "Deno" in globalThis ? webCryptoProvider : nodeCryptoProvider;
}

/** Runtime name and version, for agent info and status. */
export function runtimeInfo(): { name: string; version: string } {
  const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
  return deno ? { name: "deno", version: deno.version.deno } : { name: "node", version: process.versions.node };
}
