/**
 * Calls into the C library from either runtime: koffi on Node, `Deno.dlopen`
 * on Deno. Inside the single executable, koffi's native module ships as a SEA
 * asset and is loaded with `process.dlopen` from a private cache directory.
 * The shared-memory channel (mmap.ts) and process start (spawn.ts) use it.
 *
 * @example
 * ```ts
 * if (!isDeno()) {
 *   const getpid = loadKoffi().load(libcName()).func("int getpid(void)");
 *   console.log(getpid());
 * }
 * ```
 * @module
 */
import crypto from "node:crypto";
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

/** The C library's file name on this platform. */
export function libcName(): string {
  return process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
}

/** Name of the koffi native module asset inside the single executable (see build.ts). */
export const KOFFI_ASSET = "koffi.node";

let koffi: Koffi | null = null;

/** koffi, loaded once: from the single executable's asset, or from node_modules. */
export function loadKoffi(): Koffi {
  if (koffi) return koffi;
  const sea = seaModule();
  if (sea) {
    const native = Buffer.from(sea.getAsset(KOFFI_ASSET) as ArrayBuffer);
    const file = privateCacheFile(`koffi-${crypto.createHash("sha256").update(native).digest("hex").slice(0, 16)}.node`, native);
    const mod = { exports: {} as Koffi };
    process.dlopen(mod, file);
    return (koffi = mod.exports);
  }
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  try {
    return (koffi = createRequire(here)("koffi") as Koffi);
  } catch (e) {
    if ((e as { code?: string }).code !== "MODULE_NOT_FOUND") throw e;
    throw new Error("the shared-memory channel needs koffi on Node, an optional dependency that is not installed: run `npm install koffi` (Deno needs nothing)");
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
  try {
    if (Buffer.compare(fs.readFileSync(file), content) === 0) return file;
  } catch { /* missing: write it */ }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}
