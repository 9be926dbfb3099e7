/**
 * The fuzz runner: shares a case count among targets, makes each case's input from its own seeded
 * random source (so one case replays alone), and counts findings: a throw the parser does not
 * promise, a case past its time bound, or memory growing past a bound.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { toHex } from "../../core/bytes.ts";
import { caseRandom } from "./random.ts";
import { type FuzzTarget, wireTargets } from "./wire-targets.ts";
import { metaTarget, servicesTarget } from "./service-targets.ts";

/** Longest one case may take, however it runs, before it counts as a hang. */
export const CASE_BOUND_MS = 15_000;
/** Growth of the resident set over the run's start that counts as unbounded allocation. */
export const RSS_BOUND_BYTES = 768 * 1024 * 1024;

/** Every target, each new. */
export function allTargets(): FuzzTarget[] {
  return [...wireTargets(), metaTarget(), servicesTarget()];
}

export interface FuzzOptions {
  /** Cases in all, shared evenly among the targets. */
  cases: number;
  seed: number;
  /** Target names; all by default. */
  targets?: string[];
  /** Replays only this case index of each target. */
  only?: number;
  /** Replays this input on each target instead of generating any. */
  input?: Uint8Array;
  log?: (line: string) => void;
}

export interface Crash {
  target: string;
  index: number;
  seed: number;
  message: string;
  input: Uint8Array;
}

export interface FuzzReport {
  cases: number;
  ms: number;
  crashes: Crash[];
  targets: Array<{ name: string; cases: number; ms: number; crashes: number }>;
  /** Resident set sizes in bytes: at the start, at the end, and the highest seen. */
  rss: { start: number; end: number; peak: number };
}

const rss = () => process.memoryUsage.rss();

/** Runs the cases; resolves with what was found. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const log = options.log ?? (() => {});
  const targets = allTargets().filter((t) => !options.targets || options.targets.includes(t.name));
  if (targets.length === 0) throw new Error(`no such target: ${options.targets?.join(", ")}`);
  const memory = { start: rss(), end: 0, peak: 0 };
  memory.peak = memory.start;
  const report: FuzzReport = { cases: 0, ms: 0, crashes: [], targets: [], rss: memory };
  const started = performance.now();
  for (const [n, target] of targets.entries()) {
    const share = Math.floor(options.cases / targets.length) + (n < options.cases % targets.length ? 1 : 0);
    await target.setUp();
    const t0 = performance.now();
    const crashes = report.crashes.length;
    const indexes = options.only !== undefined || options.input ? [options.only ?? 0] : range(share);
    for (const index of indexes) {
      const input = options.input ?? target.input(caseRandom(options.seed, target.name, index));
      const message = await runCase(target, input);
      if (message !== null) {
        const crash = { target: target.name, index, seed: options.seed, message, input };
        report.crashes.push(crash);
        log(describeCrash(crash));
      }
      // After every case, so a case that allocates without bound is the one named.
      memory.peak = Math.max(memory.peak, rss());
      if (memory.peak - memory.start > RSS_BOUND_BYTES) {
        const crash = { target: target.name, index, seed: options.seed, message: "memory grew past the bound", input };
        report.crashes.push(crash);
        log(describeCrash(crash));
        break;
      }
    }
    await target.tearDown();
    const ms = performance.now() - t0;
    const entry = { name: target.name, cases: indexes.length, ms, crashes: report.crashes.length - crashes };
    report.targets.push(entry);
    report.cases += indexes.length;
    log(
      `${target.name.padEnd(9)} ${String(entry.cases).padStart(8)} cases ${(ms / 1000).toFixed(1).padStart(6)} s ` +
        `${Math.round(entry.cases / (ms / 1000 || 1e-3)).toString().padStart(8)}/s  ${entry.crashes} crashes  ` +
        `rss ${mib(rss())}`,
    );
  }
  report.ms = performance.now() - started;
  memory.end = rss();
  memory.peak = Math.max(memory.peak, memory.end);
  return report;
}

/** Runs one case; null when the target kept its promises, else what went wrong. */
async function runCase(target: FuzzTarget, input: Uint8Array): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = performance.now();
  try {
    await Promise.race([
      target.run(input),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hang: no outcome within ${CASE_BOUND_MS} ms`)), CASE_BOUND_MS);
      }),
    ]);
    const ms = performance.now() - started;
    return ms > CASE_BOUND_MS ? `hang: the case took ${ms.toFixed(0)} ms` : null;
  } catch (e) {
    const err = e as Error;
    return `${err?.name ?? "throw"}: ${err?.message ?? String(e)}\n${
      err?.stack?.split("\n").slice(1, 4).join("\n") ?? ""
    }`;
  } finally {
    clearTimeout(timer);
  }
}

/** Inputs up to this size print in hex; a larger one goes to a file in the temp directory. */
const PRINTED_INPUT_BYTES = 4096;

/** What a crash prints: the target, the case, the seed and the input, enough to replay it. */
export function describeCrash(crash: Crash): string {
  const hex = toHex(crash.input);
  let where = hex;
  if (crash.input.length > PRINTED_INPUT_BYTES) {
    where = path.join(os.tmpdir(), `agent-fuzz-${crash.target}-${crash.seed}-${crash.index}.hex`);
    fs.writeFileSync(where, hex);
    where = `in ${where}`;
  }
  return [
    `CRASH ${crash.target} case ${crash.index} (seed ${crash.seed}): ${crash.message}`,
    `  replay: npm run fuzz -- --seed ${crash.seed} --target ${crash.target} --case ${crash.index}`,
    `  input (${crash.input.length} bytes, replay with --target ${crash.target} --hex): ${where}`,
  ].join("\n");
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
