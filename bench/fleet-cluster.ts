/**
 * `fleet`, cluster part: one nats-server and three listener processes joined
 * to it (bench/fleet-node.ts), CLUSTER_AGENTS simulated agents (default
 * FLEET_AGENTS, else 2000) and CLUSTER_REAL real agents (dist/agent, default
 * 2), each given all three nodes. Reports `info()` on random agents through a
 * node that does not hold them against the same call on the node that does
 * (the baseline: direct), and a command on a random real agent the same two
 * ways, interleaved: `true` run in an open session, and a session opened,
 * `true` run and the session closed. Beside them, the engine's floor: a bare
 * NATS request/reply, and one the holding node answers once it has called
 * `info()` itself. Then kills one node (SIGKILL) and times
 * until every agent answers `info()` through a surviving node. Runs when
 * nats-server is installed, unless BENCH_CLUSTER=0.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import { NatsServer, natsServerPath } from "../test/helpers/nats.ts";
import { fleetFiles, type ListenerChild, startListener, startRealAgents } from "./fleet.ts";
import { median, table } from "./stats.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchFleetCluster(agentBin: string): Promise<void> {
  if (process.env.BENCH_CLUSTER === "0") return;
  if (!natsServerPath()) {
    console.log("\nfleet cluster: skipped, nats-server not installed (apt-get install nats-server)");
    return;
  }
  const n = Number(process.env.CLUSTER_AGENTS ?? process.env.FLEET_AGENTS ?? 2000);
  const real = Number(process.env.CLUSTER_REAL ?? 2);
  const procs = Math.max(1, Math.ceil(n / 5000));
  console.log(
    `\nfleet cluster: ${n} simulated agents in ${procs} processes + ${real} real agents, three listener nodes, one nats-server`,
  );
  const files = await fleetFiles(n, procs, real);
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
    children.push(...startRealAgents(agentBin, files, nodes.map((l) => `127.0.0.1:${l.port}`).join(",")));
    const servers = Array.from({ length: n }, (_, i) => `sim${i}`);
    const t0 = performance.now();
    await untilHeld(nodes, n + real, 60_000 + n * 10);
    const connectMs = performance.now() - t0;
    const realNames = Array.from({ length: real }, (_, i) => `real${i}`);
    const runTrue = real > 0 ? await commandP50(nodes, realNames, "run-true", 100) : null;
    const openRunTrue = real > 0 ? await commandP50(nodes, realNames, "open-run-true", 20) : null;
    for (const l of nodes) await l.ask("close-sessions");
    const sample = Array.from({ length: Math.min(400, n) }, () => servers[Math.floor(Math.random() * n)]);
    const latency = await nodes[0].ask<{ remote: number; remote90: number; n: number; local: number }>("p50", sample);
    const direct = await directP50(nodes, sample);
    const engineRtt = await nodes[0].ask<number>("engine-rtt", ["b", "c"]);
    const wrapped = await nodes[0].ask<number>("engine-wrapped-info", sample);
    const held = await Promise.all(nodes.map((l) => l.ask<number>("connected")));
    const victim = held.indexOf(Math.max(...held));
    nodes[victim].child.kill("SIGKILL");
    const killedAt = performance.now();
    const survivor = nodes[(victim + 1) % 3];
    let reached = 0;
    while (performance.now() - killedAt < 180_000) {
      reached = await survivor.ask<number>("reach-all", [...servers, ...realNames]);
      if (reached === n + real) break;
      await sleep(500);
    }
    const backMs = performance.now() - killedAt;
    const command = (c: CommandP50 | null) =>
      c
        ? `${c.remote.toFixed(2)} / ${c.direct.toFixed(2)} ms = ${(c.remote / c.direct).toFixed(2)}x (${c.n} each)`
        : "-";
    table([
      ["", "measured", "target"],
      ["agents on three nodes (held per node)", `${n + real} (${held.join(" / ")})`, "20,000"],
      ["first connection of all", `${(connectMs / 1000).toFixed(1)} s`, ""],
      [
        "info() through another node, p50 (p90)",
        `${latency.remote.toFixed(2)} ms (${latency.remote90.toFixed(2)}), ${latency.n} calls`,
        "",
      ],
      ["baseline: info() on the node holding the agent, p50", `${direct.toFixed(2)} ms`, ""],
      ["ratio, info() through another node / on the holding node", `${(latency.remote / direct).toFixed(2)}x`, "<= 2x"],
      ["floor: a bare NATS request/reply between two nodes, p50", `${engineRtt.toFixed(2)} ms`, ""],
      [
        "floor: a NATS request to the holding node, which calls info() and answers, p50 (/ baseline)",
        `${wrapped.toFixed(2)} ms (${(wrapped / direct).toFixed(2)}x)`,
        "",
      ],
      [
        "command: `true` in an open session, random real agent, p50, via another / holding node",
        command(runTrue),
        "<= 2x",
      ],
      ["command: session opened, `true` run, session closed, p50, the same", command(openRunTrue), "<= 2x"],
      [
        `all reachable through a survivor after node ${"abc"[victim]} (${held[victim]} agents) was killed`,
        reached === n + real
          ? `${(backMs / 1000).toFixed(1)} s`
          : `not all: ${reached}/${n + real} after ${(backMs / 1000).toFixed(0)} s`,
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

interface CommandP50 {
  remote: number;
  direct: number;
  n: number;
}

/**
 * `op` ("run-true" or "open-run-true") on random real agents, `count` times each way, interleaved
 * so both see the same load: on the node holding the agent (direct) and through one that does not.
 */
async function commandP50(nodes: ListenerChild[], realNames: string[], op: string, count: number) {
  const holder = new Map<string, number>();
  for (const [i, l] of nodes.entries()) for (const s of await l.ask<string[]>("holds", realNames)) holder.set(s, i);
  const direct: number[] = [], remote: number[] = [];
  for (let i = 0; i < count; i++) {
    const server = realNames[Math.floor(Math.random() * realNames.length)];
    const home = holder.get(server)!, other = (home + 1 + (i % 2)) % nodes.length;
    const pair: Array<[number, number[]]> = [[home, direct], [other, remote]];
    if (i % 2 === 1) pair.reverse();
    for (const [node, into] of pair) into.push(await nodes[node].ask<number>(op, [server]));
  }
  return { remote: median(remote), direct: median(direct), n: count } satisfies CommandP50;
}
