// A short fuzz run as part of the suite, so the fuzzer cannot rot: every target (test/fuzz/), a few
// thousand cases each from a fixed seed (FUZZ_SEED picks another), and no crash allowed.
// `npm run fuzz -- 1000000` is the long run (docs/security.md "Fuzzing").
import { test } from "uvu";
import * as assert from "uvu/assert";
import { allTargets, describeCrash, runFuzz } from "./fuzz/fuzzer.ts";
import { stopAll } from "./helpers/agent-process.ts";

test.after(stopAll);

const PER_TARGET = 2000;

test("fuzz: every parser, meta message and service code survives a short run without a crash", async () => {
  const targets = allTargets().length;
  const report = await runFuzz({ cases: PER_TARGET * targets, seed: Number(process.env.FUZZ_SEED ?? 20261207) });
  assert.is(report.targets.length, targets);
  assert.is(report.cases, PER_TARGET * targets);
  assert.equal(report.crashes.map(describeCrash), []);
});

test.run();
