/**
 * `fleet`: one listener process and many agents dialing it. Simulated agents
 * are the agent's own outbound code (OutboundTarget, ClientConnection), a
 * few thousand per process (bench/fleet-agents.ts), plus FLEET_REAL real
 * agents (dist/agent), on which sessions are opened. Reports the listener's
 * RSS and idle CPU per agent, `info()` on all (256 at once), a `setAgents`
 * stall, session open, and a restart storm: the listener killed and started
 * again on its port, timed until every agent is back, with the handshakes it
 * started and then threw away.
 *
 * FLEET_AGENTS (default 2000), FLEET_PROCS (simulated-agent processes, default one per 5,000),
 * FLEET_REAL (default 2), FLEET_IDLE_S (idle CPU window, default 15 = one heartbeat interval).
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generate } from "selfsigned";
import { generateKey } from "../core/secure/keys.ts";
import { cpuSeconds, rssKiB } from "./proc.ts";
import { table } from "./stats.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ListenerChild {
  child: ChildProcess;
  port: number;
  ask<T>(op: string, servers?: string[]): Promise<T>;
}

interface Stats {
  connected: number;
  refused: number;
  handshakeFailed: number;
  rejected: number;
  heapUsed: number;
  events: Record<string, number>;
}

export async function startListener(
  env: Record<string, string>,
  script = "fleet-listener.ts",
): Promise<ListenerChild> {
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", path.join(HERE, script)], {
    stdio: ["ignore", "pipe", "inherit", "ipc"],
    env: { ...process.env, ...env },
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      const m = /port (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`the listener exited (${code})`)));
  });
  let next = 1;
  const pending = new Map<number, (m: { ok: boolean; value?: unknown; error?: string }) => void>();
  child.on("message", (m: { id: number; ok: boolean }) => pending.get(m.id)?.(m));
  const ask = <T>(op: string, servers?: string[]) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, (m) => {
        pending.delete(id);
        if (m.ok) resolve(m.value as T);
        else reject(new Error(m.error));
      });
      child.send({ id, op, servers });
    });
  return { child, port, ask };
}

async function untilConnected(l: ListenerChild, want: number, limitMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const s = await l.ask<Stats>("stats");
    if (s.connected >= want) return performance.now() - t0;
    if (performance.now() - t0 > limitMs) {
      throw new Error(`only ${s.connected} of ${want} connected after ${limitMs / 1000} s: ${JSON.stringify(s)}`);
    }
    if (process.env.FLEET_VERBOSE) {
      console.log(`  ${((performance.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(s)}`);
    }
    await sleep(process.env.FLEET_VERBOSE ? 2000 : 250);
  }
}

/** Resident set after a full collection and a moment to settle, KiB. */
async function settledRss(l: ListenerChild): Promise<number> {
  await l.ask("gc");
  await sleep(1000);
  return rssKiB(l.child.pid!);
}

export async function fleetFiles(n: number, procs: number, real: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-fleet-"));
  const pems = await generate([{ name: "commonName", value: "fleet.listener" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [{ name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] }],
  } as never) as unknown as { cert: string; private: string };
  fs.writeFileSync(path.join(dir, "cert.pem"), pems.cert);
  fs.writeFileSync(path.join(dir, "key.pem"), pems.private);
  const keys = Array.from({ length: n + real }, () => generateKey().hex);
  const tableJson: Record<string, string> = {};
  keys.forEach((k, i) => (tableJson[i < n ? `sim${i}` : `real${i - n}`] = k));
  fs.writeFileSync(path.join(dir, "table.json"), JSON.stringify(tableJson));
  const per = Math.ceil(n / procs);
  for (let p = 0; p < procs; p++) {
    fs.writeFileSync(path.join(dir, `keys${p}.json`), JSON.stringify(keys.slice(p * per, Math.min(n, (p + 1) * per))));
  }
  const fingerprint = new crypto.X509Certificate(pems.cert).fingerprint256;
  return { dir, keys, fingerprint, realKeys: keys.slice(n) };
}

/** One real agent per key of `files.realKeys`, each in its own state directory, dialing `targets` (host:port,…). */
export function startRealAgents(
  agentBin: string,
  files: Awaited<ReturnType<typeof fleetFiles>>,
  targets: string,
): ChildProcess[] {
  return files.realKeys.map((key, r) => {
    const stateDir = fs.mkdtempSync(path.join(files.dir, `real${r}-`));
    const args = ["start", "--no-listen", "--connect", targets, "--fingerprint", files.fingerprint, "--key", key];
    return spawn(agentBin, args, { stdio: "ignore", env: { ...process.env, AGENT_STATE_DIR: stateDir } });
  });
}

export async function benchFleet(agentBin: string): Promise<void> {
  const n = Number(process.env.FLEET_AGENTS ?? 2000);
  const procs = Number(process.env.FLEET_PROCS ?? Math.max(1, Math.ceil(n / 5000)));
  const real = Number(process.env.FLEET_REAL ?? 2);
  const idleS = Number(process.env.FLEET_IDLE_S ?? 15);
  const total = n + real;
  console.log(`\nfleet: ${n} simulated agents in ${procs} processes + ${real} real agents, one listener process`);
  const files = await fleetFiles(n, procs, real);
  const env = {
    CERT: path.join(files.dir, "cert.pem"),
    KEY: path.join(files.dir, "key.pem"),
    TABLE: path.join(files.dir, "table.json"),
  };
  const children: ChildProcess[] = [];
  let listener = await startListener(env);
  try {
    await sleep(1000);
    const baseRss = await settledRss(listener);
    const baseHeap = (await listener.ask<Stats>("stats")).heapUsed;
    for (let p = 0; p < procs; p++) {
      children.push(spawn(process.execPath, ["--import", "tsx", path.join(HERE, "fleet-agents.ts")], {
        stdio: ["ignore", "ignore", process.env.FLEET_VERBOSE ? "inherit" : "ignore"],
        env: {
          ...process.env,
          PORT: String(listener.port),
          FINGERPRINT: files.fingerprint,
          KEYS: path.join(files.dir, `keys${p}.json`),
          RAMP_MS: String(Math.max(2000, n / 2)),
        },
      }));
    }
    children.push(...startRealAgents(agentBin, files, `127.0.0.1:${listener.port}`));
    const cpuAgents0 = children.reduce((sum, c) => sum + cpuSeconds(c.pid!), 0),
      cpuListener0 = cpuSeconds(listener.child.pid!);
    const connectMs = await untilConnected(listener, total, 60_000 + n * 10);
    const firstEvents = (await listener.ask<Stats>("stats")).events;
    console.log(
      `  first connection: listener ${(cpuSeconds(listener.child.pid!) - cpuListener0).toFixed(1)} CPU-s, agents ${
        (children.reduce((sum, c) => sum + cpuSeconds(c.pid!), 0) - cpuAgents0).toFixed(1)
      } CPU-s; listener events ${JSON.stringify(firstEvents)}`,
    );
    const before = await measureConnected(listener, baseRss, baseHeap, total, idleS, real);
    const storm = await restartStorm(listener, env, total, n);
    listener = storm.listener;
    printFleet({ n, total, connectMs, before, storm, rssGrowth: storm.rssAfter / before.rss });
  } finally {
    for (const c of children) c.kill("SIGKILL");
    listener.child.kill("SIGKILL");
    fs.rmSync(files.dir, { recursive: true, force: true });
  }
}

async function measureConnected(
  l: ListenerChild,
  baseRss: number,
  baseHeap: number,
  total: number,
  idleS: number,
  real: number,
) {
  const rss = await settledRss(l);
  const heap = (await l.ask<Stats>("stats")).heapUsed;
  const cpu0 = cpuSeconds(l.child.pid!);
  await sleep(idleS * 1000);
  const idleCpu = (cpuSeconds(l.child.pid!) - cpu0) / idleS;
  const info = await l.ask<{ ms: number; ok: number; of: number }>("info-all");
  const setAgents = await l.ask<{ ms: number }>("set-agents");
  const realNames = Array.from({ length: real }, (_, i) => `real${i}`);
  const session = real > 0 ? await l.ask<{ p50: number | null }>("session-p50", realNames) : { p50: null };
  return {
    rss,
    rssPerAgent: (rss - baseRss) / total,
    heapPerAgent: (heap - baseHeap) / 1024 / total,
    idleCpu,
    info,
    setAgentsMs: setAgents.ms,
    sessionP50: session.p50,
  };
}

async function restartStorm(old: ListenerChild, env: Record<string, string>, total: number, n: number) {
  const port = old.port;
  old.child.kill("SIGKILL");
  await new Promise((r) => old.child.once("exit", r));
  const t0 = performance.now();
  const listener = await startListener({ ...env, PORT: String(port) });
  await untilConnected(listener, total, 180_000 + n * 10);
  const backMs = performance.now() - t0;
  const stats = await listener.ask<Stats>("stats");
  await sleep(5000);
  const rssAfter = await settledRss(listener);
  return { listener, backMs, stats, rssAfter };
}

function printFleet(r: {
  n: number;
  total: number;
  connectMs: number;
  before: Awaited<ReturnType<typeof measureConnected>>;
  storm: Awaited<ReturnType<typeof restartStorm>>;
  rssGrowth: number;
}) {
  const { before, storm } = r;
  const thrownAway = storm.stats.handshakeFailed;
  table([
    ["", "measured", "target"],
    ["agents connected", String(r.total), "20,000 on 2 cores"],
    ["first connection of all", `${(r.connectMs / 1000).toFixed(1)} s`, ""],
    [
      "listener RSS per agent",
      `${before.rssPerAgent.toFixed(1)} KiB (JS heap ${before.heapPerAgent.toFixed(1)})`,
      "<= 20 KiB",
    ],
    ["listener idle CPU, 15 s heartbeats", `${(before.idleCpu * 100).toFixed(1)} % of a core`, "<= 5 %"],
    [
      "info() on all, 256 at once",
      `${(before.info.ms / 1000).toFixed(2)} s (${before.info.ok}/${before.info.of} ok)`,
      "<= 5 s",
    ],
    ["setAgents, one row more", `${before.setAgentsMs.toFixed(0)} ms`, ""],
    [
      "session open + `true` on a real agent, p50",
      before.sessionP50 === null ? "-" : `${before.sessionP50.toFixed(0)} ms`,
      "",
    ],
    ["all back after a listener restart", `${(storm.backMs / 1000).toFixed(1)} s`, "<= 60 s"],
    ["handshakes started then thrown away", String(thrownAway), "0"],
    ["connections refused before a handshake (retried)", String(storm.stats.refused), ""],
    ["listener RSS after the storm / before", `${(r.rssGrowth * 100).toFixed(0)} %`, "<= 110 %"],
  ]);
}
