/**
 * AES-256-GCM from the system's OpenSSL (libcrypto.so.3) through the runtime's FFI:
 * `Deno.dlopen` on Deno, koffi on Node. One cipher context per key and direction is
 * set up once and reused: each message only sets its nonce, and bulk messages are
 * sealed into and opened into buffers the caller gives, so nothing is allocated per
 * message. On Deno it carries every record: about 3× faster than Deno's WebCrypto and
 * 10× its `node:crypto` with 64 KiB messages. On Node it carries bulk messages only
 * (runtime/crypto.ts): there it saves a cipher object and an output buffer per message
 * (docs/security.md "Crypto providers"). Where the library or the FFI cannot be loaded,
 * {@link libcryptoProvider} returns null and the caller keeps its other provider.
 *
 * @example
 * ```ts
 * const provider = libcryptoProvider() ?? webCryptoProvider;
 * const aead = await provider.aesGcm(key32);
 * ```
 * @module
 */
import { type Aead, type CryptoProvider, TAG_SIZE } from "../core/secure/crypto.ts";
import { bindC, denoFfi, isDeno } from "./native.ts";

const LIBRARIES = ["libcrypto.so.3", "libcrypto.so"];
const GCM_GET_TAG = 0x10, GCM_SET_TAG = 0x11;

/** The functions used, in C (runtime/native.ts `bindC`; each `void *` is an opaque pointer). */
const SIGNATURES = {
  ctxNew: "void *EVP_CIPHER_CTX_new(void)",
  ctxFree: "void EVP_CIPHER_CTX_free(void *ctx)",
  aes256Gcm: "void *EVP_aes_256_gcm(void)",
  encryptInit: "int EVP_EncryptInit_ex(void *ctx, void *cipher, void *engine, const uint8_t *key, const uint8_t *iv)",
  encryptUpdate: "int EVP_EncryptUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)",
  encryptFinal: "int EVP_EncryptFinal_ex(void *ctx, uint8_t *out, int *outl)",
  decryptInit: "int EVP_DecryptInit_ex(void *ctx, void *cipher, void *engine, const uint8_t *key, const uint8_t *iv)",
  decryptUpdate: "int EVP_DecryptUpdate(void *ctx, uint8_t *out, int *outl, const uint8_t *in, int inl)",
  decryptFinal: "int EVP_DecryptFinal_ex(void *ctx, uint8_t *out, int *outl)",
  ctrl: "int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uint8_t *ptr)",
} as const;

type Buf = Uint8Array | null;
type Symbols = {
  ctxNew(): unknown;
  ctxFree(ctx: unknown): void;
  aes256Gcm(): unknown;
  encryptInit(ctx: unknown, cipher: unknown, engine: null, key: Buf, iv: Buf): number;
  encryptUpdate(ctx: unknown, out: Buf, outl: Int32Array, input: Uint8Array, inl: number): number;
  encryptFinal(ctx: unknown, out: Uint8Array, outl: Int32Array): number;
  decryptInit(ctx: unknown, cipher: unknown, engine: null, key: Buf, iv: Buf): number;
  decryptUpdate(ctx: unknown, out: Buf, outl: Int32Array, input: Uint8Array, inl: number): number;
  decryptFinal(ctx: unknown, out: Uint8Array, outl: Int32Array): number;
  ctrl(ctx: unknown, type: number, arg: number, ptr: Uint8Array): number;
};

let loaded: Symbols | null | undefined;

function load(): Symbols | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  // Never ask: a Deno program run without --allow-ffi gets another provider, not a permission prompt.
  if (isDeno() && denoFfi().permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  for (const name of LIBRARIES) {
    try {
      return (loaded = bindC(name, SIGNATURES, "opaque") as unknown as Symbols);
    } catch { /* not this name, or no koffi on Node: try the next */ }
  }
  return null;
}

/** Frees a key's contexts once nothing references its Aead. */
const contexts = new FinalizationRegistry<{ lib: Symbols; ctx: unknown }>(({ lib, ctx }) => lib.ctxFree(ctx));

function aead(lib: Symbols, key: Uint8Array): Aead {
  const outl = new Int32Array(1);
  const tag = new Uint8Array(TAG_SIZE); // OpenSSL copies a tag it is given, so one buffer serves every message
  let sealer: unknown = null, opener: unknown = null;
  const context = (init: Symbols["encryptInit"]) => {
    const ctx = lib.ctxNew();
    if (!ctx) throw new Error("libcrypto: no cipher context");
    contexts.register(self, { lib, ctx });
    if (init(ctx, lib.aes256Gcm(), null, key, null) !== 1) throw new Error("libcrypto: setting the key failed");
    return ctx;
  };
  const self: Aead = {
    seal(nonce, plaintext, ad) {
      const out = new Uint8Array(plaintext.length + TAG_SIZE);
      self.sealInto!(nonce, [plaintext], ad, out);
      return out;
    },
    sealInto(nonce, parts, ad, out) {
      sealer ??= context(lib.encryptInit);
      if (lib.encryptInit(sealer, null, null, null, nonce) !== 1) {
        throw new Error("libcrypto: setting the nonce failed");
      }
      if (ad.length && lib.encryptUpdate(sealer, null, outl, ad, ad.length) !== 1) {
        throw new Error("libcrypto: associated data failed");
      }
      let at = 0;
      for (const p of parts) {
        if (p.length === 0) continue;
        if (lib.encryptUpdate(sealer, out.subarray(at), outl, p, p.length) !== 1) {
          throw new Error("libcrypto: encryption failed");
        }
        at += outl[0];
      }
      if (at + TAG_SIZE !== out.length) {
        throw new RangeError("sealInto: out is not the plaintext's length plus the tag");
      }
      if (lib.encryptFinal(sealer, out.subarray(at), outl) !== 1) throw new Error("libcrypto: encryption failed");
      lib.ctrl(sealer, GCM_GET_TAG, TAG_SIZE, out.subarray(at));
    },
    open(nonce, sealed, ad) {
      if (sealed.length < TAG_SIZE) return null;
      const out = new Uint8Array(sealed.length - TAG_SIZE);
      return self.openInto!(nonce, [sealed], ad, out) ? out : null;
    },
    openInto(nonce, pieces, ad, out) {
      opener ??= context(lib.decryptInit);
      lib.decryptInit(opener, null, null, null, nonce);
      if (ad.length) lib.decryptUpdate(opener, null, outl, ad, ad.length);
      let at = 0, tagAt = 0;
      for (const p of pieces) {
        const body = Math.min(p.length, out.length - at);
        if (body > 0) {
          lib.decryptUpdate(opener, out.subarray(at), outl, p, body);
          at += outl[0];
        }
        if (body < p.length) {
          if (tagAt + p.length - body > TAG_SIZE) return false;
          tag.set(p.subarray(body), tagAt);
          tagAt += p.length - body;
        }
      }
      if (at !== out.length || tagAt !== TAG_SIZE) return false;
      lib.ctrl(opener, GCM_SET_TAG, TAG_SIZE, tag);
      return lib.decryptFinal(opener, tag, outl) === 1; // GCM's final writes nothing
    },
  };
  return self;
}

/** AES-256-GCM under `key` through the system libcrypto; null where the library or this runtime's FFI cannot be loaded. */
export function libcryptoAead(key: Uint8Array): Aead | null {
  const lib = load();
  return lib ? aead(lib, key.slice()) : null;
}

/** {@link libcryptoAead} as a provider; null where it cannot be loaded. */
export function libcryptoProvider(): CryptoProvider | null {
  if (!load()) return null;
  return {
    name: "libcrypto (FFI)",
    aesGcm: (key) => Promise.resolve(libcryptoAead(key)!),
  };
}
