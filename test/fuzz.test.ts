// A short fuzz run as part of the suite, so the fuzzer cannot rot: every target (test/fuzz/), a few
// thousand cases each from a fixed seed (FUZZ_SEED picks another), and no crash allowed.
// `npm run fuzz -- 1000000` is the long run (docs/security.md "Fuzzing").
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtocolError } from "../core/errors.ts";
import { decodeFields } from "../core/wire/messages.ts";
import { allTargets, describeCrash, runFuzz } from "./fuzz/fuzzer.ts";
import { stopAll } from "./helpers/agent-process.ts";

const test = suite("fuzz smoke");

test.after(stopAll);

const PER_TARGET = 2000;

test("fuzz: every parser, meta message and service code survives a short run without a crash", async () => {
  const targets = allTargets().length;
  const report = await runFuzz({ cases: PER_TARGET * targets, seed: Number(process.env.FUZZ_SEED ?? 20261207) });
  assert.is(report.targets.length, targets);
  assert.is(report.cases, PER_TARGET * targets);
  assert.equal(report.crashes.map(describeCrash), []);
});

// Found by the fuzzer (memory past its bound): MessagePack's array header claims a count, and the
// decoder allocated that many slots before reading one. Five bytes claiming 6 million elements cost
// 47 MiB and 30 ms each, in the agent itself for meta fields: a cheap way to burn its CPU.
test("fuzz: fields claiming more elements than they have bytes are refused before any allocation", () => {
  const claims = [
    Uint8Array.of(0xdd, 0x00, 0x5e, 0x63, 0xdf), // array32 of 6,186,975
    Uint8Array.of(0xdf, 0x00, 0x5e, 0x63, 0xdf), // map32 of 6,186,975
    Uint8Array.of(0x81, 0xa1, 0x61, 0xdd, 0x01, 0xff, 0xff, 0xff), // { a: array32 of 33 million }
  ];
  const started = performance.now();
  for (let i = 0; i < 20; i++) {
    for (const claim of claims) assert.throws(() => decodeFields(claim), (e: unknown) => e instanceof ProtocolError);
  }
  const ms = performance.now() - started;
  assert.ok(ms < 150, `60 decodes took ${ms.toFixed(0)} ms`);
});

test.run();
