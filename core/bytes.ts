/**
 * The few byte helpers the protocol needs. Names and semantics follow their
 * `@std/bytes` counterparts so the module can be swapped for the JSR package
 * wherever JSR is reachable (it is not on every build machine).
 *
 * @example
 * ```ts
 * import { concat, equals } from "./bytes.ts";
 * equals(concat([new Uint8Array([1]), new Uint8Array([2])]), new Uint8Array([1, 2])); // true
 * ```
 * @module
 */

let allocator: (length: number) => Uint8Array = (length) => new Uint8Array(length);

/**
 * A new array of `length` bytes that the caller overwrites in full before anything reads it.
 * Zero-filled unless the runtime installed an allocator that skips that
 * ({@link setUninitializedAllocator}): on Node, zero-filling a fresh MiB costs about 150 µs,
 * more than a third of what encrypting it costs, and every bulk MiB passes several such buffers.
 */
export function allocateUninitialized(length: number): Uint8Array {
  return allocator(length);
}

/** Installs the allocator behind {@link allocateUninitialized} (runtime/memory.ts); it must return a plain Uint8Array. */
export function setUninitializedAllocator(allocate: (length: number) => Uint8Array): void {
  allocator = allocate;
}

/**
 * Keeps up to `keep` large buffers that were handed back once nothing reads them, for the next
 * request of a size they can hold. Only buffers it allocated whole are kept, so a view into
 * memory shared with others is never written again; when full, a larger buffer replaces the
 * smallest kept.
 */
export class BufferRecycler {
  readonly #owned = new WeakSet<ArrayBufferLike>();
  readonly #kept: ArrayBuffer[] = [];

  constructor(readonly keep: number) {}

  /** `length` bytes for the caller to overwrite in full: a kept buffer that holds them, or a new one. */
  take(length: number): Uint8Array {
    const i = this.#kept.findIndex((b) => b.byteLength >= length);
    if (i >= 0) return new Uint8Array(this.#kept.splice(i, 1)[0], 0, length);
    const fresh = allocateUninitialized(length);
    if (fresh.byteOffset === 0 && fresh.buffer.byteLength === length) this.#owned.add(fresh.buffer);
    return fresh;
  }

  /** True when `bytes` lies in a buffer from {@link take} that {@link recycle} would keep. */
  owns(bytes: Uint8Array): boolean {
    return this.#owned.has(bytes.buffer);
  }

  /** Hands back the buffer under `bytes` once nothing reads it; ignored unless it came whole from {@link take}. */
  recycle(bytes: Uint8Array): void {
    const buffer = bytes.buffer as ArrayBuffer;
    if (!this.#owned.has(buffer) || this.#kept.includes(buffer)) return;
    if (this.#kept.length < this.keep) return void this.#kept.push(buffer);
    let smallest = 0;
    for (let i = 1; i < this.#kept.length; i++) {
      if (this.#kept[i].byteLength < this.#kept[smallest].byteLength) smallest = i;
    }
    if (this.#kept[smallest].byteLength < buffer.byteLength) this.#kept[smallest] = buffer;
  }
}

/** Joins byte arrays into one new array. */
export function concat(buffers: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const b of buffers) length += b.length;
  const out = allocateUninitialized(length);
  let offset = 0;
  for (const b of buffers) {
    out.set(b, offset);
    offset += b.length;
  }
  return out;
}

/**
 * Removes the first `n` bytes from the front of `queue` (byte arrays in order) and returns them
 * as the views they were, unjoined; a partly taken array stays in the queue as its rest.
 * The queue must hold at least `n` bytes.
 */
export function takeFront(queue: Uint8Array[], n: number): Uint8Array[] {
  const taken: Uint8Array[] = [];
  for (let need = n; need > 0;) {
    const first = queue[0];
    if (first.length <= need) {
      taken.push(first);
      queue.shift();
      need -= first.length;
    } else {
      taken.push(first.subarray(0, need));
      queue[0] = first.subarray(need);
      need = 0;
    }
  }
  return taken;
}

/** True when both arrays hold the same bytes. Not constant-time: use {@link timingSafeEqual} for secrets. */
export function equals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Compares two byte arrays in time that depends only on their length. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Index of the first occurrence of `needle` in `source` at or after `start`, or -1. */
export function indexOfNeedle(source: Uint8Array, needle: Uint8Array, start = 0): number {
  if (needle.length === 0) return start <= source.length ? start : -1;
  const first = needle[0];
  for (let i = Math.max(0, start); i <= source.length - needle.length; i++) {
    if (source[i] !== first) continue;
    let j = 1;
    while (j < needle.length && source[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** Copies as much of `src` as fits into `dst` at offset `off`; returns the number of bytes copied. */
export function copy(src: Uint8Array, dst: Uint8Array, off = 0): number {
  const n = Math.max(0, Math.min(src.length, dst.length - off));
  dst.set(n === src.length ? src : src.subarray(0, n), off);
  return n;
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Parses hex (even length, 0-9a-fA-F only); returns null on anything else. */
export function fromHex(hex: string): Uint8Array | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
