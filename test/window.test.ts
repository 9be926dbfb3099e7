// The transfer window against a simulated link: a fixed round trip and one bottleneck that serves
// requests in order at a fixed rate (as the relay and the agent's pipeline do), on a simulated
// clock. It fills the link, keeps the queue short, learns from an earlier transfer and keeps its cap.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type LinkMemory, MIN_WINDOW_REQUESTS, queueBudgetMs, TransferWindow } from "../core/client/window.ts";

const win = suite("transfer window (simulated link)");
const CHUNK = 512 * 1024;
const MIB = 1024 * 1024;

interface Link {
  rttMs: number;
  /** Bytes per ms the bottleneck serves; `slowAfter` bytes on, `slowRate`. */
  rate: number;
  slowAfter?: number;
  slowRate?: number;
  /** Up to this much more on each reply's way back (scheduling on a busy machine); order is kept. */
  jitterMs?: number;
}

/** A fixed pseudo-random sequence in [0, 1), so a run is the same every time. */
function sequence(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
}

interface Run {
  ms: number;
  /** Each request's wait at the bottleneck (ms), in order. */
  queueMs: number[];
  windows: number[];
  /** When each reply came back (ms), as `windows`. */
  times: number[];
}

/** Moves `bytes` through `link` keeping `window.requests` requests out; every step is bounded. */
function transfer(link: Link, bytes: number, cap = 12 * MIB, memory?: LinkMemory): Run {
  let clock = 0;
  const window = new TransferWindow(CHUNK, cap, { memory, now: () => clock });
  const out: Array<{ sent: ReturnType<TransferWindow["sent"]>; replyAt: number }> = [];
  const queueMs: number[] = [], windows: number[] = [], times: number[] = [];
  let busyUntil = 0, sentBytes = 0, lastReply = 0;
  const random = sequence(7);
  for (let steps = 0; steps < 100_000; steps++) {
    while (out.length < window.requests && sentBytes < bytes) {
      const arrive = clock + link.rttMs / 2;
      const start = Math.max(arrive, busyUntil);
      const slow = link.slowAfter !== undefined && sentBytes >= link.slowAfter;
      busyUntil = start + CHUNK / (slow ? link.slowRate! : link.rate);
      queueMs.push(start - arrive);
      lastReply = Math.max(lastReply, busyUntil + link.rttMs / 2 + random() * (link.jitterMs ?? 0));
      out.push({ sent: window.sent(), replyAt: lastReply });
      sentBytes += CHUNK;
    }
    const next = out.shift();
    if (!next) return { ms: clock, queueMs, windows, times };
    clock = next.replyAt;
    window.done(next.sent, CHUNK);
    windows.push(window.requests);
    times.push(clock);
  }
  throw new Error("the simulated transfer did not end");
}

const MBPS_150 = 150_000; // bytes per ms
const serviceMs = (rate: number) => CHUNK / rate;

win("a 50 ms link at 150 MB/s: the window fills it and then queues at most the budget", () => {
  const link = { rttMs: 50, rate: MBPS_150 };
  const run = transfer(link, 128 * MIB);
  const ideal = (128 * MIB) / link.rate + link.rttMs;
  assert.ok(run.ms <= ideal + 4 * link.rttMs, `${run.ms.toFixed(0)} ms, ideal ${ideal.toFixed(0)} ms`);
  const steady = run.queueMs.slice(128); // past the first 64 MiB: startup's overshoot drained
  const most = Math.max(...steady);
  assert.ok(
    most <= queueBudgetMs(link.rttMs) + serviceMs(link.rate),
    `a request waited ${most.toFixed(1)} ms at the bottleneck (${serviceMs(link.rate).toFixed(1)} ms each)`,
  );
});

win("a 50 ms link at 300 MB/s with up to 8 ms of jitter: the window still fills it", () => {
  const link = { rttMs: 50, rate: 2 * MBPS_150, jitterMs: 8 };
  const run = transfer(link, 256 * MIB, 16 * MIB);
  const ideal = (256 * MIB) / link.rate + link.rttMs;
  // 16 MiB per 50 ms is 335 MB/s: the cap allows the whole rate.
  assert.ok(run.ms <= ideal * 1.25, `${run.ms.toFixed(0)} ms, ideal ${ideal.toFixed(0)} ms`);
});

win("a 50 ms link at 300 MB/s with up to 8 ms of jitter: startup doubles the window each round trip", () => {
  const link = { rttMs: 50, rate: 2 * MBPS_150, jitterMs: 8 };
  const run = transfer(link, 128 * MIB, 15 * MIB);
  const bdp = Math.ceil((link.rate * link.rttMs) / CHUNK); // 29 requests
  const full = run.times[run.windows.findIndex((w) => w >= bdp)] ?? Infinity;
  // Slow start's pace: 4, 8, 16, 32 over the three round trips after the first replies (3.4 here).
  const rounds = (full - run.times[0]) / link.rttMs;
  assert.ok(rounds <= 3.5, `the window reached ${bdp} requests ${rounds.toFixed(1)} round trips after the first reply`);
});

win("a second transfer on the same link starts from the window the first ended with", () => {
  const link = { rttMs: 50, rate: MBPS_150 };
  const memory: LinkMemory = {};
  const first = transfer(link, 128 * MIB, 12 * MIB, memory);
  assert.ok((memory.requests ?? 0) > MIN_WINDOW_REQUESTS, `learned ${memory.requests}`);
  const second = transfer(link, 128 * MIB, 12 * MIB, memory);
  const ideal = (128 * MIB) / link.rate + link.rttMs;
  assert.ok(second.ms < first.ms, `second ${second.ms.toFixed(0)} ms, first ${first.ms.toFixed(0)} ms`);
  assert.ok(second.ms <= ideal + link.rttMs, `second ${second.ms.toFixed(0)} ms, ideal ${ideal.toFixed(0)} ms`);
});

win("a small transfer that ends in startup does not leave a later large one ramping slowly", () => {
  const link = { rttMs: 50, rate: 2 * MBPS_150 };
  const fresh = transfer(link, 128 * MIB, 15 * MIB);
  for (const small of [2, 4, 8]) {
    const memory: LinkMemory = {};
    transfer(link, small * MIB, 15 * MIB, memory);
    const after = transfer(link, 128 * MIB, 15 * MIB, memory);
    assert.ok(
      after.ms <= fresh.ms * 1.05,
      `after ${small} MiB: ${after.ms.toFixed(0)} ms, fresh ${fresh.ms.toFixed(0)} ms`,
    );
  }
});

win("a short link keeps the fewest requests; a cap holds on a long one", () => {
  const short = transfer({ rttMs: 1, rate: MBPS_150 }, 64 * MIB);
  assert.is(Math.max(...short.windows), MIN_WINDOW_REQUESTS);
  const capped = transfer({ rttMs: 50, rate: MBPS_150 }, 64 * MIB, 3 * MIB);
  assert.is(Math.max(...capped.windows), 6);
  const learnedTooMuch = transfer({ rttMs: 50, rate: MBPS_150 }, 8 * MIB, 3 * MIB, { requests: 24 });
  assert.is(Math.max(...learnedTooMuch.windows), 6);
});

win("a link that slows to a third mid-transfer: the queue drains to a few requests again", () => {
  const link = { rttMs: 50, rate: MBPS_150, slowAfter: 64 * MIB, slowRate: MBPS_150 / 3 };
  const run = transfer(link, 160 * MIB);
  const late = run.queueMs.slice(-64); // the last 32 MiB, well after the change
  const most = Math.max(...late);
  assert.ok(
    most <= queueBudgetMs(link.rttMs) + serviceMs(link.slowRate),
    `a request waited ${most.toFixed(1)} ms (${serviceMs(link.slowRate).toFixed(1)} ms each)`,
  );
});

win.run();
