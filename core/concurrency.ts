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
