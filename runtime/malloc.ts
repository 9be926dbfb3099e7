/**
 * How the C allocator (glibc's malloc, under both runtimes) treats the bulk buffers of a transfer.
 *
 * By default glibc gives memory back to the kernel as soon as more than 128 KiB is free at the top
 * of its heap, and maps each buffer of 128 KiB or more on its own. A transfer frees its socket reads
 * and ring records in bursts, so its next buffers were fresh memory, which the kernel faults in a
 * page at a time: measured, 26,000-45,000 faults per GiB uploaded in the agent, some 9 % of its CPU,
 * and up to 50,000 in the host. {@link keepFreedMemory} raises both thresholds so freed buffers are
 * reused; an {@link IdleTrim} gives what is kept back to the kernel once the process falls idle.
 * Where there is no glibc or no FFI, both do nothing.
 *
 * @example
 * ```ts
 * keepFreedMemory();              // once, at the start of a long-lived process
 * const idle = new IdleTrim();
 * idle.activity();                // on each message; 0.5-1 s after the last, freed memory goes back
 * ```
 * @module
 */
import { bindC, isDeno, libcName } from "./native.ts";

/** glibc's mallopt parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

/** Buffers up to this size come from the heap, so they can be reused (a transfer's are 64 KiB to 1 MiB). */
export const KEPT_MMAP_THRESHOLD = 4 * 1024 * 1024;
/** Free memory at the top of the heap up to this much is kept while busy (measured to cover a transfer's bursts). */
export const KEPT_TRIM_THRESHOLD = 8 * 1024 * 1024;

interface Malloc {
  mallopt(param: number, value: number): number;
  malloc_trim(pad: number): number;
}

let malloc: Malloc | null | undefined;
let kept: boolean | undefined;

function glibcMalloc(): Malloc | null {
  if (malloc === undefined) {
    malloc = null;
    if (process.platform === "linux") {
      try {
        malloc = bindC(libcName(), {
          mallopt: "int mallopt(int param, int value)",
          malloc_trim: "int malloc_trim(size_t pad)",
        }) as unknown as Malloc;
      } catch { /* no glibc (musl has neither call) or no FFI here */ }
    }
  }
  return malloc;
}

/** Keeps freed bulk buffers for reuse instead of giving them back at once; true if the allocator took it. Once per process. */
export function keepFreedMemory(): boolean {
  if (kept === undefined) {
    const libc = glibcMalloc();
    // Setting either turns off glibc's own adjustment of both, so both are set.
    kept = libc !== null && libc.mallopt(M_MMAP_THRESHOLD, KEPT_MMAP_THRESHOLD) === 1 &&
      libc.mallopt(M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD) === 1;
  }
  return kept;
}

/**
 * Gives every free page of the heap back to the kernel now, inside the heap too, which glibc keeps
 * by itself; true if any was. On Node only after {@link keepFreedMemory}: loading koffi only to trim
 * would cost a process that kept nothing some 3 MiB of mapped code. Deno's FFI is built in (measured:
 * a Deno agent's private memory after 10,000 pings, 25.4 MiB without the trim, 20.2 with it).
 */
export function returnFreedMemory(): boolean {
  if (kept !== true && !isDeno()) return false;
  return (glibcMalloc()?.malloc_trim(0) ?? 0) === 1;
}

/**
 * Returns freed memory once the process has been idle for `idleMs` (between one and two such
 * periods after the last {@link activity}). Costs a flag per call while busy, and no timer while idle.
 * A trim costs well under a millisecond, so even a process busy for a moment every second loses little.
 */
export class IdleTrim {
  #active = false;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly idleMs = 500, readonly trim: () => unknown = returnFreedMemory) {}

  /** The process is doing work now. */
  activity(): void {
    this.#active = true;
    if (this.#timer === null) this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(() => {
      if (this.#active) {
        this.#active = false;
        this.#arm();
        return;
      }
      this.#timer = null;
      this.trim();
    }, this.idleMs);
    // Never keeps a process alive on its own.
    (this.#timer as { unref?: () => void }).unref?.();
  }
}
