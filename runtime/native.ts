/**
 * Calls into the C library from either runtime: koffi on Node, `Deno.dlopen`
 * on Deno. Inside the single executable, koffi's native module ships as a SEA
 * asset and is loaded with `process.dlopen` from a private cache directory.
 * The shared-memory channel (mmap.ts), process start (spawn.ts) and AES-GCM
 * through libcrypto (libcrypto.ts) use it.
 *
 * @example
 * ```ts
 * const { getpid } = bindC(libcName(), { getpid: "int getpid(void)" });
 * console.log(getpid());
 * ```
 * @module
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { seaModule } from "./self.ts";

/** The part of koffi this project uses. */
export interface Koffi {
  load(lib: string): { func(signature: string): (...a: unknown[]) => unknown };
  view(ptr: unknown, len: number): ArrayBuffer;
  address(ptr: unknown): bigint;
}

/** The part of Deno's FFI this project uses. */
export interface DenoFfi {
  dlopen(lib: string, symbols: Record<string, unknown>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  UnsafePointer: { value(p: unknown): bigint; of(buffer: ArrayBufferView): unknown };
  UnsafePointerView: { getArrayBuffer(p: unknown, len: number): ArrayBuffer };
  permissions: { querySync(p: { name: "ffi" }): { state: string } };
}

/** True on Deno. */
export function isDeno(): boolean {
  return "Deno" in globalThis;
}

/** Deno's FFI namespace (call only on Deno). */
export function denoFfi(): DenoFfi {
  return (globalThis as unknown as { Deno: DenoFfi }).Deno;
}

/**
 * Binds C functions of `library`, given as C signatures (koffi's form) under the names the caller
 * wants: through koffi on Node, `Deno.dlopen` on Deno, with Deno's types derived from the
 * signature. On Deno every pointer parameter is a buffer (a typed array, or null), except a
 * `void *` when `voidPointers` is "opaque": then it is a pointer the library handed out, such as
 * a context, and a `void *` result is one. Throws if the library or a function is missing.
 */
export function bindC<K extends string>(
  library: string,
  signatures: Record<K, string>,
  voidPointers: "buffer" | "opaque" = "buffer",
): Record<K, (...a: unknown[]) => unknown> {
  const entries = Object.entries(signatures) as Array<[K, string]>;
  if (!isDeno()) {
    const lib = loadKoffi().load(library);
    return Object.fromEntries(entries.map(([key, signature]) => [key, lib.func(signature)])) as Record<
      K,
      (...a: unknown[]) => unknown
    >;
  }
  const type = (c: string, result: boolean): string => {
    if (c === "void") return "void";
    if (/^void\s*\*$/.test(c) && (result || voidPointers === "opaque")) return "pointer";
    if (c.includes("*")) return result ? "pointer" : "buffer";
    if (/^(unsigned\s+)?short$/.test(c)) return "i16";
    if (/^(unsigned\s+)?int$/.test(c)) return "i32";
    if (c === "size_t") return "usize";
    throw new Error(`bindC: no Deno type for the C type "${c}"`);
  };
  const parsed = entries.map(([key, signature]) => {
    const [, result, name, params] = /^(.*?)\s*\b(\w+)\((.*)\)$/.exec(signature)!;
    // A parameter's type is what precedes its name: "const uint8_t *in" -> "const uint8_t *".
    const parameters = params === "void"
      ? []
      : params.split(",").map((p) => type(p.trim().replace(/\s*\w+$/, "").trim(), false));
    return { key, name, symbol: { parameters, result: type(result.trim(), true) } };
  });
  const symbols = denoFfi().dlopen(library, Object.fromEntries(parsed.map((p) => [p.name, p.symbol]))).symbols;
  return Object.fromEntries(parsed.map((p) => [p.key, symbols[p.name]])) as Record<K, (...a: unknown[]) => unknown>;
}

/** The C library's file name on this platform. */
export function libcName(): string {
  return process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
}

/** How this runtime's FFI takes a C string and a NULL-terminated array of them. */
export interface CStrings {
  string(s: string): unknown;
  strings(list: readonly string[]): unknown;
}

let marshal: CStrings | undefined;

/**
 * C strings for {@link bindC}'s functions: koffi converts JavaScript strings itself; Deno takes NUL-terminated
 * bytes, and an array of pointers into one pool of them, which hangs off the array so it lives as long as they.
 */
export function cStrings(): CStrings {
  if (marshal) return marshal;
  if (!isDeno()) return (marshal = { string: (s) => s, strings: (list) => [...list, null] });
  const D = denoFfi();
  const encoder = new TextEncoder();
  const string = (s: string) => encoder.encode(s + "\0");
  return (marshal = {
    string,
    strings(list) {
      const encoded = list.map(string);
      const pool = new Uint8Array(encoded.reduce((n, e) => n + e.length, 0));
      const base = D.UnsafePointer.value(D.UnsafePointer.of(pool));
      const pointers = Object.assign(new BigUint64Array(list.length + 1), { pool });
      let offset = 0;
      encoded.forEach((e, k) => {
        pool.set(e, offset);
        pointers[k] = base + BigInt(offset);
        offset += e.length;
      });
      return pointers;
    },
  });
}

/** Name of the koffi native module asset inside the single executable (see build.ts). */
export const KOFFI_ASSET = "koffi.node";
/**
 * Name of the asset that holds the name of koffi's cache file, `koffi-<first 16 hex of its SHA-256>.node`,
 * made by build.ts: hashing the 1.6 MB module at run time would cost every host a millisecond and
 * node:crypto's memory.
 */
export const KOFFI_NAME_ASSET = "koffi.name";

let koffi: Koffi | null = null;

/** koffi, loaded once: from the single executable's asset, or from node_modules. */
export function loadKoffi(): Koffi {
  if (koffi) return koffi;
  const sea = seaModule();
  if (sea) {
    // The raw asset is the binary's own mapped bytes; getAsset would copy 1.6 MB into every process.
    const native = new Uint8Array(sea.getRawAsset ? sea.getRawAsset(KOFFI_ASSET) : sea.getAsset(KOFFI_ASSET));
    const file = privateCacheFile(sea.getAsset(KOFFI_NAME_ASSET, "utf8"), native);
    const mod = { exports: {} as Koffi };
    process.dlopen(mod, file);
    return (koffi = mod.exports);
  }
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  try {
    return (koffi = createRequire(here)("koffi") as Koffi);
  } catch (e) {
    if ((e as { code?: string }).code !== "MODULE_NOT_FOUND") throw e;
    throw new Error(
      "the shared-memory channel needs koffi on Node, an optional dependency that is not installed: run `npm install koffi` (Deno needs nothing)",
    );
  }
}

/**
 * A file in a cache directory only this user can write (mode 0700, owned by
 * us), holding exactly `content`; written atomically if missing or different.
 */
function privateCacheFile(name: string, content: Uint8Array): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  const dir = path.join(base, "agent");
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if ((st.mode & 0o022) !== 0 || (process.getuid && st.uid !== process.getuid())) {
    throw new Error(`cache directory ${dir} is writable by others or not ours; refusing to load native code from it`);
  }
  const file = path.join(dir, name);
  if (sameContent(file, content)) return file;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

/** True if `file` holds exactly `content`; compared in pieces, so no copy of the whole file is made. */
function sameContent(file: string, content: Uint8Array): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return false; // missing
  }
  try {
    if (fs.fstatSync(fd).size !== content.length) return false;
    const piece = new Uint8Array(64 * 1024);
    for (let at = 0; at < content.length;) {
      const n = fs.readSync(fd, piece, 0, piece.length, at);
      if (n === 0 || Buffer.compare(piece.subarray(0, n), content.subarray(at, at + n)) !== 0) return false;
      at += n;
    }
    return true;
  } finally {
    fs.closeSync(fd);
  }
}
