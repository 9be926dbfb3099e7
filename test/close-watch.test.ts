// A request waiting on a full ring watches for its client leaving (agent/connection.ts). Raced against the
// connection's long-lived `closed` promise, every request left a reaction on it until the connection closed:
// about 465 bytes each, so one connection with a million requests held some 460 MB (found by the fuzzer).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import v8 from "node:v8";
import vm from "node:vm";
import { CloseWatch } from "../core/concurrency.ts";

const watch = suite("close watch");
const RACES = 100_000;

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** Heap bytes still held, after a full collection, once `run` has finished. */
async function heldBy(run: () => Promise<void>): Promise<number> {
  gc();
  const before = process.memoryUsage().heapUsed;
  await run();
  gc();
  return process.memoryUsage().heapUsed - before;
}

watch("100,000 requests that finish first leave nothing behind on a connection that stays open", async () => {
  let close!: () => void;
  const closed = new Promise<void>((r) => (close = r));
  const closes = new CloseWatch(closed);
  const held = await heldBy(async () => {
    for (let i = 0; i < RACES; i++) assert.is(await closes.race(Promise.resolve(true), false), true);
  });
  close();
  assert.ok(held < 4 * 1024 * 1024, `${(held / 1048576).toFixed(1)} MiB held`);
});

watch(
  "a request still waiting when the connection closes settles with the closed value; later ones at once",
  async () => {
    let close!: () => void;
    const closes = new CloseWatch(new Promise<void>((r) => (close = r)));
    const waiting = closes.race(new Promise<boolean>(() => {}), false);
    close();
    assert.is(await waiting, false);
    assert.is(await closes.race(new Promise<boolean>(() => {}), "closed"), "closed");
  },
);

watch("a request that fails first rejects with its own error", async () => {
  const closes = new CloseWatch(new Promise<void>(() => {}));
  const failure = new Error("host gone");
  try {
    await closes.race(Promise.reject(failure), false);
    assert.unreachable();
  } catch (e) {
    assert.is(e, failure);
  }
});

watch.run();
