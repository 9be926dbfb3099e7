/**
 * Bulk transfer next to OpenSSH at its best, in the same run, on both runtimes:
 *
 *   throughput   upload and download of BENCH_TRANSFER_MIB (default 1024) MiB, SHA-256 checked on
 *                both ends, twice (ROUNDS: the faster round counts, the agent's first is shown too):
 *                the agent through writeFile / readStream (reuseChunks: each chunk is hashed and done
 *                with before the next) with the host's digest as the bytes pass,
 *                the file deleted at the end of the download as ssh's `rm -f` does;
 *                ssh likewise, `tee f | openssl dgst -sha256` up and `tee` from f into stdout and
 *                openssl down (openssl: coreutils' sha256sum is 6× slower here), with each fast cipher
 *                (no multiplexing: a master would add a hop), the faster one kept
 *   CPU          CPU-seconds per GiB of each process: the bench (client), agent and host; ssh; and the
 *                machine's busy time, from which sshd's side (sshd, tee, openssl, the kernel) follows;
 *                a transport's total is the machine's time less making and hashing the data, timed alone
 *   limits       what this machine does alone: openssl AES-256-GCM and SHA-256, loopback TCP
 *   stages       each per-byte stage timed alone (bench/stages.ts) and the sum along each path,
 *                next to the measured total, so the gap to the limit is visible
 *
 * The OpenSSH columns need the loopback sshd from bench/sshd.sh.
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { AGENT_COMMANDS, DENO, startBenchAgent } from "./agent.ts";
import { cpuSeconds, machineCpuSeconds } from "./proc.ts";
import { CIPHERS, findSsh, NO_SSH, type Ssh, SSH_DIR, SSH_PORT } from "./ssh.ts";
import { ratio, table } from "./stats.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const TRANSFER_MIB = Number(process.env.BENCH_TRANSFER_MIB ?? 1024);
const GIB = TRANSFER_MIB / 1024;

/** One direction's figures: MB/s and CPU-seconds per GiB by process. */
interface Leg {
  mbps: number;
  cpu: Record<string, number>;
}

/** `mib` MiB of incompressible data in 8 MiB pieces, hashed as it is produced. */
export function* source(mib: number, hash: crypto.Hash): Generator<Uint8Array> {
  const block = crypto.randomBytes(8 * 1024 * 1024);
  for (let i = 0; i < Math.max(1, mib / 8); i++) {
    block[0] = i & 255; // every piece differs
    hash.update(block);
    yield block;
  }
}

const mbps = (seconds: number) => (TRANSFER_MIB * 1.048576) / seconds;

/** Runs `work` and returns its MB/s and each named counter's CPU-seconds per GiB. */
async function measured(processes: Record<string, () => number>, work: () => Promise<void>): Promise<Leg> {
  const before = Object.fromEntries(Object.entries(processes).map(([k, f]) => [k, f()]));
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  await settle();
  const cpu = Object.fromEntries(Object.entries(processes).map(([k, f]) => [k, (f() - before[k]) / GIB]));
  return { mbps: mbps(seconds), cpu };
}

/** Waits for sshd's processes of the last connection to end, so the machine's count includes their last work. */
async function settle(): Promise<void> {
  const pid = sshdPid();
  for (let i = 0; i < 50 && pid && fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim() !== ""; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

function sshdPid(): number | null {
  try {
    return Number(fs.readFileSync(path.join(SSH_DIR, "sshd.pid"), "utf8").trim()) || null;
  } catch {
    return null;
  }
}

/** One round: an upload, then a download of the same file. */
interface Round {
  up: Leg;
  down: Leg;
}

/**
 * Every transport moves the data this many times and is credited with its faster round each way. The
 * agent's rounds run in one session: the first is a fresh agent's and host's first transfer, which
 * also pays for V8 compiling the hot paths (measured: about 0.6 CPU-s in the agent alone), so it
 * is printed on its own row as well.
 */
const ROUNDS = 2;

/** The leg with the higher throughput. */
const faster = (legs: Leg[]): Leg => legs.reduce((a, b) => (a.mbps >= b.mbps ? a : b));
/** Each direction's faster leg over `rounds`. */
const fasterEachWay = (rounds: Round[]): Round => ({
  up: faster(rounds.map((r) => r.up)),
  down: faster(rounds.map((r) => r.down)),
});

async function agentRounds(command: string[]): Promise<Round[]> {
  const key = generateKey();
  const bench = await startBenchAgent(command, key.hex);
  const agent = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });
  const file = path.join(os.tmpdir(), `agent-bench-transfer-${process.pid}.bin`);
  try {
    const s = await agent.openSession("bench");
    const hostPid = (await s.system.info()).pid;
    const processes = {
      bench: () => cpuSeconds("self"),
      agent: () => cpuSeconds(bench.child.pid!),
      host: () => cpuSeconds(hostPid),
      machine: machineCpuSeconds,
    };
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const sent = crypto.createHash("sha256");
      let remote = "";
      const up = await measured(processes, async () => {
        await s.files.writeFile(file, source(TRANSFER_MIB, sent), { onSha256: (hex) => (remote = hex) });
      });
      const digest = sent.digest("hex");
      if (remote !== digest) throw new Error("upload: the host's SHA-256 differs from the client's");
      remote = "";
      const received = crypto.createHash("sha256");
      // Removed within the download, as ssh's round does: a later upload over the old file would pay
      // for truncating it and, at close, ext4 writing it back (up to 0.3 s each per GiB here), ssh's not.
      const down = await measured(processes, async () => {
        for await (const chunk of s.files.readStream(file, { onSha256: (hex) => (remote = hex), reuseChunks: true })) {
          received.update(chunk);
        }
        await s.files.delete(file);
      });
      if (received.digest("hex") !== digest || remote !== digest) throw new Error("download: SHA-256 mismatch");
      rounds.push({ up, down });
    }
    await s.close();
    return rounds;
  } finally {
    fs.rmSync(file, { force: true });
    agent.close();
    await bench.stop();
  }
}

async function sshRound(ssh: Ssh, cipher: string): Promise<Round> {
  const args = ["-p", SSH_PORT, "-c", cipher, ...ssh.options, ssh.host];
  const remote = `agent-bench-${process.pid}.bin`;
  // ssh is this process's child: its CPU is counted in ours once it has been waited for. sshd's
  // session processes are not all waited for by the listener, so the server side is the machine's
  // busy time less this process and ssh.
  const processes = {
    bench: () => cpuSeconds("self"),
    ssh: () => cpuSeconds("self", true) - cpuSeconds("self"),
    machine: machineCpuSeconds,
  };
  const sent = crypto.createHash("sha256");
  let remoteSum = "";
  const up = await measured(processes, async () => {
    const upload = spawn("ssh", [...args, `tee ${remote} | openssl dgst -sha256 -r`], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    upload.stdout!.on("data", (d) => (remoteSum += d));
    const exited = new Promise((r) => upload.once("exit", r));
    for (const block of source(TRANSFER_MIB, sent)) {
      if (!upload.stdin!.write(block)) await new Promise((r) => upload.stdin!.once("drain", r));
    }
    upload.stdin!.end();
    await exited;
  });
  const digest = sent.digest("hex");
  if (!remoteSum.startsWith(digest)) throw new Error("ssh upload: SHA-256 mismatch");
  const received = crypto.createHash("sha256");
  let sum = "";
  const down = await measured(processes, async () => {
    const download = spawn("ssh", [
      ...args,
      `{ tee /dev/fd/3 < ${remote} | openssl dgst -sha256 -r >&2; } 3>&1; rm -f ${remote}`,
    ], { stdio: ["ignore", "pipe", "pipe"] });
    download.stderr!.on("data", (d) => (sum += d));
    const exited = new Promise((r) => download.once("exit", r));
    for await (const c of download.stdout!) received.update(c);
    await exited;
  });
  if (received.digest("hex") !== digest || !sum.startsWith(digest)) throw new Error("ssh download: SHA-256 mismatch");
  return { up, down };
}

/** CPU-seconds per GiB the bench process spends on the data with no transport: making and hashing it (up), hashing it (down). */
function dataAlone(): { up: number; down: number } {
  const t0 = cpuSeconds("self");
  for (const _block of source(TRANSFER_MIB, crypto.createHash("sha256")));
  const t1 = cpuSeconds("self");
  const piece = crypto.randomBytes(512 * 1024), hash = crypto.createHash("sha256");
  for (let i = 0; i < TRANSFER_MIB * 2; i++) hash.update(piece);
  hash.digest();
  return { up: (t1 - t0) / GIB, down: (cpuSeconds("self") - t1) / GIB };
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

const f2 = (x: number) => x.toFixed(2);
/** The result row of ssh with `cipher`. */
const sshRow = (cipher: string) => `ssh ${cipher.split("@")[0]}`;

export async function benchTransfer(): Promise<void> {
  const ssh = findSsh();
  const runtimes = (process.env.BENCH_RUNTIMES ?? "node,deno").split(",");
  console.log(`\n== transfer: ${TRANSFER_MIB} MiB up and down, SHA-256 checked on both ends ==`);
  if (ssh) {
    console.log(
      `  peer: sshd on 127.0.0.1:${SSH_PORT}, user ${ssh.user}, shell ${ssh.shell}; one connection per transfer with each of ${
        CIPHERS.join(", ")
      }; the far end hashes with openssl as the bytes pass through tee`,
    );
  } else console.log(`  OpenSSH: ${NO_SSH}`);
  console.log(
    `  each transport runs ${ROUNDS} rounds (up, then down) and counts its faster round each way; the agent's rounds share one`,
  );
  console.log(
    "  fresh agent and session, and its first round, which includes V8 compiling the hot code, has its own row",
  );
  const results: Record<string, Round> = {};
  for (const r of runtimes) {
    const rounds = await agentRounds(AGENT_COMMANDS[r]);
    results[`agent on ${r}, first round`] = rounds[0];
    results[`agent on ${r}`] = fasterEachWay(rounds);
  }
  if (ssh) {
    for (const c of CIPHERS) {
      const rounds: Round[] = [];
      for (let i = 0; i < ROUNDS; i++) rounds.push(await sshRound(ssh, c));
      results[sshRow(c)] = fasterEachWay(rounds);
    }
  }

  // The bench process makes and hashes the data whatever carries it: that share, measured alone,
  // is no transport's. What it spends beyond it is the transport's: the client library, or reading
  // and writing ssh's pipes.
  const alone = dataAlone();
  const total = (leg: Leg, dir: "up" | "down") => leg.cpu.machine - alone[dir];
  const rows = [["", "MB/s", "CPU-s/GiB: bench process, each process of the transport", "transport total*"]];
  for (const dir of ["up", "down"] as const) {
    for (const [name, legs] of Object.entries(results)) {
      const { machine: _machine, ...each } = legs[dir].cpu;
      const shown = name.startsWith("ssh")
        ? { ...each, "sshd, tee, openssl, kernel": legs[dir].cpu.machine - each.bench - each.ssh }
        : each;
      rows.push([
        `${dir === "up" ? "upload" : "download"}, ${name}`,
        legs[dir].mbps.toFixed(0),
        Object.entries(shown).map(([k, v]) => `${k} ${f2(v)}`).join(", "),
        f2(total(legs[dir], dir)),
      ]);
    }
  }
  table(rows);
  console.log(
    "  * the machine's busy CPU during the transfer (every process and the kernel's loopback work) less what the bench",
  );
  console.log(
    `    process spends making and hashing the data alone (measured alone: up ${f2(alone.up)}, down ${
      f2(alone.down)
    }). The rest of the`,
  );
  console.log(
    "    bench process is the client library, or reading and writing ssh's pipes. sshd's side is the machine's time less",
  );
  console.log("    the bench process and ssh.");
  if (ssh) {
    for (const dir of ["up", "down"] as const) {
      const sshes = CIPHERS.map((c) => results[sshRow(c)][dir]);
      const fastest = faster(sshes);
      for (const r of runtimes) {
        const leg = results[`agent on ${r}`][dir], first = results[`agent on ${r}, first round`][dir];
        const versus = (l: Leg) =>
          `MB/s agent / faster ssh ${ratio(l.mbps, fastest.mbps)}, transport CPU agent / ssh aes-gcm ${
            ratio(total(l, dir), total(sshes[0], dir))
          }`;
        console.log(
          `  ${dir === "up" ? "upload" : "download"} on ${r}: ${
            versus(leg)
          } (targets: Node ≥ 1.2×, Deno ≥ 1×; CPU ≤ 0.9×); first round ${versus(first)}`,
        );
      }
    }
  }

  const aes = opensslPerGiB("aes-256-gcm"), sha = opensslPerGiB("sha256");
  console.log(
    `  machine limits (one core): openssl AES-256-GCM ${f2(aes)} CPU-s/GiB (${
      (1.073741824 / aes).toFixed(2)
    } GB/s), openssl SHA-256 ${f2(sha)} CPU-s/GiB`,
  );
  const stageRows = [["stage, CPU-s/GiB (bench/stages.ts)", ...runtimes]];
  const stages = Object.fromEntries(runtimes.map((r) => [r, stagesUnder(r)]));
  for (const name of Object.keys(stages[runtimes[0]])) {
    stageRows.push([
      name,
      ...runtimes.map((r) => f2(stages[r][name])),
    ]);
  }
  // Along one direction: the hash at the far end, one seal and one open, the socket, one ring pass, the disk.
  const path1 = (s: Record<string, number>, disk: string) =>
    s["SHA-256"] + s.encrypt + s.decrypt + s["loopback TCP (both ends)"] + s.ring + s[disk];
  stageRows.push(["sum along an upload", ...runtimes.map((r) => f2(path1(stages[r], "file write")))]);
  stageRows.push([
    "measured upload, transport total",
    ...runtimes.map((r) => f2(total(results[`agent on ${r}`].up, "up"))),
  ]);
  stageRows.push(["sum along a download", ...runtimes.map((r) => f2(path1(stages[r], "file read")))]);
  stageRows.push([
    "measured download, transport total",
    ...runtimes.map((r) => f2(total(results[`agent on ${r}`].down, "down"))),
  ]);
  table(stageRows);
  console.log(
    "  the sums count the far end's SHA-256 once, like the transport total; what the measured total has beyond",
  );
  console.log("  the sum is the rest: message handling, event loops, wake-ups, allocation, garbage collection");
}
