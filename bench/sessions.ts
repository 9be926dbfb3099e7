/**
 * Session benchmarks, each next to its peer in the same run:
 *
 *   product round trip   client → agent → host → back, next to meta ping on the same connection
 *   remote `true`        process start to exit on an open session, next to OpenSSH's multiplexed `ssh host true`
 *   transfer             upload and download with SHA-256 on both ends, next to `ssh host 'cat > file'` and `ssh host cat file`
 *   host                 session open time (host process start) and a host's resident memory
 *
 * The OpenSSH column needs a loopback sshd: run `bench/sshd.sh` first (it prints how to stop it).
 * Without one the column says so and no ratio is printed.
 * @module
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Agent, connect } from "../mod.ts";
import { ServiceCode } from "../core/session/contract.ts";
import { median, quantile, ratio, table, us } from "./stats.ts";

const TRANSFER_MIB = Number(process.env.BENCH_TRANSFER_MIB ?? 1024);
const SSH_DIR = path.join(process.env.TMPDIR ?? "/tmp", "agent-bench-sshd");
const SSH_PORT = process.env.BENCH_SSH_PORT ?? "2222";

/** argv for ssh to the loopback bench sshd, or null when there is none. */
function sshArgs(): string[] | null {
  const key = path.join(SSH_DIR, "client_key");
  if (!fs.existsSync(key)) return null;
  const args = ["-p", SSH_PORT, "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"];
  const probe = spawnSync("ssh", [...args, "127.0.0.1", "true"], { timeout: 10_000 });
  return probe.status === 0 ? args : null;
}

const NO_SSH = "skipped: no sshd on 127.0.0.1:" + SSH_PORT + " (start one with bench/sshd.sh)";

export async function benchSessions(port: number, key: string, agentPid: number): Promise<void> {
  const agent = await connect({ host: "127.0.0.1", port, key });
  const ssh = sshArgs();
  try {
    await benchRoundTrip(agent);
    await benchRemoteTrue(agent, ssh);
    await benchTransfer(agent, ssh);
    await benchHost(agent, agentPid);
  } finally {
    agent.close();
  }
}

async function benchRoundTrip(agent: Agent) {
  const s = await agent.openSession("bench");
  const N = 3000;
  const product: number[] = [], meta: number[] = [];
  for (let i = 0; i < 300; i++) await s.call(ServiceCode.SystemProductRoot, {});
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < N / 2; i++) {
      const t0 = performance.now();
      await s.call(ServiceCode.SystemProductRoot, {});
      product.push(performance.now() - t0);
    }
    for (let i = 0; i < N / 2; i++) meta.push((await agent.ping()).rttMs);
  }
  console.log(`\nproduct message round trip, client → agent → host (mmap) → back (${N})`);
  table([["", "p50", "p99"], ["meta ping (agent only)", us(median(meta)), us(quantile(meta, 0.99))], ["product message (via host)", us(median(product)), us(quantile(product, 0.99))]]);
  console.log(`  the host hop adds ${us(median(product) - median(meta))} at p50 (target: product round trip under 200 µs p50)`);
  await s.close();
}

async function benchRemoteTrue(agent: Agent, ssh: string[] | null) {
  const s = await agent.openSession("bench");
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) await s.processes.run({ program: "true" });
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    const r = await s.processes.run({ program: "true" });
    runs.push(performance.now() - t0);
    if (r.code !== 0) throw new Error("remote true failed");
  }
  await s.close();
  console.log("\nremote `true` on an open session vs OpenSSH multiplexed exec");
  const rows = [["", "p50"], ["agent session", `${median(runs).toFixed(2)} ms`]];
  if (!ssh) {
    rows.push(["ssh -S (multiplexed)", NO_SSH]);
    table(rows);
    return;
  }
  const control = path.join(SSH_DIR, `ctl-${process.pid}`);
  const mux = [...ssh, "-o", `ControlPath=${control}`];
  const master = spawn("ssh", [...mux, "-o", "ControlMaster=yes", "-N", "127.0.0.1"], { stdio: "ignore" });
  try {
    for (let i = 0; i < 50 && spawnSync("ssh", [...mux, "-O", "check", "127.0.0.1"]).status !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const sshRuns: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      execFileSync("ssh", [...mux, "127.0.0.1", "true"]);
      sshRuns.push(performance.now() - t0);
    }
    rows.push(["ssh -S (multiplexed)", `${median(sshRuns).toFixed(2)} ms`]);
    table(rows);
    console.log(`  agent is ${ratio(median(sshRuns), median(runs))} faster than OpenSSH multiplexed (target: at least 20×)`);
  } finally {
    master.kill();
  }
}

/** `mib` MiB of incompressible data in 8 MiB pieces, hashed as it is produced. */
function* source(mib: number, hash: crypto.Hash) {
  const block = crypto.randomBytes(8 * 1024 * 1024);
  for (let i = 0; i < mib / 8; i++) {
    block[0] = i & 255; // every piece differs
    hash.update(block);
    yield block;
  }
}

async function benchTransfer(agent: Agent, ssh: string[] | null) {
  const s = await agent.openSession("bench");
  const remotePath = path.join(os.tmpdir(), `agent-bench-${process.pid}.bin`);
  const upHash = crypto.createHash("sha256");
  let t0 = performance.now();
  await s.files.writeFile(remotePath, source(TRANSFER_MIB, upHash));
  const remote = await s.files.sha256(remotePath);
  const upSeconds = (performance.now() - t0) / 1000;
  const upDigest = upHash.digest("hex");
  if (remote.sha256 !== upDigest) throw new Error("upload checksum mismatch");

  t0 = performance.now();
  const downHash = crypto.createHash("sha256");
  for await (const chunk of s.files.readStream(remotePath)) downHash.update(chunk);
  const downSeconds = (performance.now() - t0) / 1000;
  if (downHash.digest("hex") !== upDigest) throw new Error("download checksum mismatch");
  await s.close();

  const mbps = (sec: number) => (TRANSFER_MIB * 1.048576) / sec;
  console.log(`\n${TRANSFER_MIB} MiB transfer with SHA-256 checked on both ends (upload includes the remote checksum)`);
  const rows = [["", "upload MB/s", "download MB/s"], ["agent session", mbps(upSeconds).toFixed(0), mbps(downSeconds).toFixed(0)]];
  if (!ssh) {
    rows.push(["ssh cat", NO_SSH, ""]);
    table(rows);
  } else {
    const sshFile = remotePath + ".ssh";
    t0 = performance.now();
    const up = spawn("ssh", [...ssh, "127.0.0.1", `cat > ${sshFile}`], { stdio: ["pipe", "ignore", "inherit"] });
    for (const block of source(TRANSFER_MIB, crypto.createHash("sha256"))) {
      if (!up.stdin!.write(block)) await new Promise((r) => up.stdin!.once("drain", r));
    }
    up.stdin!.end();
    await new Promise((r) => up.once("exit", r));
    const sshUp = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const down = spawn("ssh", [...ssh, "127.0.0.1", `cat ${sshFile}`], { stdio: ["ignore", "pipe", "inherit"] });
    const h = crypto.createHash("sha256");
    for await (const c of down.stdout!) h.update(c);
    const sshDown = (performance.now() - t0) / 1000;
    fs.rmSync(sshFile, { force: true });
    rows.push(["ssh cat", mbps(sshUp).toFixed(0), mbps(sshDown).toFixed(0)]);
    table(rows);
    console.log(`  ratio agent/ssh: upload ${ratio(sshUp, upSeconds)}, download ${ratio(sshDown, downSeconds)}  (target: at least 3×)`);
  }
  fs.rmSync(remotePath, { force: true });
}

async function benchHost(agent: Agent, agentPid: number) {
  const opens: number[] = [];
  let hostRss = 0;
  for (let i = 0; i < 8; i++) {
    const t0 = performance.now();
    const s = await agent.openSession("bench");
    opens.push(performance.now() - t0);
    if (i === 7) {
      const pid = (await s.system.info()).pid;
      await new Promise((r) => setTimeout(r, 1000));
      hostRss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
    }
    await s.close();
  }
  const agentRss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${agentPid}/status`, "utf8"))![1]) / 1024;
  console.log("\nhost process");
  table([["", ""], ["session open (host start to ready), p50", `${median(opens).toFixed(0)} ms`], ["host resident memory, idle", `${hostRss.toFixed(1)} MiB`], ["agent resident memory after these runs", `${agentRss.toFixed(1)} MiB`]]);
}
