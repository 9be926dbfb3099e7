/**
 * `fleet`, cluster part: one nats-server and three listener processes joined
 * to it (bench/fleet-node.ts), CLUSTER_AGENTS simulated agents (default
 * FLEET_AGENTS, else 2000), each given all three nodes. Reports `info()` on
 * random agents through a node that does not hold them against the same call
 * on the node that does (the baseline: direct), then kills one node (SIGKILL)
 * and times until every agent answers `info()` through a surviving node.
 * Runs when nats-server is installed, unless BENCH_CLUSTER=0.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import { NatsServer, natsServerPath } from "../test/helpers/nats.ts";
import { fleetFiles, type ListenerChild, startListener } from "./fleet.ts";
import { table } from "./stats.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchFleetCluster(): Promise<void> {
  if (process.env.BENCH_CLUSTER === "0") return;
  if (!natsServerPath()) {
    console.log("\nfleet cluster: skipped, nats-server not installed (apt-get install nats-server)");
    return;
  }
  const n = Number(process.env.CLUSTER_AGENTS ?? process.env.FLEET_AGENTS ?? 2000);
  const procs = Math.max(1, Math.ceil(n / 5000));
  console.log(`\nfleet cluster: ${n} simulated agents in ${procs} processes, three listener nodes, one nats-server`);
  const files = await fleetFiles(n, procs, 0);
  const nats = await NatsServer.start();
  const env = {
    CERT: path.join(files.dir, "cert.pem"),
    KEY: path.join(files.dir, "key.pem"),
    TABLE: path.join(files.dir, "table.json"),
    NATS: nats.url,
  };
  const nodes: ListenerChild[] = [];
  const children: ChildProcess[] = [];
  try {
    for (const name of ["a", "b", "c"]) nodes.push(await startListener({ ...env, NODE: name }, "fleet-node.ts"));
    for (let p = 0; p < procs; p++) {
      children.push(spawn(process.execPath, ["--import", "tsx", path.join(HERE, "fleet-agents.ts")], {
        stdio: ["ignore", "ignore", "ignore"],
        env: {
          ...process.env,
          PORTS: nodes.map((l) => l.port).join(","),
          FINGERPRINT: files.fingerprint,
          KEYS: path.join(files.dir, `keys${p}.json`),
          RAMP_MS: String(Math.max(2000, n / 2)),
        },
      }));
    }
    const servers = Array.from({ length: n }, (_, i) => `sim${i}`);
    const t0 = performance.now();
    await untilHeld(nodes, n, 60_000 + n * 10);
    const connectMs = performance.now() - t0;
    const sample = Array.from({ length: Math.min(400, n) }, () => servers[Math.floor(Math.random() * n)]);
    const latency = await nodes[0].ask<{ remote: number; remote90: number; n: number; local: number }>("p50", sample);
    const direct = await directP50(nodes, sample);
    const engineRtt = await nodes[0].ask<number>("engine-rtt", ["b", "c"]);
    const held = await Promise.all(nodes.map((l) => l.ask<number>("connected")));
    const victim = held.indexOf(Math.max(...held));
    nodes[victim].child.kill("SIGKILL");
    const killedAt = performance.now();
    const survivor = nodes[(victim + 1) % 3];
    let reached = 0;
    while (performance.now() - killedAt < 180_000) {
      reached = await survivor.ask<number>("reach-all", servers);
      if (reached === n) break;
      await sleep(500);
    }
    const backMs = performance.now() - killedAt;
    table([
      ["", "measured", "target"],
      ["agents on three nodes (held per node)", `${n} (${held.join(" / ")})`, "20,000"],
      ["first connection of all", `${(connectMs / 1000).toFixed(1)} s`, ""],
      [
        "info() through another node, p50 (p90)",
        `${latency.remote.toFixed(2)} ms (${latency.remote90.toFixed(2)}), ${latency.n} calls`,
        "<= 2x direct",
      ],
      ["baseline: info() on the node holding the agent, p50", `${direct.toFixed(2)} ms`, ""],
      ["floor: a bare NATS request/reply between two nodes, p50", `${engineRtt.toFixed(2)} ms`, ""],
      ["ratio, through another node / direct", `${(latency.remote / direct).toFixed(2)}x`, "<= 2x"],
      [
        `all reachable through a survivor after node ${"abc"[victim]} (${held[victim]} agents) was killed`,
        reached === n
          ? `${(backMs / 1000).toFixed(1)} s`
          : `not all: ${reached}/${n} after ${(backMs / 1000).toFixed(0)} s`,
        "<= 60 s",
      ],
    ]);
  } finally {
    for (const c of children) c.kill("SIGKILL");
    for (const l of nodes) l.child.kill("SIGKILL");
    await nats.stop();
    fs.rmSync(files.dir, { recursive: true, force: true });
  }
}

async function untilHeld(nodes: ListenerChild[], n: number, limitMs: number) {
  const t0 = performance.now();
  for (;;) {
    const held = (await Promise.all(nodes.map((l) => l.ask<number>("connected")))).reduce((a, b) => a + b, 0);
    if (held >= n) return;
    if (performance.now() - t0 > limitMs) throw new Error(`only ${held} of ${n} connected`);
    await sleep(250);
  }
}

/** The same sample, each call made on the node holding its agent: the direct baseline. */
async function directP50(nodes: ListenerChild[], sample: string[]): Promise<number> {
  const times: number[] = [];
  for (const l of nodes) {
    const r = await l.ask<{ local: number | null; localAll?: number[] }>("p50", sample);
    if (r.local !== null) times.push(r.local);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}
