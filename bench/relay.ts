/**
 * A long link on loopback: a TCP relay that holds every chunk it reads for the same time in each
 * direction before passing it on, so a round trip through it takes `rttMs` more. No loss, no
 * bandwidth cap; order is kept. Run as its own process (`tsx bench/relay.ts LISTEN_PORT TARGET_PORT
 * RTT_MS`, it prints `relay listening on PORT`) so the bench's own work does not delay its timers.
 * A real link adds no jitter; this one passes a chunk on late when its timer fires late (a busy
 * machine), so it keeps each chunk's lateness: `SIGUSR2` prints `relay lateness {"n",…}` (ms,
 * since the last such line) for the bench to set beside a small request's delay.
 * @module
 */
import net from "node:net";
import { quantile } from "./stats.ts";

/** Bytes a direction may hold before it stops reading its source: far above any window measured. */
const HOLD_LIMIT = 256 * 1024 * 1024;

/** Chunks' lateness samples (ms) a relay keeps between reports: far above a leg's count. */
const LATENESS_SAMPLES = 1_000_000;

/** Passes `from`'s bytes to `to`, each chunk `delayMs` after it arrived, in order; notes how late. */
function delayedPipe(from: net.Socket, to: net.Socket, delayMs: number, noteLate: (ms: number) => void): void {
  const queue: Array<{ due: number; chunk: Buffer }> = [];
  let held = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let ended = false;
  const drain = () => {
    timer = null;
    const now = performance.now();
    while (queue.length > 0 && queue[0].due <= now + 0.5) {
      const { chunk, due } = queue.shift()!;
      noteLate(Math.max(0, now - due));
      held -= chunk.length;
      to.write(chunk);
    }
    if (held < HOLD_LIMIT && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(drain, Math.max(0, queue[0].due - now));
    else if (ended) to.end();
  };
  from.on("data", (chunk) => {
    queue.push({ due: performance.now() + delayMs, chunk });
    held += chunk.length;
    if (held >= HOLD_LIMIT) from.pause();
    timer ??= setTimeout(drain, delayMs);
  });
  from.on("end", () => {
    ended = true;
    if (queue.length === 0) to.end();
  });
}

/** A running relay: its port; `cut` drops every connection through it, as a failing network would. */
export interface Relay {
  port: number;
  cut(): void;
  /** How late (ms) each chunk went on since the last call, both directions of every connection. */
  takeLateness(): number[];
  close(): Promise<void>;
}

/** Listens on `listenPort` (0: any) and relays each connection to `targetPort` with `rttMs` added. */
export async function startRelay(listenPort: number, targetPort: number, rttMs: number): Promise<Relay> {
  const open = new Set<net.Socket>();
  let lateMs: number[] = [];
  const noteLate = (ms: number) => {
    if (lateMs.length < LATENESS_SAMPLES) lateMs.push(ms);
  };
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort, noDelay: true });
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    open.add(client).add(upstream);
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    delayedPipe(client, upstream, rttMs / 2, noteLate);
    delayedPipe(upstream, client, rttMs / 2, noteLate);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, "127.0.0.1", () => resolve()));
  const cut = () => {
    for (const s of open) s.destroy();
    open.clear();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut,
    takeLateness: () => {
      const taken = lateMs;
      lateMs = [];
      return taken;
    },
    close: () => {
      cut();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Chunks passed on, and their lateness (ms) at the median, the 99th percentile and the most. */
export interface Lateness {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** `lateMs` as a {@link Lateness}. */
export function summary(lateMs: number[]): Lateness {
  if (lateMs.length === 0) return { n: 0, p50: 0, p99: 0, max: 0 };
  return {
    n: lateMs.length,
    p50: quantile(lateMs, 0.5),
    p99: quantile(lateMs, 0.99),
    max: lateMs.reduce((a, b) => Math.max(a, b), 0),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [listen, target, rtt] = process.argv.slice(2).map(Number);
  const relay = await startRelay(listen, target, rtt);
  process.on("SIGUSR2", () => console.log(`relay lateness ${JSON.stringify(summary(relay.takeLateness()))}`));
  console.log(`relay listening on ${relay.port}`);
}
