// Handshake admission (core/admission.ts): the failed-authentication state a peer without a key can grow.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Admission, failureKey, MAX_TRACKED_ADDRESSES } from "../core/admission.ts";

const test = suite("admission");

const limits = { maxConcurrent: 4, queueLimit: 4, evictAfterMs: 1000, failuresPerMinute: 3 };

test("an address is turned away once it reaches the failure limit, and others are not", () => {
  const admission = new Admission(limits);
  for (let i = 0; i < 3; i++) admission.recordFailure("192.0.2.7");
  assert.ok(admission.isRateLimited("192.0.2.7"));
  assert.not.ok(admission.isRateLimited("192.0.2.8"));
});

test("200,000 one-off addresses leave a bounded map, and a persistent offender is still remembered", () => {
  const admission = new Admission(limits);
  for (let i = 0; i < 3; i++) admission.recordFailure("198.51.100.1");
  for (let i = 0; i < 200_000; i++) {
    admission.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    if (i % 1000 === 0) admission.recordFailure("198.51.100.1"); // keeps failing, so it stays recent
  }
  assert.ok(admission.trackedAddresses <= MAX_TRACKED_ADDRESSES, `${admission.trackedAddresses} tracked`);
  assert.ok(admission.isRateLimited("198.51.100.1"));
});

test("IPv6 is counted per /64: a peer cannot reset its limit by changing the low 64 bits", () => {
  const admission = new Admission(limits);
  admission.recordFailure("2001:db8:1:2::1");
  admission.recordFailure("2001:db8:1:2:ffff::9");
  admission.recordFailure("2001:0db8:0001:0002:abcd:0:0:1");
  assert.ok(admission.isRateLimited("2001:db8:1:2:dead:beef::"));
  assert.not.ok(admission.isRateLimited("2001:db8:1:3::1"));
});

test("failureKey: IPv4 and IPv4-mapped alike, IPv6 cut to its /64 in full form", () => {
  assert.is(failureKey("203.0.113.5"), "203.0.113.5");
  assert.is(failureKey("::ffff:203.0.113.5"), "203.0.113.5");
  assert.is(failureKey("::1"), "0:0:0:0::/64");
  assert.is(failureKey("2001:db8::7"), "2001:db8:0:0::/64");
  assert.is(failureKey("fe80::1%eth0"), "fe80:0:0:0::/64");
});

/** Holds this event loop up for `ms`, as a burst of work or a long collection would. */
function holdUp(ms: number) {
  const until = Date.now() + ms;
  while (Date.now() < until) { /* busy */ }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One slot (grace 200 ms), held by a handshake waiting for its peer, and one connection in line. */
async function slotWaitingForPeer() {
  const admission = new Admission({ ...limits, maxConcurrent: 1, evictAfterMs: 200 });
  const state = { dropped: false };
  const first = (await admission.acquire(() => (state.dropped = true)).slot)!;
  first.waitingForPeer(true);
  return { admission, state, first, second: admission.acquire(() => {}) };
}

test("a handshake whose peer stalls past the grace is dropped for one in line", async () => {
  const { admission, state, second } = await slotWaitingForPeer();
  await sleep(600);
  assert.ok(state.dropped, "the stalled handshake was dropped");
  assert.ok(await second.slot, "the one in line got its slot");
  admission.close();
});

test("time this side's event loop was held up is not held against a peer", async () => {
  const { admission, state, first, second } = await slotWaitingForPeer();
  // Held up for three graces; the peer's answer is read right after (timers run first, then reads).
  await new Promise<void>((resolve) =>
    setImmediate(() => {
      holdUp(600);
      setImmediate(() => {
        first.waitingForPeer(false);
        resolve();
      });
    })
  );
  await sleep(300);
  assert.not.ok(state.dropped, "dropped for this side's own delay");
  first.release();
  assert.ok(await second.slot);
  admission.close();
});

test.run();
