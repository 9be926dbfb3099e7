/**
 * Real shared memory: maps a file into this process with libc `mmap`
 * (MAP_SHARED), through koffi on Node and `Deno.dlopen` on Deno. Inside the
 * single executable, koffi's native module ships as a SEA asset and is
 * loaded with `process.dlopen` from a private cache directory.
 *
 * @example
 * ```ts
 * const mapping = mapFile("/run/agent/s1.mmap", 1 << 20);
 * mapping.bytes[0] = 1; // visible to every process that maps the file
 * mapping.close();
 * ```
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { seaModule } from "./self.ts";

/** A mapped file. */
export interface Mapping {
  bytes: Uint8Array;
  /** Which FFI mapped it. */
  backend: "koffi" | "deno";
  close(): void;
}

const PROT_READ_WRITE = 3;
const MAP_SHARED = 1;
const O_RDWR = 2;

/** Maps `size` bytes of an existing file read-write and shared. */
export function mapFile(file: string, size: number): Mapping {
  return "Deno" in globalThis ? mapWithDeno(file, size) : mapWithKoffi(file, size);
}

/** Creates `file` (mode 0600, must not exist) with `size` zero bytes. */
export function createMapFile(file: string, size: number): void {
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

// ---- Deno ---------------------------------------------------------------

interface DenoFfi {
  dlopen(lib: string, symbols: Record<string, unknown>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  UnsafePointer: { value(p: unknown): bigint };
  UnsafePointerView: { getArrayBuffer(p: unknown, len: number): ArrayBuffer };
}

let denoLibc: Record<string, (...a: unknown[]) => unknown> | null = null;

function mapWithDeno(file: string, size: number): Mapping {
  const D = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  denoLibc ??= D.dlopen(libcName(), {
    open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "isize"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
  }).symbols;
  const libc = denoLibc;
  const fd = libc.open(new TextEncoder().encode(file + "\0"), O_RDWR, 0) as number;
  if (fd < 0) throw new Error(`cannot open ${file} for mapping`);
  const ptr = libc.mmap(null, BigInt(size), PROT_READ_WRITE, MAP_SHARED, fd, 0n);
  libc.close(fd);
  if (ptr === null || D.UnsafePointer.value(ptr) === 0xffffffffffffffffn) throw new Error(`mmap of ${file} failed`);
  const bytes = new Uint8Array(D.UnsafePointerView.getArrayBuffer(ptr, size));
  let closed = false;
  return {
    bytes,
    backend: "deno",
    close() {
      if (closed) return;
      closed = true;
      libc.munmap(ptr, BigInt(size));
    },
  };
}

// ---- Node (koffi) -------------------------------------------------------

interface Koffi {
  load(lib: string): { func(signature: string): (...a: unknown[]) => unknown };
  view(ptr: unknown, len: number): ArrayBuffer;
  address(ptr: unknown): bigint;
}

let koffiLibc: { koffi: Koffi; mmap: (...a: unknown[]) => unknown; munmap: (...a: unknown[]) => unknown } | null = null;

function mapWithKoffi(file: string, size: number): Mapping {
  if (!koffiLibc) {
    const koffi = loadKoffi();
    const lib = koffi.load(libcName());
    koffiLibc = {
      koffi,
      mmap: lib.func("void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)"),
      munmap: lib.func("int munmap(void *addr, size_t len)"),
    };
  }
  const { koffi, mmap, munmap } = koffiLibc;
  const fd = fs.openSync(file, "r+");
  let ptr: unknown;
  try {
    ptr = mmap(null, size, PROT_READ_WRITE, MAP_SHARED, fd, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (ptr === null || koffi.address(ptr) === 0xffffffffffffffffn) throw new Error(`mmap of ${file} failed`);
  const bytes = new Uint8Array(koffi.view(ptr, size));
  let closed = false;
  return {
    bytes,
    backend: "koffi",
    close() {
      if (closed) return;
      closed = true;
      munmap(ptr, size);
    },
  };
}

/** Name of the koffi native module asset inside the single executable (see build.ts). */
export const KOFFI_ASSET = "koffi.node";

function loadKoffi(): Koffi {
  const sea = seaModule();
  if (sea) {
    const native = Buffer.from(sea.getAsset(KOFFI_ASSET) as ArrayBuffer);
    const file = privateCacheFile(`koffi-${crypto.createHash("sha256").update(native).digest("hex").slice(0, 16)}.node`, native);
    const mod = { exports: {} as Koffi };
    process.dlopen(mod, file);
    return mod.exports;
  }
  const here = typeof __filename === "string" ? __filename : import.meta.url;
  try {
    return createRequire(here)("koffi") as Koffi;
  } catch (e) {
    if ((e as { code?: string }).code !== "MODULE_NOT_FOUND") throw e;
    throw new Error("the shared-memory channel needs koffi on Node, an optional dependency that is not installed: run `npm install koffi` (Deno needs nothing)");
  }
}

/** Throws the reason the shared-memory channel cannot work in this process, if any. */
export function checkMmapAvailable(): void {
  if (!("Deno" in globalThis) && koffiLibc === null) loadKoffi();
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

function libcName(): string {
  return process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
}
