/**
 * Real shared memory: maps a file into this process with libc `mmap`
 * (MAP_SHARED), through koffi on Node and `Deno.dlopen` on Deno (native.ts).
 *
 * @example
 * ```ts
 * const mapping = mapFile("/run/agent/s1.mmap", 1 << 20);
 * mapping.bytes[0] = 1; // visible to every process that maps the file
 * mapping.close();
 * ```
 * @module
 */
import fs from "node:fs";
import { denoFfi, isDeno, type Koffi, libcName, loadKoffi } from "./native.ts";

/** A mapped file. */
export interface Mapping {
  bytes: Uint8Array;
  /** Which FFI mapped it. */
  backend: "koffi" | "deno";
  close(): void;
}

const PROT_READ_WRITE = 3;
const MAP_SHARED = 1;
const O_RDWR = 2, O_NOFOLLOW = 0o400000;

/** Maps `size` bytes of an existing file read-write and shared. */
export function mapFile(file: string, size: number, expect?: FileIdentity): Mapping {
  return isDeno() ? mapWithDeno(file, size, expect) : mapWithKoffi(file, size, expect);
}

/** A file's device and inode: {@link mapFile} maps only that file, opened without following a link. */
export interface FileIdentity {
  dev: number;
  ino: number;
}

/** The identity of the file open on `fd` (through /proc, which both runtimes can stat). */
function openedIdentity(fd: number): FileIdentity {
  const s = fs.statSync(`/proc/self/fd/${fd}`);
  return { dev: s.dev, ino: s.ino };
}

/** Throws unless the file open on `fd` is the one `expect` names. */
function checkIdentity(file: string, fd: number, expect: FileIdentity | undefined): void {
  if (!expect) return;
  const got = openedIdentity(fd);
  if (got.dev !== expect.dev || got.ino !== expect.ino) {
    throw new Error(`${file} is not the channel file it was (replaced since it was recorded)`);
  }
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

let denoLibc: Record<string, (...a: unknown[]) => unknown> | null = null;

function mapWithDeno(file: string, size: number, expect?: FileIdentity): Mapping {
  const D = denoFfi();
  denoLibc ??= D.dlopen(libcName(), {
    open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "isize"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
  }).symbols;
  const libc = denoLibc;
  const flags = O_RDWR | (expect ? O_NOFOLLOW : 0);
  const fd = libc.open(new TextEncoder().encode(file + "\0"), flags, 0) as number;
  if (fd < 0) throw new Error(`cannot open ${file} for mapping`);
  let ptr: unknown;
  try {
    checkIdentity(file, fd, expect);
    ptr = libc.mmap(null, BigInt(size), PROT_READ_WRITE, MAP_SHARED, fd, 0n);
  } finally {
    libc.close(fd);
  }
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

let koffiLibc: { koffi: Koffi; mmap: (...a: unknown[]) => unknown; munmap: (...a: unknown[]) => unknown } | null = null;

function mapWithKoffi(file: string, size: number, expect?: FileIdentity): Mapping {
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
  const fd = fs.openSync(file, fs.constants.O_RDWR | (expect ? fs.constants.O_NOFOLLOW : 0));
  let ptr: unknown;
  try {
    checkIdentity(file, fd, expect);
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

/** Throws the reason the shared-memory channel cannot work in this process, if any. */
export function checkMmapAvailable(): void {
  if (!isDeno() && koffiLibc === null) loadKoffi();
}
