/**
 * Bulk transfer, file to file, next to the project's OpenSSH peer (bench/peer.ts) in the same run,
 * with the agent on Node and on Deno (issue 32's targets):
 *
 *   peer         the peer's transfer.sh (plain redirects over a multiplexing master, aes256-gcm and
 *                chacha20-poly1305, transport and integrity), run before and after the agent's legs;
 *                each figure is the better of the two bracketing runs
 *   transport    the library's writeFile from a file's read stream, and readStream (reuseChunks) with
 *                each chunk written to a file, nothing else (target 1)
 *   integrity    the same with SHA-256 on both ends as the bytes pass (onSha256 and the client's own
 *                hash), checked (target 2)
 *   fresh        a fresh session's first transfer each way (on a fresh agent, and on the running one)
 *                next to the later rounds (target 4)
 *   agent cp     one file up and down (the CLI on the same runtime as the agent), next to
 *                `scp -c aes256-gcm@openssh.com` through the peer's sshd (target 3)
 *   CPU          CPU-seconds per GiB by process: client, agent, host; and ssh's own plain transport
 *                (aes-gcm over a master: the master ssh, sshd's processes, the remote cat) metered
 *                the same way; totals are the sum of the leg's own processes
 *   stages       each per-byte stage timed alone (bench/stages.ts), summed along a path, next to the
 *                measured totals
 *
 * BENCH_TRANSFER_MIB sizes the file (default 1024), BENCH_PEER_ROUNDS the rounds of each transfer.sh
 * run (default 1), BENCH_RUNTIMES the agent's runtimes (node,deno).
 * @module
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type RemoteSession } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { AGENT_COMMANDS, DENO, startBenchAgent } from "./agent.ts";
import { cpuSeconds, descendants, machineCpuSeconds, startMeters, treeCpu } from "./proc.ts";
import {
  CIPHERS,
  describePeer,
  freshArgs,
  muxMaster,
  NO_PEER,
  type Peer,
  type PeerFigures,
  peerTransfer,
  startPeer,
} from "./peer.ts";
import { ratio, table } from "./stats.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const TRANSFER_MIB = Number(process.env.BENCH_TRANSFER_MIB ?? 1024);
const PEER_ROUNDS = Number(process.env.BENCH_PEER_ROUNDS ?? 1);
const GIB = TRANSFER_MIB / 1024;
const LOCAL_CHUNK = 512 * 1024;

/** `mib` MiB of incompressible data in 8 MiB pieces, hashed as it is produced. */
export function* source(mib: number, hash: crypto.Hash): Generator<Uint8Array> {
  const block = crypto.randomBytes(8 * 1024 * 1024);
  for (let i = 0; i < Math.max(1, mib / 8); i++) {
    block[0] = i & 255; // every piece differs
    hash.update(block);
    yield block;
  }
}

/** One timed step: MiB/s and CPU-seconds per GiB by process. */
interface Leg {
  mibps: number;
  cpu: Record<string, number>;
}

type Meters = Record<string, () => number>;

/** Runs `work` after a `sync` (as transfer.sh does), timing it and each meter. */
async function measured(meters: Meters, work: () => Promise<void>, settle?: () => Promise<void>): Promise<Leg> {
  execFileSync("sync");
  const since = startMeters(meters);
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  await settle?.();
  return { mibps: TRANSFER_MIB / seconds, cpu: since(GIB) };
}

/** The agent's four legs of one round. */
interface AgentRound {
  transportUp: Leg;
  /** The same from a ChunkReader over a FileHandle. */
  transportUpReader: Leg;
  transportDown: Leg;
  integrityUp: Leg;
  integrityDown: Leg;
}

interface AgentFigures {
  rounds: AgentRound[];
  /** The first transfer each way of a second, fresh session on the now running agent. */
  freshUp: Leg;
  freshDown: Leg;
  cp: Copies;
}

/** Files of one run: the source, its digest, a remote directory and a local one. */
interface Work {
  dir: string;
  src: string;
  sha256: string;
  remote: string;
  local: string;
}

function makeWork(): Work {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-transfer-"));
  const src = path.join(dir, "src.bin");
  const hash = crypto.createHash("sha256");
  const fd = fs.openSync(src, "wx");
  for (const block of source(TRANSFER_MIB, hash)) fs.writeSync(fd, block);
  fs.closeSync(fd);
  fs.mkdirSync(path.join(dir, "remote"));
  fs.mkdirSync(path.join(dir, "local"));
  return { dir, src, sha256: hash.digest("hex"), remote: path.join(dir, "remote"), local: path.join(dir, "local") };
}

/**
 * Upload of `w.src`, the client hashing what it sends for integrity: from a read stream, or with
 * `reader` from a FileHandle through the library's ChunkReader (its own buffers, reused).
 */
async function uploadLeg(s: RemoteSession, w: Work, meters: Meters, integrity: boolean, reader = false): Promise<Leg> {
  const dst = path.join(w.remote, "f");
  fs.rmSync(dst, { force: true });
  let remote = "";
  const hash = crypto.createHash("sha256");
  async function* chunks() {
    for await (const c of fs.createReadStream(w.src, { highWaterMark: LOCAL_CHUNK }) as AsyncIterable<Buffer>) {
      if (integrity) hash.update(c);
      yield c;
    }
  }
  const leg = await measured(meters, async () => {
    const handle = reader ? await fs.promises.open(w.src) : null;
    const source = handle
      ? {
        readInto: async (into: Uint8Array) => {
          const { bytesRead } = await handle.read(into, 0, into.length, null);
          if (integrity) hash.update(into.subarray(0, bytesRead));
          return bytesRead;
        },
      }
      : chunks();
    await s.files.writeFile(dst, source, integrity ? { onSha256: (hex) => (remote = hex) } : {});
    await handle?.close();
    if (integrity && (remote !== w.sha256 || hash.digest("hex") !== w.sha256)) {
      throw new Error("upload: SHA-256 mismatch");
    }
  });
  return leg;
}

/** Download of the uploaded file into a new local file, each chunk written (and hashed, for integrity) as it comes. */
async function downloadLeg(s: RemoteSession, w: Work, meters: Meters, integrity: boolean): Promise<Leg> {
  const dst = path.join(w.local, "f");
  fs.rmSync(dst, { force: true });
  let remote = "";
  const hash = crypto.createHash("sha256");
  const leg = await measured(meters, async () => {
    const fd = fs.openSync(dst, "wx");
    try {
      const options = integrity
        ? { onSha256: (hex: string) => (remote = hex), reuseChunks: true }
        : { reuseChunks: true };
      for await (const chunk of s.files.readStream(path.join(w.remote, "f"), options)) {
        if (integrity) hash.update(chunk);
        fs.writeSync(fd, chunk);
      }
    } finally {
      fs.closeSync(fd);
    }
    if (integrity && (remote !== w.sha256 || hash.digest("hex") !== w.sha256)) {
      throw new Error("download: SHA-256 mismatch");
    }
  });
  if (!integrity) fs.rmSync(dst);
  return leg;
}

/** The meters of one session: this process, the agent, the session's host, the machine. */
async function sessionMeters(s: RemoteSession, agentPid: number): Promise<Meters> {
  const hostPid = (await s.system.info()).pid;
  return {
    client: () => cpuSeconds("self"),
    agent: () => cpuSeconds(agentPid),
    host: () => cpuSeconds(hostPid),
    machine: machineCpuSeconds,
  };
}

/** Two rounds in one session of a fresh agent, then a fresh session's first transfer each way; `agent cp` last. */
async function agentLegs(runtime: string, w: Work): Promise<AgentFigures> {
  const key = generateKey();
  const bench = await startBenchAgent(AGENT_COMMANDS[runtime], key.hex);
  const agent = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });
  try {
    const s = await agent.openSession("bench");
    const meters = await sessionMeters(s, bench.child.pid!);
    const rounds: AgentRound[] = [];
    for (let i = 0; i < 2; i++) {
      const transportUp = await uploadLeg(s, w, meters, false);
      const transportUpReader = await uploadLeg(s, w, meters, false, true);
      const transportDown = await downloadLeg(s, w, meters, false);
      const integrityUp = await uploadLeg(s, w, meters, true);
      const integrityDown = await downloadLeg(s, w, meters, true);
      rounds.push({ transportUp, transportUpReader, transportDown, integrityUp, integrityDown });
    }
    await s.close();
    const s2 = await agent.openSession("bench");
    const meters2 = await sessionMeters(s2, bench.child.pid!);
    const freshUp = await uploadLeg(s2, w, meters2, false);
    const freshDown = await downloadLeg(s2, w, meters2, false);
    await s2.close();
    agent.close();
    const cp = cpLegs(runtime, bench.child.pid!, bench.port, key.hex, w);
    return { rounds, freshUp, freshDown, cp };
  } finally {
    agent.close();
    await bench.stop();
  }
}

/** Runs a command to its end, metered (throws when it fails). */
function metered(argv: string[], meters: Meters, settle?: () => void): Leg {
  execFileSync("sync");
  const since = startMeters(meters);
  const t0 = performance.now();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${argv.slice(0, 3).join(" ")} … failed: ${r.stderr || r.error}`);
  settle?.();
  return { mibps: TRANSFER_MIB / seconds, cpu: since(GIB) };
}

/** The faster of two rounds of `up` then `down`, the destinations removed before each (untimed). */
function copyRounds(
  up: string[],
  down: string[],
  remote: string,
  local: string,
  meters: Meters,
  settle?: () => void,
): Copies {
  const legs: Copies[] = [];
  for (let i = 0; i < 2; i++) {
    fs.rmSync(remote, { force: true });
    const u = metered(up, meters, settle);
    fs.rmSync(local, { force: true });
    legs.push({ up: u, down: metered(down, meters, settle) });
  }
  fs.rmSync(remote, { force: true });
  fs.rmSync(local, { force: true });
  return { up: faster(legs[0].up, legs[1].up), down: faster(legs[0].down, legs[1].down) };
}

interface Copies {
  up: Leg;
  down: Leg;
}

/** The command this process runs and waits for (cp, scp), counted once it has been waited for. */
const childCpu = () => cpuSeconds("self", true) - cpuSeconds("self");

/** `agent cp` of the source up and back, the CLI on `runtime` (as the agent), the faster of two rounds. */
function cpLegs(runtime: string, agentPid: number, port: number, keyHex: string, w: Work): Copies {
  const keyFile = path.join(w.dir, "key");
  fs.rmSync(keyFile, { force: true });
  fs.writeFileSync(keyFile, keyHex, { mode: 0o600 });
  const remote = path.join(w.remote, "cp"), local = path.join(w.local, "cp");
  const cli = [...AGENT_COMMANDS[runtime], "cp", "--key-file", keyFile];
  const meters: Meters = {
    "agent cp": childCpu,
    agent: () => cpuSeconds(agentPid),
    hosts: () => treeCpu(agentPid),
    machine: machineCpuSeconds,
  };
  const at = `127.0.0.1:${port}:${remote}`;
  return copyRounds([...cli, w.src, at], [...cli, at, local], remote, local, meters);
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** `scp -c aes256-gcm@openssh.com` up and back through the peer's sshd, fresh connections, as `agent cp`. */
function scpLegs(peer: Peer, w: Work): Copies {
  const remote = path.join(w.remote, "scp"), local = path.join(w.local, "scp");
  const scp = ["scp", "-q", ...freshArgs(peer, CIPHERS[0])];
  const meters: Meters = {
    scp: childCpu,
    "sshd and its children": () => treeCpu(peer.pid),
    machine: machineCpuSeconds,
  };
  // The connection's sshd processes end just after scp: wait until they are gone and counted (reaped).
  const before = descendants(peer.pid).length;
  const settle = () => {
    for (let i = 0; i < 100 && descendants(peer.pid).length > before; i++) Atomics.wait(SLEEPER, 0, 0, 20);
  };
  return copyRounds(
    [...scp, w.src, `peer:${remote}`],
    [...scp, `peer:${remote}`, local],
    remote,
    local,
    meters,
    settle,
  );
}

/** The CPU of sshd's processes (all but the listener) and, apart, of what they ran and reaped (cat). */
function sshdCpu(peer: Peer): { sshd: number; cat: number } {
  let sshd = 0, cat = 0;
  for (const pid of descendants(peer.pid)) {
    try {
      const self = cpuSeconds(pid);
      sshd += self;
      cat += cpuSeconds(pid, true) - self;
    } catch { /* gone */ }
  }
  return { sshd, cat };
}

/** Runs `ssh … peer command` through `master` with stdin and stdout on files, until it ends. */
function sshThrough(master: string[], command: string, stdin: string | null, stdout: string | null): Promise<void> {
  const fdIn = stdin ? fs.openSync(stdin, "r") : "ignore";
  const fdOut = stdout ? fs.openSync(stdout, "wx") : "ignore";
  const child = spawn("ssh", [...master, command], { stdio: [fdIn, fdOut, "inherit"] });
  return new Promise<void>((resolve, reject) =>
    child.once("exit", (code) => {
      if (typeof fdIn === "number") fs.closeSync(fdIn);
      if (typeof fdOut === "number") fs.closeSync(fdOut);
      code === 0 ? resolve() : reject(new Error(`ssh ${command} exited ${code}`));
    })
  );
}

/** ssh's plain transport with aes-gcm, metered per process like the agent's legs (its MiB/s is not the quoted figure). */
async function sshMetered(peer: Peer, w: Work): Promise<{ up: Leg; down: Leg }> {
  const master = muxMaster(peer, path.join(w.dir, "cm"), CIPHERS[0]);
  try {
    const meters: Meters = {
      "ssh (mux client)": () => cpuSeconds("self", true) - cpuSeconds("self"),
      "ssh (master)": () => (master.pid ? cpuSeconds(master.pid) : 0),
      sshd: () => sshdCpu(peer).sshd,
      "remote cat": () => sshdCpu(peer).cat,
      machine: machineCpuSeconds,
    };
    // The remote cat is reaped by sshd a moment after the client ends: wait for it to be counted.
    const settle = async () => {
      const cats = () =>
        descendants(peer.pid).filter((p) => fs.readFileSync(`/proc/${p}/comm`, "utf8").trim() === "cat");
      for (let i = 0; i < 50 && cats().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    };
    const remote = path.join(w.remote, "ssh"), local = path.join(w.local, "ssh");
    const up = await measured(meters, () => sshThrough(master.args, `cat > ${remote}`, w.src, null), settle);
    const down = await measured(meters, () => sshThrough(master.args, `cat ${remote}`, null, local), settle);
    fs.rmSync(remote);
    fs.rmSync(local);
    return { up, down };
  } finally {
    master.stop();
  }
}

/** The better of the bracketing peer runs, figure by figure. */
function bestOf(runs: PeerFigures[]): Record<string, number> {
  const best: Record<string, number> = {};
  for (const run of runs) for (const [k, v] of Object.entries(run.mibps)) best[k] = Math.max(best[k] ?? 0, v);
  return best;
}

const f2 = (x: number) => x.toFixed(2);
const mibps = (x: number) => `${x.toFixed(0)} MiB/s`;
/** "0.62× ssh aes256-gcm transport up": the agent's figure over the peer's, naming the peer's. */
const versus = (agent: number, peer: Record<string, number>, key: string) =>
  peer[key] ? `${ratio(agent, peer[key])} ssh ${key}` : "(no peer)";
const faster = (a: Leg, b: Leg) => (a.mibps >= b.mibps ? a : b);

export async function benchTransfer(): Promise<void> {
  const runtimes = (process.env.BENCH_RUNTIMES ?? "node,deno").split(",");
  console.log(`\n== transfer: one ${TRANSFER_MIB} MiB file, file to file, up and down ==`);
  const peer = startPeer();
  console.log(`  ${peer ? describePeer(peer) : NO_PEER}`);
  const w = makeWork();
  try {
    const peerRuns: PeerFigures[] = [];
    if (peer) peerRuns.push(peerTransfer(peer, w.src, w.remote, PEER_ROUNDS));
    const agents: Record<string, AgentFigures> = {};
    for (const r of runtimes) agents[r] = await agentLegs(r, w);
    const ssh = peer ? await sshMetered(peer, w) : null;
    const scp = peer ? scpLegs(peer, w) : null;
    if (peer) peerRuns.push(peerTransfer(peer, w.src, w.remote, PEER_ROUNDS));
    const best = bestOf(peerRuns);
    printPeer(peerRuns, best);
    for (const r of runtimes) printAgent(r, agents[r], best, scp);
    console.log(
      `  targets (Node): transport ≥ 1.2× ssh aes256-gcm transport; integrity ≥ 1.5× ssh integrity; agent cp ≥ 1.2× scp and ≥ 1.0× ssh transport; first transfer ≤ 1.2× a later one's time; Deno ≥ 1.0× ssh transport`,
    );
    printCpu(runtimes, agents, ssh, scp);
    printStages(runtimes, agents);
  } finally {
    fs.rmSync(w.dir, { recursive: true, force: true });
  }
}

function printPeer(runs: PeerFigures[], best: Record<string, number>): void {
  if (runs.length === 0) return;
  console.log(`  the peer (transfer.sh, ${runs.length} runs bracketing the agent's legs, the better of each figure):`);
  for (const [k, v] of Object.entries(best)) {
    console.log(`    peer ${k} ${v} MiB/s  (runs: ${runs.map((r) => r.mibps[k]).join(", ")})`);
  }
  console.log(`    ${runs[0].commands}`);
}

function printAgent(
  runtime: string,
  a: AgentFigures,
  peer: Record<string, number>,
  scp: Copies | null,
) {
  const [first, later] = a.rounds;
  const row = (label: string, leg: Leg, key: string) => [label, mibps(leg.mibps), versus(leg.mibps, peer, key)];
  const rows = [[`agent on ${runtime}`, "", "against the peer, same run"]];
  for (const dir of ["up", "down"] as const) {
    const t = dir === "up" ? "Up" : "Down";
    const transport = faster(first[`transport${t}`], later[`transport${t}`]);
    const integrity = faster(first[`integrity${t}`], later[`integrity${t}`]);
    rows.push(row(`transport ${dir} (library, best of 2)`, transport, `aes256-gcm transport ${dir}`));
    rows.push(["", "", versus(transport.mibps, peer, `chacha20-poly1305 transport ${dir}`)]);
    if (dir === "up") {
      const reader = faster(first.transportUpReader, later.transportUpReader);
      rows.push(row(`transport up (ChunkReader, best of 2)`, reader, `aes256-gcm transport up`));
    }
    rows.push(row(`integrity ${dir} (SHA-256 both ends)`, integrity, `aes256-gcm integrity ${dir}`));
    const cp = a.cp[dir].mibps, sc = scp?.[dir].mibps;
    rows.push([`agent cp ${dir}`, mibps(cp), versus(cp, peer, `aes256-gcm transport ${dir}`)]);
    if (sc) rows.push([`  scp -c aes256-gcm ${dir}: ${mibps(sc)}`, "", `${ratio(cp, sc)} scp aes256-gcm ${dir}`]);
    const fresh = dir === "up" ? a.freshUp : a.freshDown;
    const firstLeg = first[`transport${t}`], laterLeg = later[`transport${t}`];
    rows.push([
      `first transfer ${dir}: fresh agent, fresh session`,
      `${mibps(firstLeg.mibps)}, ${mibps(fresh.mibps)}`,
      `${ratio(laterLeg.mibps, firstLeg.mibps)}, ${ratio(laterLeg.mibps, fresh.mibps)} the time of the later round`,
    ]);
  }
  table(rows);
}

/** The CPU-s/GiB of the leg's own processes (their system time included), summed: the total quoted. */
const own = (leg: Leg) => Object.entries(leg.cpu).filter(([k]) => k !== "machine").reduce((a, [, v]) => a + v, 0);

/** Each process's CPU-s/GiB, and what the machine spent beyond them (other workers, kernel threads). */
function cpuCells(leg: Leg): string {
  const each = Object.entries(leg.cpu).filter(([k]) => k !== "machine");
  return [...each.map(([k, v]) => `${k} ${f2(v)}`), `(machine beyond them ${f2(leg.cpu.machine - own(leg))})`].join(
    ", ",
  );
}

function printCpu(runtimes: string[], agents: Record<string, AgentFigures>, ssh: Copies | null, scp: Copies | null) {
  const rows = [["CPU-s/GiB (the leg's faster round)", "total", "by process"]];
  for (const dir of ["up", "down"] as const) {
    const t = dir === "up" ? "Up" : "Down";
    for (const r of runtimes) {
      const [a, b] = agents[r].rounds;
      const kinds = dir === "up"
        ? (["transport", "transportReader", "integrity"] as const)
        : ["transport", "integrity"];
      for (const kind of kinds) {
        const key = kind === "transportReader" ? "transportUpReader" : (`${kind}${t}` as const);
        const leg = faster(a[key as keyof AgentRound], b[key as keyof AgentRound]);
        const vs = ssh ? `  (${ratio(own(leg), own(ssh[dir]))} ssh aes256-gcm transport ${dir})` : "";
        const label = kind === "transportReader" ? "transport up from a ChunkReader" : `${kind} ${dir}`;
        rows.push([`agent on ${r}, ${label}`, f2(own(leg)) + vs, cpuCells(leg)]);
      }
    }
    if (ssh) {
      rows.push([
        `ssh aes256-gcm transport ${dir} (${mibps(ssh[dir].mibps)})`,
        f2(own(ssh[dir])),
        cpuCells(ssh[dir]),
      ]);
    }
    for (const r of runtimes) {
      const cp = agents[r].cp[dir];
      const vs = scp ? `  (${ratio(own(cp), own(scp[dir]))} scp aes256-gcm ${dir})` : "";
      rows.push([`agent cp on ${r}, ${dir}`, f2(own(cp)) + vs, cpuCells(cp)]);
    }
    if (scp) rows.push([`scp aes256-gcm ${dir}`, f2(own(scp[dir])), cpuCells(scp[dir])]);
  }
  table(rows);
  console.log("  total: the CPU of the leg's own processes (user and system, so their socket and file syscalls), per");
  console.log(
    "  GiB moved; client is this bench process (the library, the local file, hashing). What the machine spent",
  );
  console.log("  beyond them is other workers' load and kernel threads: shown, not counted. ssh's row is its plain");
  console.log(
    "  transport over a master metered alone (the quoted MiB/s are transfer.sh's). Target 1: agent total ≤ ssh's.",
  );
}

/** openssl's own figure for `algorithm` on 64 KiB blocks, in CPU-seconds per GiB (one core, busy). */
function opensslPerGiB(algorithm: string): number {
  const out = execFileSync("openssl", ["speed", "-evp", algorithm, "-bytes", "65536", "-seconds", "1"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const kBps = Number(out.trim().split("\n").pop()!.trim().split(/\s+/).pop()!.replace(/k$/, "")); // 1000s of bytes per second
  return 1024 ** 3 / (kBps * 1000);
}

function stagesUnder(runtime: string): Record<string, number> {
  const script = path.join(ROOT, "bench/stages.ts");
  const argv = runtime === "deno" ? [DENO, "run", "-A", script] : [path.join(ROOT, "node_modules/.bin/tsx"), script];
  const out = execFileSync(argv[0], [...argv.slice(1), String(Math.min(256, TRANSFER_MIB))], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}

function printStages(runtimes: string[], agents: Record<string, AgentFigures>): void {
  const aes = opensslPerGiB("aes-256-gcm"), sha = opensslPerGiB("sha256");
  console.log(
    `  machine limits (one core): openssl AES-256-GCM ${f2(aes)} CPU-s/GiB, openssl SHA-256 ${f2(sha)} CPU-s/GiB`,
  );
  const stages = Object.fromEntries(runtimes.map((r) => [r, stagesUnder(r)]));
  const rows = [["stage, CPU-s/GiB (bench/stages.ts)", ...runtimes]];
  for (const name of Object.keys(stages[runtimes[0]])) rows.push([name, ...runtimes.map((r) => f2(stages[r][name]))]);
  // File to file, one way: read, one seal and one open, the socket, one ring pass, write.
  const along = (s: Record<string, number>) =>
    s["file read"] + s.encrypt + s.decrypt + s["loopback TCP (both ends)"] + s.ring + s["file write"];
  const measuredTotal = (r: string, key: keyof AgentRound) => f2(Math.min(...agents[r].rounds.map((x) => own(x[key]))));
  rows.push(["sum along one way, file to file", ...runtimes.map((r) => f2(along(stages[r])))]);
  rows.push(["  measured transport up, total", ...runtimes.map((r) => measuredTotal(r, "transportUp"))]);
  rows.push([
    "  measured transport up from a ChunkReader",
    ...runtimes.map((r) => measuredTotal(r, "transportUpReader")),
  ]);
  rows.push(["  measured transport down, total", ...runtimes.map((r) => measuredTotal(r, "transportDown"))]);
  rows.push(["sum plus SHA-256 on both ends", ...runtimes.map((r) => f2(along(stages[r]) + 2 * stages[r]["SHA-256"]))]);
  rows.push(["  measured integrity up, total", ...runtimes.map((r) => measuredTotal(r, "integrityUp"))]);
  rows.push(["  measured integrity down, total", ...runtimes.map((r) => measuredTotal(r, "integrityDown"))]);
  table(rows);
  console.log("  what a measured total has beyond its sum is the rest: message handling, event loops, wake-ups,");
  console.log("  allocation, garbage collection");
}
