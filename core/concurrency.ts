/**
 * Work over many items with a bound on how many run at once: the fleet
 * helper's servers, `agent cp`'s files.
 * @module
 */

/**
 * Calls `work` for each item, in order of starting, at most `limit` at a
 * time, and resolves when all have finished. Once one throws, no more start;
 * the first error is rethrown after those already running have finished.
 */
export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { error: unknown } | null = null;
  const worker = async () => {
    while (failed === null && next < items.length) {
      const index = next++;
      try {
        await work(items[index], index);
      } catch (error) {
        failed ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  if (failed !== null) throw (failed as { error: unknown }).error;
}

/**
 * Races work against something closing (a connection), leaving nothing behind on the long-lived promise that
 * says it closed: `Promise.race([work, closed.then(…)])` adds a reaction to `closed` that stays until it
 * settles, about 465 bytes a call, so a connection that served a million requests held some 460 MB.
 *
 * @example
 * ```ts
 * const closes = new CloseWatch(stream.closed);
 * const copied = await closes.race(ring.send(frame).then(() => true), false); // false: the client left first
 * ```
 */
export class CloseWatch {
  #waiters = new Set<() => void>();
  #closed = false;

  constructor(closed: Promise<unknown>) {
    const close = () => {
      this.#closed = true;
      for (const waiter of this.#waiters) waiter();
      this.#waiters.clear();
    };
    closed.then(close, close);
  }

  /** `work`'s value (or its error), or `ifClosed` once the watched thing closes first. */
  race<T, C>(work: Promise<T>, ifClosed: C): Promise<T | C> {
    if (this.#closed) return Promise.resolve(ifClosed);
    return new Promise<T | C>((resolve, reject) => {
      const waiter = () => resolve(ifClosed);
      this.#waiters.add(waiter);
      work.then(
        (value) => (this.#waiters.delete(waiter), resolve(value)),
        (error) => (this.#waiters.delete(waiter), reject(error)),
      );
    });
  }
}
