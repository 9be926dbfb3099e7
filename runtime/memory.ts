/**
 * Lets the protocol core allocate bulk buffers without zero-filling them, where the
 * runtime can: on Node through `Buffer.allocUnsafeSlow`, handed out as a plain
 * `Uint8Array` over its own memory (a Buffer's `slice` would not copy). The core only
 * asks for such buffers where it overwrites every byte before anything reads them
 * (core/bytes.ts `allocateUninitialized`). Deno keeps zero-filled arrays.
 *
 * @example
 * ```ts
 * useUninitializedAllocation();
 * const frame = allocateUninitialized(1 << 20); // not zero-filled on Node
 * ```
 * @module
 */
import { setUninitializedAllocator } from "../core/bytes.ts";
import { isDeno } from "./native.ts";

/** Installs the runtime's uninitialized allocator into the core; call once at a process's or library's entry. */
export function useUninitializedAllocation(): void {
  if (isDeno() || typeof Buffer === "undefined") return;
  // Small arrays zero-fill for next to nothing, and V8 may keep them on its own heap.
  setUninitializedAllocator((
    length,
  ) => (length < 4096 ? new Uint8Array(length) : new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)));
}
