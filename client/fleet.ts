/**
 * One operation on many agents: products drive hundreds of servers, and a
 * slow, unreachable or misconfigured one must neither stall the rest nor
 * hide in an aggregate error.
 * @module
 */
import { eachLimited } from "../core/concurrency.ts";
import { AbortedError, TimeoutError } from "../core/errors.ts";
import { rollOut, type RolloutOutcome, type RolloutPlan } from "../core/client/rollout.ts";
import type { UpgradeOutcome } from "../core/wire/messages.ts";
import { sha256Hex } from "../core/client/update.ts";
import type { Agent } from "./agent.ts";
import { connect, type ConnectOptions } from "./connect.ts";

/**
 * A server to run on: where to connect (the connection is opened and closed
 * for the operation), or an {@link Agent} already at hand (from
 * {@link listen}, kept open). `name` labels its result; `host:port` by default.
 *
 * @example
 * ```ts
 * const targets: FleetTarget[] = [{ name: "web1", host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! }];
 * console.log((await runOnAgents(targets, async (agent) => (await agent.info()).os))[0].ok); // true
 * ```
 */
export type FleetTarget = (ConnectOptions & { name?: string }) | { name: string; agent: Agent };

/**
 * What one target gave: its value, or the error (connecting or in the
 * operation) that stopped it. `ms` is the time it took.
 *
 * @example
 * ```ts
 * const results: FleetResult<number>[] = await runOnAgents([{ host: "127.0.0.1", port: 1, key: process.env.AGENT_KEY! }], async () => 1);
 * for (const r of results) console.log(r.name, r.ok ? r.value : r.error.message); // 127.0.0.1:1 connection refused by …
 * ```
 */
export type FleetResult<T> =
  | { name: string; ok: true; value: T; ms: number }
  | { name: string; ok: false; error: Error; ms: number };

/**
 * How {@link runOnAgents} proceeds.
 *
 * @example
 * ```ts
 * const controller = new AbortController(); // controller.abort() stops the whole run
 * const options: FleetOptions<string> = {
 *   concurrency: 16,
 *   timeoutMs: 60_000,
 *   onResult: (r) => console.log(r.name, r.ok),
 *   signal: controller.signal,
 * };
 * await runOnAgents([], async () => "", options);
 * ```
 */
export interface FleetOptions<T> {
  /** Targets worked on at the same time (default 32). */
  concurrency?: number;
  /** Time allowed per target, connecting included; past it the target fails with a {@link TimeoutError} (default: none). */
  timeoutMs?: number;
  /** Called as each target finishes, in the order they finish (for progress). */
  onResult?: (result: FleetResult<T>) => void;
  /**
   * Aborting it ends the run: targets not started fail with an {@link AbortedError} without
   * connecting, and the ones in progress fail with it at once (the signal `operation` receives
   * aborts too, so calls given it stop).
   */
  signal?: AbortSignal;
}

/**
 * Runs `operation` on every target, at most `concurrency` at a time, and
 * returns one result per target in the order given. It never throws for a
 * target's failure: each result says `ok` or carries its error, so one bad
 * server cannot hide the others. `operation` gets a signal that aborts when
 * the target's time is up or `options.signal` aborts: pass it on to calls.
 *
 * @example
 * ```ts
 * const key = process.env.AGENT_KEY!, host = process.env.AGENT_HOST!, port = Number(process.env.AGENT_PORT);
 * const results = await runOnAgents(
 *   [{ name: "web1", host, port, key }, { name: "web2", host, port, key }],
 *   async (agent, _name, signal) => {
 *     const session = await agent.openSession("buildmaster");
 *     try {
 *       return (await (await session.processes.start({ program: "uname", args: ["-r"], signal })).wait({ signal })).code;
 *     } finally {
 *       await session.close();
 *     }
 *   },
 *   { concurrency: 8, timeoutMs: 30_000 },
 * );
 * for (const r of results) console.log(r.name, r.ok ? `exit ${r.value}` : `failed: ${r.error.message}`);
 * ```
 */
export async function runOnAgents<T>(
  targets: readonly FleetTarget[],
  operation: (agent: Agent, name: string, signal: AbortSignal) => Promise<T>,
  options: FleetOptions<T> = {},
): Promise<FleetResult<T>[]> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 32));
  const results = new Array<FleetResult<T>>(targets.length);
  // One listener on the caller's signal for the whole run, passed on to the targets in progress.
  const running = new Set<AbortController>();
  const { signal } = options;
  const abortAll = () => running.forEach((c) => c.abort(new AbortedError(signal!.reason)));
  signal?.addEventListener("abort", abortAll, { once: true });
  try {
    // runOne never throws: a server's failure is its result.
    await eachLimited(targets, concurrency, async (target, index) => {
      const controller = new AbortController();
      if (signal?.aborted) controller.abort(new AbortedError(signal.reason));
      running.add(controller);
      try {
        results[index] = await runOne(target, operation, controller, options.timeoutMs);
      } finally {
        running.delete(controller);
      }
      options.onResult?.(results[index]);
    });
  } finally {
    signal?.removeEventListener("abort", abortAll);
  }
  return results;
}

/**
 * How {@link rollOutUpdate} proceeds: the plan (canaries, at most `maxInFlight` at once, jitter,
 * stop at the first failure), the release signature, and the time allowed per agent.
 *
 * @example
 * ```ts
 * const options: RolloutOptions = { canary: 1, maxInFlight: 4, jitterMs: 2_000, stopOnFailure: true, timeoutMs: 300_000 };
 * console.log(options.canary); // 1
 * ```
 */
export interface RolloutOptions extends RolloutPlan {
  /** The release signature (hex, `agent release sign FILE`), for agents configured with release keys. */
  signature?: string;
  /** Time allowed per agent, connecting and applying included (default: none). */
  timeoutMs?: number;
  /** Called as each agent's update finishes (for progress). */
  onOutcome?: (outcome: RolloutResult) => void;
}

/**
 * One agent's part in a rollout: `updated` with the {@link UpgradeOutcome}, `failed` with the
 * error (its `code` says why: `update-not-allowed`, `upgrade-failed`, `refused`, …), or
 * `not-attempted` with the reason (the rollout stopped before it).
 *
 * @example
 * ```ts
 * const describe = (r: RolloutResult) =>
 *   r.status === "updated" ? `${r.name}: ${r.value.version}` : r.status === "failed" ? `${r.name}: ${r.error.message}` : `${r.name}: ${r.reason}`;
 * console.log(describe({ name: "web1", status: "not-attempted", reason: "not attempted: aborted", ms: 0 })); // web1: not attempted: aborted
 * ```
 */
export type RolloutResult = RolloutOutcome<UpgradeOutcome>;

/**
 * Pushes `binary` as the new agent program to every target: the canaries first (default 1),
 * one at a time, and nothing more if one fails; then the rest, at most `maxInFlight` at once
 * (default 4), each after a random delay up to `jitterMs`, stopping at the first failure
 * unless `stopOnFailure` is false. Each target connects itself (or is an {@link Agent} at hand);
 * the connection it opened is closed when its update is done. One result per target, in the
 * order given; it never throws for a target's failure.
 *
 * @example
 * ```ts
 * const key = process.env.AGENT_KEY!, host = process.env.AGENT_HOST!, port = Number(process.env.AGENT_PORT);
 * const binary = new Uint8Array(1024); // in real use: await fs.promises.readFile("dist/agent")
 * const results = await rollOutUpdate([{ name: "web1", host, port, key }, { name: "web2", host, port, key }], binary);
 * for (const r of results) console.log(r.name, r.status, r.status === "failed" ? (r.error as AgentError).code : ""); // web1 failed update-not-allowed, web2 not-attempted
 * ```
 */
export async function rollOutUpdate(
  targets: readonly FleetTarget[],
  binary: Uint8Array,
  options: RolloutOptions = {},
): Promise<RolloutResult[]> {
  const sha256 = await sha256Hex(binary);
  const { signature, timeoutMs } = options;
  return await rollOut(
    targets.map(nameOf),
    async (index, signal) => {
      const stop = new AbortController();
      const onAbort = () => stop.abort(signal.reason);
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        const result = await runOne(
          targets[index],
          (agent, _name, signal) => agent.update(binary, { sha256, signature, signal }),
          stop,
          timeoutMs,
        );
        if (!result.ok) throw result.error;
        return result.value;
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    },
    options,
    options.onOutcome,
  );
}

function nameOf(target: FleetTarget): string {
  if (target.name) return target.name;
  const t = target as ConnectOptions;
  return `${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port ?? 46336}`;
}

/** One target's result; `stop` aborts it (the caller's abort), as the deadline does with a {@link TimeoutError}. */
async function runOne<T>(
  target: FleetTarget,
  operation: (agent: Agent, name: string, signal: AbortSignal) => Promise<T>,
  stop: AbortController,
  timeoutMs?: number,
): Promise<FleetResult<T>> {
  const name = nameOf(target);
  const started = performance.now();
  const result = (r: { ok: true; value: T } | { ok: false; error: Error }) =>
    ({ name, ...r, ms: performance.now() - started }) as FleetResult<T>;
  if (stop.signal.aborted) return result({ ok: false, error: stop.signal.reason });
  let opened: Agent | null = null;
  let finished = false;
  const timer = timeoutMs === undefined ? undefined : setTimeout(
    () => stop.abort(new TimeoutError(`${name}: not done within ${timeoutMs / 1000} s`)),
    timeoutMs,
  );
  const work = (async () => {
    if ("agent" in target) return await operation(target.agent, name, stop.signal);
    const agent = await connect(target);
    opened = agent;
    if (finished) throw new TimeoutError(`${name}: connected after the deadline`); // closed below, never used
    return await operation(agent, name, stop.signal);
  })();
  const stopped = new Promise<never>((_, reject) => {
    stop.signal.addEventListener("abort", () => reject(stop.signal.reason), { once: true });
  });
  try {
    return result({ ok: true, value: await Promise.race([work, stopped]) });
  } catch (e) {
    return result({ ok: false, error: e instanceof Error ? e : new Error(String(e)) });
  } finally {
    finished = true;
    clearTimeout(timer);
    // The connection this call opened ends with it, even one that completes after a timeout.
    const close = () => (opened as Agent | null)?.close();
    close();
    work.then(close, close);
  }
}
