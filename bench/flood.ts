/**
 * Handshake flood: legitimate clients connecting while hostile peers hold
 * connections open without a hello (stalling), send it one byte a second
 * (dripping) or send garbage. The peer is the same legitimate clients with no
 * hostile traffic, in the same run; the ratio says what the flood costs them.
 *
 *   BENCH_FLOOD_CONNECTIONS  total connections (default 1000), BENCH_FLOOD_HOSTILE share (default 0.7)
 * @module
 */
import crypto from "node:crypto";
import net from "node:net";
import { AgentClient } from "../core/client/agent-client.ts";
import { generateKey } from "../core/secure/keys.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { dialTcp } from "../runtime/tcp.ts";
import { startBenchAgent } from "./agent.ts";
import { quantile, ratio, table } from "./stats.ts";

const TOTAL = Number(process.env.BENCH_FLOOD_CONNECTIONS ?? 1000);
const HOSTILE = Number(process.env.BENCH_FLOOD_HOSTILE ?? 0.7);

/** Seconds from connect to the first ping answered, for each legitimate client; and the failures. */
async function legitimate(port: number, key: Uint8Array, count: number, hostile: number) {
  const sockets: net.Socket[] = [];
  const timers: Array<ReturnType<typeof setInterval>> = [];
  const times: number[] = [];
  let failed = 0;
  const errors = new Set<string>();
  const opens: Promise<void>[] = [];
  const every = hostile > 0 ? Math.round((count + hostile) / count) : 1;
  let made = 0;
  for (let i = 0; made < count; i++) {
    if (hostile > 0 && i % every !== 0 && sockets.length < hostile) {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => {});
      sockets.push(s);
      const kind = sockets.length % 3;
      if (kind === 1) timers.push(setInterval(() => s.writable && s.write(new Uint8Array([0x5f])), 1000)); // drip
      else if (kind === 2) s.on("connect", () => s.write(crypto.randomBytes(24))); // garbage
      continue; // kind 0: stall
    }
    made++;
    const t0 = performance.now();
    opens.push((async () => {
      try {
        const c = await AgentClient.open(await dialTcp("127.0.0.1", port, { timeoutMs: 60_000 }), {
          key,
          provider: runtimeCryptoProvider(),
        });
        await c.ping();
        times.push((performance.now() - t0) / 1000);
        c.close();
      } catch (e) {
        failed++;
        errors.add((e as Error).message);
      }
    })());
  }
  while (sockets.length < hostile) sockets.push(net.connect(port, "127.0.0.1").on("error", () => {}));
  await Promise.all(opens);
  timers.forEach(clearInterval);
  sockets.forEach((s) => s.destroy());
  return { times, failed, errors: [...errors], hostile: sockets.length };
}

/** Runs the flood next to its peer (no hostile traffic) against a fresh agent with default limits. */
export async function benchFlood(agentPath: string): Promise<void> {
  const hostile = Math.round(TOTAL * HOSTILE), good = TOTAL - hostile;
  console.log(
    `\nhandshake flood: ${TOTAL} connections at once, ${hostile} hostile (stalling, dripping 1 byte/s, garbage), default limits`,
  );
  const key = generateKey();
  const agent = await startBenchAgent(agentPath, key.hex);
  try {
    const port = agent.port;
    const alone = await legitimate(port, key.bytes, good, 0);
    const flooded = await legitimate(port, key.bytes, good, hostile);
    const row = (
      name: string,
      r: typeof alone,
    ) => [
      name,
      String(r.times.length),
      String(r.failed),
      `${quantile(r.times, 0.5).toFixed(3)} s`,
      `${quantile(r.times, 0.99).toFixed(3)} s`,
      `${Math.max(...r.times).toFixed(3)} s`,
    ];
    table([
      ["legitimate clients", "through", "failed", "p50", "p99", "max"],
      row(`alone (${good})`, alone),
      row(`among ${flooded.hostile} hostile`, flooded),
    ]);
    for (const e of new Set([...alone.errors, ...flooded.errors])) console.log(`  failure: ${e}`);
    console.log(
      `  ratio flooded/alone: p50 ${ratio(quantile(flooded.times, 0.5), quantile(alone.times, 0.5))}, p99 ${
        ratio(quantile(flooded.times, 0.99), quantile(alone.times, 0.99))
      }  (target: p99 under 5 s, none failed)`,
    );
  } finally {
    await agent.stop();
  }
}
