/**
 * `npm run soak`: keeps an agent busy for a while and shows whether it
 * leaks: resident memory and open file descriptors before and after many
 * sessions opened and closed, many pings, and output floods.
 *
 *   SOAK_ROUNDS (default 5); each round: SOAK_SESSIONS sessions (default 40) opened, used and closed,
 *   SOAK_PINGS pings (default 10000), and a 64 MiB output flood read to the end.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { startBenchAgent } from "./agent.ts";
import { table } from "./stats.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ROUNDS = Number(process.env.SOAK_ROUNDS ?? 5);
const SESSIONS = Number(process.env.SOAK_SESSIONS ?? 40);
const PINGS = Number(process.env.SOAK_PINGS ?? 10_000);

const rssMiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const fds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

const key = generateKey();
const agent = await startBenchAgent(path.join(ROOT, "dist/agent"), key.hex);
try {
  const { port, stateDir } = agent;
  const pid = agent.child.pid!;
  const client = await connect({ host: "127.0.0.1", port, key: key.hex });
  await (await client.openSession("soak")).close(); // warm: first host start, code loaded
  await new Promise((r) => setTimeout(r, 500));
  const before = { rss: rssMiB(pid), fds: fds(pid) };
  console.log(
    `soak: ${ROUNDS} rounds of ${SESSIONS} sessions, ${PINGS} pings and a 64 MiB output flood (agent pid ${pid})`,
  );
  const t0 = performance.now();
  for (let round = 1; round <= ROUNDS; round++) {
    const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => client.openSession("soak")));
    await Promise.all(sessions.map(async (s) => {
      await s.files.writeFile("f.txt", new TextEncoder().encode("x".repeat(1000)));
      await s.processes.run({ program: "true" });
      await s.close();
    }));
    for (let i = 0; i < PINGS; i++) await client.ping();
    const flood = await client.openSession("soak");
    const p = await flood.processes.start({ program: "head", args: ["-c", String(64 << 20), "/dev/zero"] });
    let bytes = 0;
    for await (const c of p.stdout) bytes += c.length;
    await flood.close();
    console.log(
      `  round ${round}: RSS ${rssMiB(pid).toFixed(1)} MiB, ${fds(pid)} fds, flood ${bytes >> 20} MiB, ${
        ((performance.now() - t0) / 1000).toFixed(0)
      } s`,
    );
  }
  client.close();
  await new Promise((r) => setTimeout(r, 2000));
  const after = { rss: rssMiB(pid), fds: fds(pid) };
  table([
    ["agent", "before", "after", "growth"],
    [
      "resident memory",
      `${before.rss.toFixed(1)} MiB`,
      `${after.rss.toFixed(1)} MiB`,
      `${(after.rss - before.rss).toFixed(1)} MiB`,
    ],
    ["open file descriptors", String(before.fds), String(after.fds), String(after.fds - before.fds)],
  ]);
  // A spare host for the product (agent/warm-hosts.ts) keeps one channel file of its own.
  const leftover = fs.readdirSync(path.join(stateDir, "run")).length;
  console.log(`  channel files left: ${leftover} (a spare host holds 1 while the agent runs)`);
} finally {
  await agent.stop();
}
