// The order of a rollout (core/client/rollout.ts), apart from any agent: canaries first and alone, a failed
// canary stops everything, at most maxInFlight at once after them, jitter before each start, stop at the first
// failure unless told not to, abort; every target gets an outcome. And release signatures (core/secure/release.ts).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { rollOut } from "../core/client/rollout.ts";
import {
  generateReleaseKey,
  releaseKeyId,
  releasePublicKey,
  releaseStatement,
  signRelease,
  verifyRelease,
} from "../core/secure/release.ts";
import { toHex } from "../core/bytes.ts";

const test = suite("rollout");

const names = (n: number) => Array.from({ length: n }, (_, i) => `agent${i}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An attempt that takes `ms`, fails for the indexes in `broken`, and records what ran and how many at once. */
function recorder(broken: number[] = [], ms = 5) {
  const started: number[] = [];
  let inFlight = 0, most = 0;
  const attempt = async (index: number) => {
    started.push(index);
    most = Math.max(most, ++inFlight);
    await sleep(ms);
    inFlight--;
    if (broken.includes(index)) throw new Error(`agent${index} is broken`);
    return `v${index}`;
  };
  return { attempt, started, most: () => most };
}

test("the canary runs alone and first; then at most maxInFlight at once; every target updated", async () => {
  const r = recorder();
  let canaryAlone = true;
  const outcomes = await rollOut(names(20), async (i) => {
    if (i === 0) canaryAlone = r.started.length === 0;
    return await r.attempt(i);
  }, { canary: 1, maxInFlight: 4 });
  assert.ok(canaryAlone);
  assert.is(r.started[0], 0);
  assert.is(r.most(), 4);
  assert.equal(outcomes.map((o) => o.status === "updated" && o.value), names(20).map((_, i) => `v${i}`));
});

test("a failed canary stops the rollout, even with stopOnFailure off; the rest are not attempted, with why", async () => {
  const r = recorder([0]);
  const outcomes = await rollOut(names(5), r.attempt, { canary: 2, stopOnFailure: false });
  assert.equal(r.started, [0]);
  assert.equal(outcomes.map((o) => o.status), ["failed", ...Array(4).fill("not-attempted")]);
  assert.match(outcomes[0].status === "failed" ? outcomes[0].error.message : "", /agent0 is broken/);
  for (const o of outcomes.slice(1)) {
    assert.is(
      o.status === "not-attempted" && o.reason,
      "not attempted: the rollout stopped because the canary agent0 failed",
    );
  }
});

test("after the canaries, the first failure stops new starts; those in flight finish", async () => {
  const r = recorder([6]);
  const outcomes = await rollOut(names(20), r.attempt, { canary: 1, maxInFlight: 3 });
  const status = outcomes.map((o) => o.status);
  assert.is(status[6], "failed");
  assert.ok(status.slice(0, 6).every((s) => s === "updated"), status.join(" "));
  // At most the two started beside it, and none after they finish.
  assert.ok(r.started.length <= 9, `${r.started.length} started`);
  assert.is(status.filter((s) => s === "not-attempted").length, 20 - r.started.length);
  assert.match(outcomes[19].status === "not-attempted" ? outcomes[19].reason : "", /because agent6 failed/);
});

test("stopOnFailure off: every target is tried, and each failure is reported as its own", async () => {
  const r = recorder([3, 7]);
  const outcomes = await rollOut(names(10), r.attempt, { canary: 1, stopOnFailure: false });
  assert.is(r.started.length, 10);
  assert.equal(outcomes.flatMap((o, i) => (o.status === "failed" ? [i] : [])), [3, 7]);
});

test("jitter delays each start after the canary, within its bound; canary 0 starts at once", async () => {
  const t0 = performance.now();
  const starts: number[] = [];
  await rollOut(names(6), (i) => {
    starts.push(performance.now() - t0);
    return Promise.resolve(i);
  }, {
    canary: 0,
    maxInFlight: 6,
    jitterMs: 150,
  });
  assert.ok(Math.max(...starts) < 400, starts.join(" "));
  assert.ok(starts.some((ms) => ms > 5), `some start waited: ${starts.join(" ")}`);
});

test("aborting starts nothing more and gives the ones in flight the signal", async () => {
  const controller = new AbortController();
  let sawAbort = 0;
  const outcomes = await rollOut(names(8), async (i, signal) => {
    if (i === 2) controller.abort(new Error("operator stopped it"));
    await sleep(5);
    if (signal.aborted) sawAbort++;
    return i;
  }, { canary: 1, maxInFlight: 2, signal: controller.signal });
  assert.ok(sawAbort >= 1);
  assert.ok(outcomes.slice(4).every((o) => o.status === "not-attempted"));
  assert.is(outcomes[7].status === "not-attempted" && outcomes[7].reason, "not attempted: aborted");
});

test("release signatures: made by the key, over the digest, and nothing else passes", async () => {
  const key = await generateReleaseKey(), other = await generateReleaseKey();
  assert.is(await releasePublicKey(key.privateKey), key.publicKey);
  const digest = "ab".repeat(32);
  const signature = await signRelease(key.privateKey, digest);
  assert.match(signature, /^[0-9a-f]{128}$/);
  const id = await releaseKeyId(key.publicKey);
  assert.is(await verifyRelease([other.publicKey, key.publicKey], digest, signature), id);
  assert.is(await verifyRelease([other.publicKey], digest, signature), null);
  assert.is(await verifyRelease([key.publicKey], "ac".repeat(32), signature), null);
  assert.is(await verifyRelease([key.publicKey], digest, signature.slice(0, 126)), null);
  assert.is(await verifyRelease([key.publicKey], digest, "zz" + signature.slice(2)), null);
  assert.is(toHex(releaseStatement(digest).subarray(0, 17)), toHex(new TextEncoder().encode("agent release v1\0")));
});

test.run();
