/**
 * The order of a rollout over many agents, apart from what is rolled out:
 * canaries first, one at a time, and the rollout stops if one fails; then the
 * rest, at most `maxInFlight` at once, each started after a random delay below
 * `jitterMs`, stopping at the first failure unless told not to. Every target
 * gets an outcome: done, failed with its error, or not attempted with why.
 * Runtime-free; client/fleet.ts's `rollOutUpdate` runs updates with it.
 *
 * @example
 * ```ts
 * const outcomes = await rollOut(["web1", "web2", "web3"], (i) => deploy(i), { canary: 1, maxInFlight: 2 });
 * ```
 * @module
 */
import { AbortedError } from "../errors.ts";

/** How a rollout proceeds. */
export interface RolloutPlan {
  /** Targets done first, one at a time, before any other; a failed canary stops the rollout (default 1). */
  canary?: number;
  /** Targets in progress at once after the canaries (default 4). */
  maxInFlight?: number;
  /** Each target after the canaries starts after a random delay from 0 to this, in ms (default 0). */
  jitterMs?: number;
  /** After the canaries, stop starting targets at the first failure (default true); in progress ones finish. */
  stopOnFailure?: boolean;
  /** Aborting it starts no more targets; the ones in progress get the signal their attempt was given. */
  signal?: AbortSignal;
}

/** What became of one target: `value` when done, `error` when failed, `reason` when not attempted. */
export type RolloutOutcome<T> =
  | { name: string; status: "updated"; value: T; ms: number }
  | { name: string; status: "failed"; error: Error; ms: number }
  | { name: string; status: "not-attempted"; reason: string; ms: 0 };

/**
 * Runs `attempt` for each of `names` (by index) in the plan's order, and returns one outcome per
 * name, in the order given. It never throws for a target's failure.
 */
export async function rollOut<T>(
  names: readonly string[],
  attempt: (index: number, signal: AbortSignal) => Promise<T>,
  plan: RolloutPlan = {},
  onOutcome?: (outcome: RolloutOutcome<T>) => void,
): Promise<RolloutOutcome<T>[]> {
  const canary = Math.min(names.length, Math.max(0, Math.floor(plan.canary ?? 1)));
  const maxInFlight = Math.max(1, Math.floor(plan.maxInFlight ?? 4));
  const outcomes: RolloutOutcome<T>[] = names.map((name) => ({ name, status: "not-attempted", reason: "", ms: 0 }));
  const controller = new AbortController();
  const onAbort = () => controller.abort(new AbortedError(plan.signal!.reason));
  if (plan.signal?.aborted) onAbort();
  plan.signal?.addEventListener("abort", onAbort, { once: true });
  let stoppedBy: string | null = null;
  const run = async (index: number) => {
    const started = performance.now();
    try {
      const value = await attempt(index, controller.signal);
      outcomes[index] = { name: names[index], status: "updated", value, ms: performance.now() - started };
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      outcomes[index] = { name: names[index], status: "failed", error, ms: performance.now() - started };
    }
    onOutcome?.(outcomes[index]);
    return outcomes[index].status === "updated";
  };
  try {
    for (let i = 0; i < canary && !stoppedBy && !controller.signal.aborted; i++) {
      if (!(await run(i))) stoppedBy = `the canary ${names[i]} failed`;
    }
    let next = canary;
    const worker = async () => {
      while (next < names.length && !stoppedBy && !controller.signal.aborted) {
        const index = next++;
        await pause(Math.random() * (plan.jitterMs ?? 0), controller.signal);
        if (stoppedBy || controller.signal.aborted) break; // not started: it stays not attempted
        if (!(await run(index)) && plan.stopOnFailure !== false) stoppedBy = `${names[index]} failed`;
      }
    };
    await Promise.all(Array.from({ length: Math.min(maxInFlight, names.length - canary) }, worker));
  } finally {
    plan.signal?.removeEventListener("abort", onAbort);
  }
  const why = stoppedBy ? `not attempted: the rollout stopped because ${stoppedBy}` : "not attempted: aborted";
  return outcomes.map((o) => (o.status === "not-attempted" ? { ...o, reason: why } : o));
}

/** Waits `ms`, or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
