// A long-lived process (the agent, each session's host) keeps V8's young generation at its
// initial size however much it allocates (runtime/heap.ts): run the way the agent runs itself.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { DENO_HEAP_FLAGS } from "../runtime/heap.ts";
import { IS_DENO, ROOT, scriptCommand } from "./helpers/agent-process.ts";

const test = suite("heap");

const MIB = 1024 * 1024;
const SCRIPT = path.join(ROOT, "test/helpers/young-generation.ts");

/** The young generation's size before and after the burst, in bytes. */
function youngGeneration(kept: boolean): { before: number; after: number } {
  const [cmd, ...prefix] = scriptCommand();
  const args = IS_DENO
    ? [...prefix, ...(kept ? DENO_HEAP_FLAGS : []), SCRIPT]
    : [...prefix, SCRIPT, ...(kept ? ["keep"] : [])];
  const run = spawnSync(cmd, args, { encoding: "utf8", timeout: 60_000 });
  assert.is(run.status, 0, run.stderr);
  return JSON.parse(run.stdout);
}

test("by default an allocation burst grows the young generation to many MiB", () => {
  const { before, after } = youngGeneration(false);
  assert.ok(after >= before + 8 * MIB, `${before} -> ${after}`);
});

// Two 1 MiB semi-spaces, plus a few 256 KiB pages V8 15 (Deno) commits for a moment during a
// scavenge: 2-2.75 MiB on Deno over 80 runs (under load too), 4 MiB flat on Node; 32 MiB by default.
test("with the agent's limit the same burst leaves it at 4 MiB or less", () => {
  const { before, after } = youngGeneration(true);
  assert.ok(after <= 4 * MIB, `${before} -> ${after}`);
});

test.run();
