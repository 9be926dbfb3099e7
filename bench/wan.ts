/**
 * Long links: BENCH_WAN_MIB (default 128) MiB file to file through bench/relay.ts, which adds a
 * round trip of 2 (the baseline), 20 and 50 ms, no loss, no bandwidth cap. The agent on each of
 * BENCH_RUNTIMES (default node,deno: the single executable, `deno run dist/agent.mjs`) with the
 * library's `writeFile` and `readStream`; OpenSSH, the project's peer (bench/peer.ts starts its
 * sshd.sh), `ssh -c aes256-gcm@openssh.com` over a multiplexing master through the same relay, with
 * plain redirects (`'cat > f' < SRC`, `'cat f' > DST`). The agent's legs are timed alone, then run
 * again, each on a fresh connection (a first transfer, window ramp included) while the bench polls
 * `agent status` for the attachment's largest window (as the client reported it) and times a `stat`
 * from 12 loops, each 10-30 ms apart (those runs are not timed: polling costs the agent CPU), with
 * a meta ping on a direct connection and the relay's lateness beside them: the machine's and the
 * relay's shares of a small request's delay. The timed legs' CPU is metered by process (client, agent,
 * hosts, relay), with the machine's busy cores. The source is read a MiB at a time, asynchronously,
 * into one reused buffer. Ratios name their baseline: agent/ssh at the same delay, and each at
 * +N ms over itself at +2 ms. Each timed leg runs BENCH_WAN_LEGS times (default 3): its MB/s is
 * the median, its CPU the mean. BENCH_WAN_RUNS (default 1) repeats the set.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Agent, connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import type { RemoteSession } from "../core/client/remote-session.ts";
import { controlPath, requestControl } from "../agent/control.ts";
import type { AgentStatus } from "../agent/server.ts";
import { AGENT_COMMANDS, type BenchAgent, startBenchAgent } from "./agent.ts";
import { describePeer, NO_PEER, type Peer, startPeer } from "./peer.ts";
import { cpuSeconds, machineCpuSeconds, startMeters, treeCpu } from "./proc.ts";
import { median, quantile, ratio, table } from "./stats.ts";
import type { Lateness } from "./relay.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MIB = Number(process.env.BENCH_WAN_MIB ?? 128);
const RUNS = Number(process.env.BENCH_WAN_RUNS ?? 1);
/** Times each timed leg runs; its figure is the median (one leg alone moved up to 2x between runs here). */
const LEGS = Number(process.env.BENCH_WAN_LEGS ?? 3);
const RTTS = (process.env.BENCH_WAN_RTTS ?? "2,20,50").split(",").map(Number);
/** BENCH_WAN_WINDOW_MIB caps the agent's window (2: the fixed window before auto-tuning). */
const WINDOW = process.env.BENCH_WAN_WINDOW_MIB ? Number(process.env.BENCH_WAN_WINDOW_MIB) * 1048576 : undefined;
const RUNTIMES = (process.env.BENCH_RUNTIMES ?? "node,deno").split(",");
const CIPHER = "aes256-gcm@openssh.com";
/**
 * `stat` loops during a watched transfer, each pausing 10-30 ms at random between stats: some 150
 * stats in a 1 s transfer at +50 ms, so the p99 is not merely the slowest of a few dozen, and loops
 * that waited in the same queue do not come back in step (4 loops every 20 ms did: one delay, four
 * samples).
 */
const STAT_LOOPS = 12;

/** One runtime's agent at one delay. */
interface AgentFigures {
  up: number;
  down: number;
  /** The timed legs' CPU by process. */
  cpuUp: LegCpu;
  cpuDown: LegCpu;
  /** Largest in-flight bytes the agent reported for the attachment, up and down. */
  windowUp: number;
  windowDown: number;
  /** A `stat`'s round trips (ms) during the agent's upload and download. */
  statUpMs: number[];
  statDownMs: number[];
  /** A `stat`'s round trips (ms) with nothing else running: the link and the machine alone. */
  statIdleMs: number[];
  /** What else delays a stat: a meta ping on a direct connection (no relay) meanwhile, and the relay's lateness. */
  besideUp: Beside;
  besideDown: Beside;
}

/**
 * Beside a watched transfer, what a small request waits for besides the link and the transfer's
 * queue: the machine (a meta ping's round trips to the same agent on a direct connection, at the
 * same time) and the relay (how late its timers passed chunks on).
 */
interface Beside {
  pingMs: number[];
  relayLate: Lateness;
}

/** One delay: ssh's figures and each runtime's agent's. */
interface Figures {
  sshUp: number;
  sshDown: number;
  agents: Map<string, AgentFigures>;
}

/** bench/relay.ts in its own process: its port, and how late it passed chunks on since the last ask. */
interface RelayProcess {
  port: number;
  child: ChildProcess;
  lateness(): Promise<Lateness>;
}

/** Starts bench/relay.ts in its own process in front of `targetPort`; resolves once it listens. */
async function startRelay(targetPort: number, rttMs: number): Promise<RelayProcess> {
  const child = spawn(process.execPath, [
    "--import",
    "tsx",
    path.join(ROOT, "bench/relay.ts"),
    "0",
    String(targetPort),
    String(rttMs),
  ], {
    stdio: ["ignore", "pipe", "inherit"],
    cwd: ROOT,
  });
  const asked: Array<(late: Lateness) => void> = [];
  const port = await new Promise<number>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (d) => {
      text += d;
      for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n")) {
        const line = text.slice(0, end);
        text = text.slice(end + 1);
        const listening = /^relay listening on (\d+)/.exec(line), late = /^relay lateness (.*)/.exec(line);
        if (listening) resolve(Number(listening[1]));
        if (late) asked.shift()?.(JSON.parse(late[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`the relay exited (${code})`)));
  });
  const lateness = () =>
    new Promise<Lateness>((resolve) => {
      asked.push(resolve);
      child.kill("SIGUSR2");
    });
  return { port, child, lateness };
}

const mbps = (seconds: number) => (MIB * 1.048576) / seconds;

/** The processes a leg's bytes pass through, besides this one (the client). */
interface LegPids {
  agent: number;
  relay: number;
}

/** A timed leg's CPU-seconds per GiB by process, and how many of the machine's cores were busy. */
interface LegCpu {
  client: number;
  agent: number;
  hosts: number;
  relay: number;
  busyCores: number;
}

/** How long `work` takes, in seconds. */
async function seconds(work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  return (performance.now() - t0) / 1000;
}

/**
 * Runs `work` {@link LEGS} times, each after `before` (untimed) and within what `meter` starts (it
 * returns the step that ends it); the seconds each run took.
 */
async function repeated(
  work: () => Promise<unknown>,
  before: () => Promise<unknown> = async () => {},
  meter: () => () => void = () => () => {},
): Promise<number[]> {
  const took: number[] = [];
  for (let i = 0; i < LEGS; i++) {
    await before();
    const stop = meter();
    took.push(await seconds(work));
    stop();
  }
  return took;
}

/** `work`'s MB/s: the median of {@link repeated} runs. */
async function timed(work: () => Promise<unknown>, before?: () => Promise<unknown>): Promise<number> {
  return mbps(median(await repeated(work, before)));
}

/**
 * Times `work` as {@link timed} does, with each process's CPU per GiB over all its runs: what
 * stands in the way at each delay.
 */
async function metered(
  work: () => Promise<unknown>,
  pids: LegPids,
  before?: () => Promise<unknown>,
): Promise<{ mbps: number; cpu: LegCpu }> {
  const used = { client: 0, agent: 0, hosts: 0, relay: 0, machine: 0 };
  const took = await repeated(work, before, () => {
    const since = startMeters({
      client: () => cpuSeconds("self"),
      agent: () => cpuSeconds(pids.agent),
      hosts: () => treeCpu(pids.agent),
      relay: () => cpuSeconds(pids.relay),
      machine: machineCpuSeconds,
    });
    return () => {
      for (const [k, v] of Object.entries(since(1))) used[k as keyof typeof used] += v;
    };
  });
  const gib = (MIB / 1024) * LEGS;
  return {
    mbps: mbps(median(took)),
    cpu: {
      client: used.client / gib,
      agent: used.agent / gib,
      hosts: used.hosts / gib,
      relay: used.relay / gib,
      busyCores: used.machine / took.reduce((a, b) => a + b, 0),
    },
  };
}

/**
 * Reads `file` a MiB at a time into one buffer, refilled once the next piece is asked for (writeFile
 * copies each piece into its own buffers): reads that neither block this process's event loop,
 * which also times the small requests, nor fault in new memory for every piece.
 */
async function* fileChunks(file: string): AsyncGenerator<Uint8Array> {
  const handle = await fs.promises.open(file, "r");
  const buffer = new Uint8Array(1024 * 1024);
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/**
 * While `work` runs: the agent's largest in-flight window for any attachment (its status every
 * 100 ms), a `stat`'s round trips ({@link STAT_LOOPS} loops, 10-30 ms apart), and a meta
 * ping's on `direct`, a connection to the same agent without the relay (one loop, every 20 ms).
 */
async function watched(session: RemoteSession, direct: Agent, stateDir: string, work: () => Promise<unknown>) {
  let running = true, window = 0;
  const statMs: number[] = [], pingMs: number[] = [];
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const windows = (async () => {
    for (; running; await pause(100)) {
      const status = await requestControl(controlPath(stateDir), "status") as AgentStatus;
      // The window the client reported; an older agent shows only what reached it.
      for (const s of status.sessions) {
        for (const a of s.attachments ?? []) window = Math.max(window, a.windowBytes ?? a.inFlightBytes);
      }
    }
  })();
  const stats = Array.from({ length: STAT_LOOPS }, async () => {
    for (await pause(Math.random() * 20); running; await pause(10 + Math.random() * 20)) {
      const t0 = performance.now();
      await session.files.stat(".");
      if (running) statMs.push(performance.now() - t0);
    }
  });
  const pings = (async () => {
    for (; running; await pause(20)) {
      const { rttMs } = await direct.ping();
      if (running) pingMs.push(rttMs);
    }
  })();
  await work();
  running = false;
  await Promise.all([windows, pings, ...stats]);
  return { window, statMs, pingMs };
}

/** `session`'s upload of `src` and download to `dst`. */
function legs(session: RemoteSession, src: string, dst: string) {
  const options = { maxWindowBytes: WINDOW };
  // Untimed, before each upload: each writes a new file, as ssh's `cat > f` to a new name does
  // (truncating the last upload's 128 MiB held the open up 30-40 ms here).
  const removeLast = async () => {
    if (await session.files.exists("wan.bin")) await session.files.delete("wan.bin");
  };
  const up = () => session.files.writeFile("wan.bin", fileChunks(src), options);
  const down = async () => {
    const fd = fs.openSync(dst, "w");
    for await (const c of session.files.readStream("wan.bin", { reuseChunks: true, ...options })) fs.writeSync(fd, c);
    fs.closeSync(fd);
  };
  return { removeLast, up, down };
}

/** How the bench reaches one agent: through `relay`, and directly on `agentPort`, with `key`. */
interface AgentLink {
  relay: RelayProcess;
  agentPort: number;
  stateDir: string;
  key: string;
}

/** Up and down timed alone on one connection, then each again on a fresh one with {@link watched} looking on. */
async function agentLegs(link: AgentLink, src: string, dst: string, pids: LegPids) {
  const agent = await connect({ host: "127.0.0.1", port: link.relay.port, key: link.key });
  try {
    const s = await agent.openSession("bench");
    const statIdleMs: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      await s.files.stat(".");
      statIdleMs.push(performance.now() - t0);
    }
    const timedLegs = legs(s, src, dst);
    const up = await metered(timedLegs.up, pids, timedLegs.removeLast), down = await metered(timedLegs.down, pids);
    await s.close();
    const watchedUp = await watchedLeg(link, "up", src, dst);
    const watchedDown = await watchedLeg(link, "down", src, dst);
    return { up, down, watchedUp, watchedDown, statIdleMs };
  } finally {
    agent.close();
  }
}

/** One leg on a fresh connection (its window starts from nothing learned), with {@link watched} looking on. */
async function watchedLeg(link: AgentLink, leg: "up" | "down", src: string, dst: string) {
  const agent = await connect({ host: "127.0.0.1", port: link.relay.port, key: link.key });
  const direct = await connect({ host: "127.0.0.1", port: link.agentPort, key: link.key });
  try {
    const s = await agent.openSession("bench");
    const l = legs(s, src, dst);
    if (leg === "up") await l.removeLast();
    await link.relay.lateness(); // from here on
    const { window, statMs, pingMs } = await watched(s, direct, link.stateDir, l[leg]);
    const beside: Beside = { pingMs, relayLate: await link.relay.lateness() };
    await s.close();
    return { window, statMs, beside };
  } finally {
    agent.close();
    direct.close();
  }
}

/** ssh's options for the peer through the relay at `port` (the relay's port is not in known_hosts). */
function sshBase(peer: Peer, port: number): string[] {
  return [
    "-F",
    peer.config,
    "-o",
    `Port=${port}`,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-c",
    CIPHER,
  ];
}

function sshRun(args: string[], stdin: string | "ignore", stdout: string | "ignore"): Promise<void> {
  const fdIn = stdin === "ignore" ? "ignore" : fs.openSync(stdin, "r");
  const fdOut = stdout === "ignore" ? "ignore" : fs.openSync(stdout, "w");
  const child = spawn("ssh", args, { stdio: [fdIn, fdOut, "inherit"] });
  return new Promise<void>((resolve, reject) =>
    child.once("exit", (code) => {
      if (typeof fdIn === "number") fs.closeSync(fdIn);
      if (typeof fdOut === "number") fs.closeSync(fdOut);
      code === 0 ? resolve() : reject(new Error(`ssh ${args.at(-1)} exited ${code}`));
    })
  );
}

async function sshLegs(peer: Peer, port: number, src: string, dst: string) {
  const control = path.join(os.tmpdir(), `wan-cm-${process.pid}`);
  const mux = [...sshBase(peer, port), "-o", `ControlPath=${control}`];
  const master = spawn("ssh", [...mux, "-o", "ControlMaster=yes", "-N", "peer"], { stdio: "ignore" });
  try {
    for (let i = 0; i < 100 && spawnSync("ssh", [...mux, "-O", "check", "peer"]).status !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const remote = `/tmp/wan-ssh-${process.pid}.bin`;
    const removeLast = () => sshRun([...mux, "peer", `rm -f ${remote}`], "ignore", "ignore");
    const up = await timed(() => sshRun([...mux, "peer", `cat > ${remote}`], src, "ignore"), removeLast);
    const down = await timed(() => sshRun([...mux, "peer", `cat ${remote}`], "ignore", dst));
    await sshRun([...mux, "peer", `rm -f ${remote}`], "ignore", "ignore");
    return { up, down };
  } finally {
    spawnSync("ssh", [...mux, "-O", "exit", "peer"], { stdio: "ignore" });
    master.kill();
  }
}

function sha256File(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** One runtime's agent through its own relay adding `rtt`. */
async function agentAtDelay(rtt: number, runtime: string, agent: BenchAgent, key: string, src: string) {
  const dst = `${src}.down`;
  const relay = await startRelay(agent.port, rtt);
  try {
    const pids = { agent: agent.child.pid!, relay: relay.child.pid! };
    const legs = await agentLegs({ relay, agentPort: agent.port, stateDir: agent.stateDir, key }, src, dst, pids);
    if (sha256File(dst) !== sha256File(src)) {
      throw new Error(`${runtime} agent download at +${rtt} ms: SHA-256 mismatch`);
    }
    return {
      up: legs.up.mbps,
      down: legs.down.mbps,
      cpuUp: legs.up.cpu,
      cpuDown: legs.down.cpu,
      windowUp: legs.watchedUp.window,
      windowDown: legs.watchedDown.window,
      statUpMs: legs.watchedUp.statMs,
      besideUp: legs.watchedUp.beside,
      besideDown: legs.watchedDown.beside,
      statIdleMs: legs.statIdleMs,
      statDownMs: legs.watchedDown.statMs,
    } satisfies AgentFigures;
  } finally {
    relay.child.kill();
    fs.rmSync(dst, { force: true });
  }
}

async function oneDelay(rtt: number, agents: Map<string, BenchAgent>, key: string, peer: Peer, src: string) {
  const dst = `${src}.down`;
  const figures: Figures = { sshUp: 0, sshDown: 0, agents: new Map() };
  for (const [runtime, agent] of agents) figures.agents.set(runtime, await agentAtDelay(rtt, runtime, agent, key, src));
  const relay = await startRelay(peer.port, rtt);
  try {
    const ssh = await sshLegs(peer, relay.port, src, dst);
    if (sha256File(dst) !== sha256File(src)) throw new Error(`ssh download at +${rtt} ms: SHA-256 mismatch`);
    return { ...figures, sshUp: ssh.up, sshDown: ssh.down };
  } finally {
    relay.child.kill();
    fs.rmSync(dst, { force: true });
  }
}

const p99 = (ms: number[]) => (ms.length ? quantile(ms, 0.99).toFixed(0) : "-");
const p50 = (ms: number[]) => (ms.length ? quantile(ms, 0.5).toFixed(0) : "-");

function reportTable(runtime: string, figures: Map<number, Figures>) {
  const mib = (b: number) => (b / 1048576).toFixed(1);
  const rows = [[
    `${runtime}: round trip added`,
    "agent up",
    "ssh up",
    "agent/ssh",
    "agent down",
    "ssh down",
    "agent/ssh",
    "window up/down MiB",
    "stat ms idle/up/down p50",
    "p99",
  ]];
  for (const [rtt, f] of figures) {
    const a = f.agents.get(runtime)!;
    rows.push([
      `+${rtt} ms`,
      a.up.toFixed(0),
      f.sshUp.toFixed(0),
      ratio(a.up, f.sshUp),
      a.down.toFixed(0),
      f.sshDown.toFixed(0),
      ratio(a.down, f.sshDown),
      `${mib(a.windowUp)}/${mib(a.windowDown)}`,
      `${p50(a.statIdleMs)}/${p50(a.statUpMs)}/${p50(a.statDownMs)}`,
      `${p99(a.statIdleMs)}/${p99(a.statUpMs)}/${p99(a.statDownMs)}`,
    ]);
  }
  table(rows);
}

/** Where each timed leg's CPU went: a delay whose cores are nearly all busy is bound by CPU, not by its window. */
function reportCpu(runtime: string, figures: Map<number, Figures>) {
  const one = (c: LegCpu) =>
    `client ${c.client.toFixed(2)}, agent ${c.agent.toFixed(2)}, host ${c.hosts.toFixed(2)}, relay ${
      c.relay.toFixed(2)
    }; ${c.busyCores.toFixed(2)} of ${os.cpus().length} cores busy`;
  console.log(`  ${runtime}: CPU-s/GiB of the timed legs by process, and the machine's busy cores`);
  for (const [rtt, f] of figures) {
    const a = f.agents.get(runtime)!;
    console.log(`    +${rtt} ms up: ${one(a.cpuUp)}\n    +${rtt} ms down: ${one(a.cpuDown)}`);
  }
}

/** What else a watched leg's `stat` waited for: the machine (a direct meta ping beside it) and the relay's lateness. */
function beside(leg: string, b: Beside): string {
  const ms = (q: number) => (b.pingMs.length ? quantile(b.pingMs, q).toFixed(1) : "-");
  const late = b.relayLate;
  return `      ${leg}, beside the stats: a meta ping on a direct connection p50 ${ms(0.5)} p99 ${ms(0.99)} ms ` +
    `(${b.pingMs.length}); the relay's timers late p50 ${late.p50.toFixed(1)} p99 ${late.p99.toFixed(1)} ms ` +
    `a pass (${late.n} chunks)`;
}

function report(run: number, figures: Map<number, Figures>) {
  const base = figures.get(RTTS[0])!;
  console.log(
    `\n  run ${run}: MB/s, ${MIB} MiB file to file, the median of ${LEGS} timed legs each; ` +
      "ssh's figures are the same run's, shared by the runtimes",
  );
  for (const runtime of RUNTIMES) {
    reportTable(runtime, figures);
    reportCpu(runtime, figures);
  }
  for (const [rtt, f] of figures) {
    if (rtt === RTTS[0]) continue;
    const target = rtt === 50 ? "  (targets at +50: agent/ssh ≥ 2× each way, agent ≥ 0.60× its +2 ms)" : "";
    console.log(
      `  +${rtt} ms over +${RTTS[0]} ms (baseline): ssh up ${ratio(f.sshUp, base.sshUp)}, down ${
        ratio(f.sshDown, base.sshDown)
      }${target}`,
    );
    for (const [runtime, a] of f.agents) {
      const b = base.agents.get(runtime)!;
      console.log(
        `    ${runtime}: agent up ${ratio(a.up, b.up)}, down ${ratio(a.down, b.down)}; stat p99 ${
          p99(a.statUpMs)
        } ms during the upload (${a.statUpMs.length} stats), ${
          p99(a.statDownMs)
        } ms during the download (${a.statDownMs.length}), ${p99(a.statIdleMs)} ms alone (target ≤ ${
          rtt + 20
        } ms: one round trip plus 20)`,
      );
      console.log(`${beside("up", a.besideUp)}\n${beside("down", a.besideDown)}`);
    }
  }
}

export async function benchWan(): Promise<void> {
  console.log(
    `\nwan: ${MIB} MiB through a relay adding a round trip, agent (${
      RUNTIMES.join(", ")
    }) vs ssh (${CIPHER}, multiplexed), ${RUNS} run(s)`,
  );
  const peer = startPeer();
  if (!peer) return void console.log(`  skipped: ${NO_PEER}`);
  console.log(`  ${describePeer(peer)}`);
  const src = path.join(os.tmpdir(), `wan-src-${process.pid}.bin`);
  fs.writeFileSync(src, crypto.randomBytes(MIB * 1024 * 1024));
  const key = generateKey();
  const agents = new Map<string, BenchAgent>();
  try {
    for (const r of RUNTIMES) agents.set(r, await startBenchAgent(AGENT_COMMANDS[r], key.hex));
    for (let run = 1; run <= RUNS; run++) {
      console.log(
        `  run ${run}: load average ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
      );
      const figures = new Map<number, Figures>();
      for (const rtt of RTTS) figures.set(rtt, await oneDelay(rtt, agents, key.hex, peer, src));
      report(run, figures);
    }
  } finally {
    for (const a of agents.values()) await a.stop();
    fs.rmSync(src, { force: true });
  }
}
