/**
 * Long links: BENCH_WAN_MIB (default 128) MiB file to file through bench/relay.ts, which adds a
 * round trip of 2 (the baseline), 20 and 50 ms, no loss, no bandwidth cap. The agent (Node build)
 * with `writeFile` and `readStream`; OpenSSH, the peer from /work/shared/peer (its sshd.sh must be
 * running), `ssh -c aes256-gcm@openssh.com` over a multiplexing master through the same relay,
 * with plain redirects (`'cat > f' < SRC`, `'cat f' > DST`). The agent's legs are timed alone, then
 * run again while the bench polls `agent status` for the attachment's largest in-flight window and
 * times a `stat` every 20 ms (those runs are not timed: polling costs the agent CPU). Ratios name their baseline: agent/ssh at the same delay, and each at +N ms over
 * itself at +2 ms. BENCH_WAN_RUNS (default 1) repeats the whole set.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import type { RemoteSession } from "../core/client/remote-session.ts";
import { controlPath, requestControl } from "../agent/control.ts";
import type { AgentStatus } from "../agent/server.ts";
import { startBenchAgent } from "./agent.ts";
import { quantile, ratio, table } from "./stats.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MIB = Number(process.env.BENCH_WAN_MIB ?? 128);
const RUNS = Number(process.env.BENCH_WAN_RUNS ?? 1);
const RTTS = (process.env.BENCH_WAN_RTTS ?? "2,20,50").split(",").map(Number);
/** BENCH_WAN_WINDOW_MIB caps the agent's window (2: the fixed window before auto-tuning). */
const WINDOW = process.env.BENCH_WAN_WINDOW_MIB ? Number(process.env.BENCH_WAN_WINDOW_MIB) * 1048576 : undefined;
const PEER = process.env.PEER_SSHD_DIR ?? "/tmp/peer-sshd";
const CIPHER = "aes256-gcm@openssh.com";

interface Figures {
  agentUp: number;
  agentDown: number;
  sshUp: number;
  sshDown: number;
  /** Largest in-flight bytes the agent reported for the attachment, up and down. */
  windowUp: number;
  windowDown: number;
  /** A `stat`'s round trips (ms) during the agent's upload and download. */
  statUpMs: number[];
  /** A `stat`'s round trips (ms) with nothing else running: the link and the machine alone. */
  statIdleMs: number[];
  statDownMs: number[];
}

/** Starts bench/relay.ts in its own process in front of `targetPort`; resolves with its port. */
async function startRelay(targetPort: number, rttMs: number): Promise<{ port: number; child: ChildProcess }> {
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
  const port = await new Promise<number>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (d) => {
      text += d;
      const m = /relay listening on (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`the relay exited (${code})`)));
  });
  return { port, child };
}

const mbps = (seconds: number) => (MIB * 1.048576) / seconds;

async function timed(work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  return mbps((performance.now() - t0) / 1000);
}

/** Reads `file` in 8 MiB pieces. */
async function* fileChunks(file: string): AsyncGenerator<Uint8Array> {
  const fd = fs.openSync(file, "r");
  try {
    for (;;) {
      const buf = new Uint8Array(8 * 1024 * 1024);
      const n = fs.readSync(fd, buf);
      if (n === 0) return;
      yield buf.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * While `work` runs: the agent's largest in-flight window for any attachment (its status every
 * 100 ms) and a `stat`'s round trips (one every 20 ms).
 */
async function watched(session: RemoteSession, stateDir: string, work: () => Promise<unknown>) {
  let running = true, window = 0;
  const statMs: number[] = [];
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const windows = (async () => {
    for (; running; await pause(100)) {
      const status = await requestControl(controlPath(stateDir), "status") as AgentStatus;
      for (const s of status.sessions) for (const a of s.attachments ?? []) window = Math.max(window, a.inFlightBytes);
    }
  })();
  const stats = (async () => {
    for (; running; await pause(20)) {
      const t0 = performance.now();
      await session.files.stat(".");
      if (running) statMs.push(performance.now() - t0);
    }
  })();
  await work();
  running = false;
  await Promise.all([windows, stats]);
  return { window, statMs };
}

/** Up and down timed alone, then again with {@link watched} looking on. */
async function agentLegs(port: number, stateDir: string, key: string, src: string, dst: string) {
  const agent = await connect({ host: "127.0.0.1", port, key });
  try {
    const s = await agent.openSession("bench");
    const options = { maxWindowBytes: WINDOW };
    const up = () => s.files.writeFile("wan.bin", fileChunks(src), options);
    const down = async () => {
      const fd = fs.openSync(dst, "w");
      for await (const c of s.files.readStream("wan.bin", { reuseChunks: true, ...options })) fs.writeSync(fd, c);
      fs.closeSync(fd);
    };
    const statIdleMs: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      await s.files.stat(".");
      statIdleMs.push(performance.now() - t0);
    }
    const upMbps = await timed(up), downMbps = await timed(down);
    const watchedUp = await watched(s, stateDir, up), watchedDown = await watched(s, stateDir, down);
    await s.files.delete("wan.bin");
    await s.close();
    return { upMbps, downMbps, watchedUp, watchedDown, statIdleMs };
  } finally {
    agent.close();
  }
}

function sshBase(port: number): string[] {
  return [
    "-F",
    path.join(PEER, "ssh_config"),
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

async function sshLegs(port: number, src: string, dst: string) {
  const control = path.join(os.tmpdir(), `wan-cm-${process.pid}`);
  const mux = [...sshBase(port), "-o", `ControlPath=${control}`];
  const master = spawn("ssh", [...mux, "-o", "ControlMaster=yes", "-N", "peer"], { stdio: "ignore" });
  try {
    for (let i = 0; i < 100 && spawnSync("ssh", [...mux, "-O", "check", "peer"]).status !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const remote = `/tmp/wan-ssh-${process.pid}.bin`;
    const up = await timed(() => sshRun([...mux, "peer", `cat > ${remote}`], src, "ignore"));
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

async function oneDelay(rtt: number, agentPort: number, stateDir: string, key: string, sshPort: number, src: string) {
  const dst = `${src}.down`;
  const want = sha256File(src);
  const agentRelay = await startRelay(agentPort, rtt);
  const sshRelay = await startRelay(sshPort, rtt);
  try {
    const agent = await agentLegs(agentRelay.port, stateDir, key, src, dst);
    if (sha256File(dst) !== want) throw new Error(`agent download at +${rtt} ms: SHA-256 mismatch`);
    const ssh = await sshLegs(sshRelay.port, src, dst);
    if (sha256File(dst) !== want) throw new Error(`ssh download at +${rtt} ms: SHA-256 mismatch`);
    return {
      agentUp: agent.upMbps,
      agentDown: agent.downMbps,
      sshUp: ssh.up,
      sshDown: ssh.down,
      windowUp: agent.watchedUp.window,
      windowDown: agent.watchedDown.window,
      statUpMs: agent.watchedUp.statMs,
      statIdleMs: agent.statIdleMs,
      statDownMs: agent.watchedDown.statMs,
    } satisfies Figures;
  } finally {
    agentRelay.child.kill();
    sshRelay.child.kill();
    fs.rmSync(dst, { force: true });
  }
}

const p99 = (ms: number[]) => (ms.length ? quantile(ms, 0.99).toFixed(0) : "-");
const p50 = (ms: number[]) => (ms.length ? quantile(ms, 0.5).toFixed(0) : "-");

function report(run: number, figures: Map<number, Figures>) {
  const mib = (b: number) => (b / 1048576).toFixed(1);
  const base = figures.get(RTTS[0])!;
  console.log(`\n  run ${run}: MB/s, ${MIB} MiB file to file`);
  const rows = [[
    "round trip added",
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
    rows.push([
      `+${rtt} ms`,
      f.agentUp.toFixed(0),
      f.sshUp.toFixed(0),
      ratio(f.agentUp, f.sshUp),
      f.agentDown.toFixed(0),
      f.sshDown.toFixed(0),
      ratio(f.agentDown, f.sshDown),
      `${mib(f.windowUp)}/${mib(f.windowDown)}`,
      `${p50(f.statIdleMs)}/${p50(f.statUpMs)}/${p50(f.statDownMs)}`,
      `${p99(f.statIdleMs)}/${p99(f.statUpMs)}/${p99(f.statDownMs)}`,
    ]);
  }
  table(rows);
  for (const [rtt, f] of figures) {
    if (rtt === RTTS[0]) continue;
    console.log(
      `  +${rtt} ms over +${RTTS[0]} ms (baseline): agent up ${ratio(f.agentUp, base.agentUp)}, down ${
        ratio(f.agentDown, base.agentDown)
      }; ssh up ${ratio(f.sshUp, base.sshUp)}, down ${ratio(f.sshDown, base.sshDown)}` +
        (rtt === 50 ? "  (targets at +50: agent/ssh ≥ 2× each way, agent ≥ 0.60× its +2 ms)" : ""),
    );
    console.log(
      `  +${rtt} ms: stat p99 ${p99(f.statUpMs)} ms during the agent's upload, ${
        p99(f.statDownMs)
      } ms during its download, ${p99(f.statIdleMs)} ms alone (target ≤ ${rtt + 20} ms: one round trip plus 20)`,
    );
  }
}

export async function benchWan(agentProgram: string): Promise<void> {
  console.log(
    `\nwan: ${MIB} MiB through a relay adding a round trip, agent vs ssh (${CIPHER}, multiplexed), ${RUNS} run(s)`,
  );
  const sshPort = Number(fs.existsSync(path.join(PEER, "port")) ? fs.readFileSync(path.join(PEER, "port"), "utf8") : 0);
  if (!sshPort) return void console.log("  skipped: the peer's sshd is not running (bash /work/shared/peer/sshd.sh)");
  const src = path.join(os.tmpdir(), `wan-src-${process.pid}.bin`);
  fs.writeFileSync(src, crypto.randomBytes(MIB * 1024 * 1024));
  const key = generateKey();
  const bench = await startBenchAgent(agentProgram, key.hex);
  try {
    for (let run = 1; run <= RUNS; run++) {
      const figures = new Map<number, Figures>();
      for (const rtt of RTTS) figures.set(rtt, await oneDelay(rtt, bench.port, bench.stateDir, key.hex, sshPort, src));
      report(run, figures);
    }
  } finally {
    await bench.stop();
    fs.rmSync(src, { force: true });
  }
}
