/**
 * A module loaded the first time it is needed rather than when the program starts. A session's
 * host loads node:crypto (digests) and node:child_process (the fallback process start) this way,
 * and node:fs/promises through `fs.promises`, which Node also loads on first use: a host that
 * never needs them does not carry them (about 1 MiB of a Node host's memory together, measured;
 * docs/operations.md "Memory").
 *
 * @example
 * ```ts
 * const nodeCrypto = loadOnFirstUse(() => import("node:crypto"));
 * const hash = (await nodeCrypto()).createHash("sha256"); // loads node:crypto now, once
 * ```
 * @module
 */

/** Returns a function that loads with `load` at its first call, and gives the same module to every call. */
export function loadOnFirstUse<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () => (loaded ??= load());
}
