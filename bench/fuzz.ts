/**
 * `npm run fuzz -- [cases] [--seed N] [--target a,b] [--case I] [--hex H]`: drives the real parsers
 * with mutated and random inputs (test/fuzz/). Cases come from the first argument or FUZZ_CASES
 * (default 100,000), shared among the targets. Prints cases/s, crashes (each with its seed and
 * input, to replay) and the resident set at the start, the end and its peak. Exits 1 on a crash.
 * On Deno: `deno run -A bench/fuzz.ts 100000`.
 * @module
 */
import { fromHex } from "../core/bytes.ts";
import { mib, runFuzz } from "../test/fuzz/fuzzer.ts";

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const positional = process.argv.slice(2).find((a, i, all) => /^\d+$/.test(a) && !all[i - 1]?.startsWith("--"));
const cases = Number(positional ?? process.env.FUZZ_CASES ?? 100_000);
const seed = Number(option("seed") ?? (Date.now() % 0x1_0000_0000));
const hex = option("hex");
const input = hex === undefined ? undefined : fromHex(hex) ?? undefined;
if (hex !== undefined && !input) throw new Error("--hex takes the input's hex digits");
const only = option("case");
console.log(`fuzz: ${cases} cases, seed ${seed}`);
const report = await runFuzz({
  cases,
  seed,
  targets: option("target")?.split(","),
  only: only === undefined ? undefined : Number(only),
  input,
  log: (line) => console.log(line),
});
const { start, end, peak } = report.rss;
console.log(
  `total     ${report.cases} cases in ${(report.ms / 1000).toFixed(1)} s (${
    Math.round(report.cases / (report.ms / 1000))
  }/s), ${report.crashes.length} crashes; rss start ${mib(start)}, end ${mib(end)}, peak ${mib(peak)}`,
);
process.exit(report.crashes.length > 0 ? 1 : 0);
