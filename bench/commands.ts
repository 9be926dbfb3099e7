/**
 * `agent run` and `agent cp`, the product side from the shell, next to the
 * OpenSSH tools an operator would otherwise use, in the same run:
 *
 *   run true     `agent run host -- true` vs `ssh host true`, fresh and multiplexed
 *   one file     `agent cp` up and down vs scp, sftp and `tar | ssh tar x` (BENCH_CP_MIB, default 1024)
 *   many files   1,000 files of 1 KiB, the same tools, recursive
 *
 * OpenSSH at its best: the project's peer (bench/peer.ts: shared/peer/sshd.sh, a neutral sshd with
 * internal-sftp and a shell that reads no startup files), ciphers aes256-gcm and chacha20-poly1305
 * with the faster one kept per tool, a multiplexing master where said. Every ratio is
 * "peer time / agent time" and names its peer. `agent cp` checks every file by SHA-256 on both
 * ends; the ssh tools check nothing beyond their transport MAC.
 * @module
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBenchAgent } from "./agent.ts";
import { CIPHERS, describePeer, freshArgs, muxMaster, NO_PEER, startPeer } from "./peer.ts";
import { median, ratio, table } from "./stats.ts";

const CP_MIB = Number(process.env.BENCH_CP_MIB ?? 1024);
const RUNS = Number(process.env.BENCH_RUN_COUNT ?? 15);

/** Wall time of one shell command line, in ms; throws when it fails. */
function timed(command: string): number {
  const t0 = performance.now();
  execFileSync("/bin/sh", ["-c", command], { stdio: ["ignore", "ignore", "inherit"], maxBuffer: 1 << 30 });
  return performance.now() - t0;
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export async function benchCommands(agentPath: string): Promise<void> {
  console.log("\n== agent run / agent cp vs OpenSSH tools ==");
  const peer = startPeer();
  if (!peer) {
    console.log(`  ${NO_PEER}`);
    return;
  }
  console.log(`  ${describePeer(peer)}`);
  console.log(`  peer ciphers: ${CIPHERS.join(", ")}; each transfer row keeps the faster`);

  const keyHex = crypto.randomBytes(32).toString("hex");
  const agent = await startBenchAgent(agentPath, keyHex);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-cp-"));
  const keyFile = path.join(work, "key");
  fs.writeFileSync(keyFile, keyHex, { mode: 0o600 });
  const agentCli = `${q(agentPath)}`;
  const target = `127.0.0.1:${agent.port}`;
  const agentRoot = path.join(agent.stateDir, "products/cli/work");
  const o = (cipher: string) => freshArgs(peer, cipher).map(q).join(" ");
  // The peer's files, on this machine: under the work directory, not root's home.
  const sshRoot = path.join(work, "ssh");
  fs.mkdirSync(sshRoot);
  const x = q(path.join(sshRoot, "x"));
  const control = path.join(work, "mux");
  const master = muxMaster(peer, control, CIPHERS[0]);
  try {
    // ---- run true -----------------------------------------------------------------------------
    const runs = { agent: [] as number[], fresh: [] as number[], mux: [] as number[] };
    const agentRun = `${agentCli} run ${target} --key-file ${q(keyFile)} -- true`;
    const sshFresh = `ssh ${o(CIPHERS[0])} peer true`;
    const sshMux = `ssh ${master.args.map(q).join(" ")} true`;
    timed(agentRun);
    for (let i = 0; i < RUNS; i++) {
      runs.agent.push(timed(agentRun));
      runs.fresh.push(timed(sshFresh));
      runs.mux.push(timed(sshMux));
    }
    table([
      ["remote `true`, p50 of " + RUNS, "ms"],
      ["agent run (new connection + session each time)", median(runs.agent).toFixed(1)],
      ["ssh host true (new connection each time)", median(runs.fresh).toFixed(1)],
      ["ssh -S host true (multiplexed)", median(runs.mux).toFixed(1)],
    ]);
    console.log(
      `  agent run vs fresh ssh: ${
        ratio(median(runs.fresh), median(runs.agent))
      } (target: above 1×); vs multiplexed ssh: ${ratio(median(runs.mux), median(runs.agent))}`,
    );

    // ---- transfers -----------------------------------------------------------------------------
    const big = path.join(work, "big.bin");
    execFileSync("/bin/sh", ["-c", `head -c ${CP_MIB * 1048576} /dev/urandom > ${q(big)}`]);
    const tree = path.join(work, "tree");
    for (let i = 0; i < 1000; i++) {
      const dir = path.join(tree, `d${i % 10}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `f${i}`), crypto.randomBytes(1024));
    }
    const clean = () => {
      fs.rmSync(path.join(agentRoot, "x"), { recursive: true, force: true });
      fs.rmSync(path.join(sshRoot, "x"), { recursive: true, force: true });
      fs.rmSync(path.join(work, "down"), { recursive: true, force: true });
      // Every tool starts with nothing waiting to be written back, so none pays for another's files.
      execFileSync("sync");
    };
    const sshTools = (cipher: string, recursive: boolean) => {
      const r = recursive ? "-r " : "";
      const src = recursive ? tree : big;
      const down = q(path.join(work, "down"));
      const sx = path.join(sshRoot, "x");
      return {
        scp: {
          up: `scp -q ${o(cipher)} ${r}${q(src)} peer:${x}`,
          down: `scp -q ${o(cipher)} ${r}peer:${x} ${down}`,
        },
        sftp: {
          up: `echo ${q(`put ${r}${src} ${sx}`)} | sftp -q ${o(cipher)} -b - peer >/dev/null`,
          down: `echo ${q(`get ${r}${sx} ${path.join(work, "down")}`)} | sftp -q ${o(cipher)} -b - peer >/dev/null`,
        },
        "tar | ssh tar x": {
          up: `tar -C ${q(path.dirname(src))} -cf - ${q(path.basename(src))} | ssh ${o(cipher)} peer ${
            q(`mkdir -p ${x} && tar -C ${x} -xf -`)
          }`,
          down: `mkdir -p ${down} && ssh ${o(cipher)} peer ${q(`tar -C ${x} -cf - .`)} | tar -C ${down} -xf -`,
        },
      };
    };
    for (
      const [label, recursive, rounds] of [["1,000 files of 1 KiB", true, 5], [
        `one file of ${CP_MIB} MiB`,
        false,
        1,
      ]] as const
    ) {
      const src = recursive ? tree : big;
      const agentUp = `${agentCli} cp --key-file ${q(keyFile)} ${recursive ? "-r " : ""}${q(src)} ${target}:x`;
      const agentDown = `${agentCli} cp --key-file ${q(keyFile)} ${recursive ? "-r " : ""}${target}:x ${
        q(path.join(work, "down"))
      }`;
      const results = new Map<string, { up: number[]; down: number[] }>();
      const measure = (name: string, up: string, down: string) => {
        const entry = results.get(name) ?? { up: [], down: [] };
        clean();
        entry.up.push(timed(up));
        execFileSync("sync");
        entry.down.push(timed(down));
        results.set(name, entry);
      };
      for (let round = 0; round < rounds; round++) {
        measure("agent cp", agentUp, agentDown);
        for (const cipher of CIPHERS) {
          for (const [tool, cmd] of Object.entries(sshTools(cipher, recursive))) {
            measure(`${tool} (${cipher.split("@")[0]})`, cmd.up, cmd.down);
          }
        }
      }
      clean();
      const mine = results.get("agent cp")!;
      const rows = [[label, "up ms", "down ms", "peer/agent up", "peer/agent down"]];
      rows.push(["agent cp (SHA-256 checked)", median(mine.up).toFixed(0), median(mine.down).toFixed(0), "", ""]);
      for (const tool of ["scp", "sftp", "tar | ssh tar x"]) {
        const best = (dir: "up" | "down") =>
          Math.min(...CIPHERS.map((c) => median(results.get(`${tool} (${c.split("@")[0]})`)![dir])));
        const which = (dir: "up" | "down") =>
          CIPHERS.map((c) => c.split("@")[0]).find((c) => median(results.get(`${tool} (${c})`)![dir]) === best(dir));
        rows.push([
          `${tool} (faster cipher: up ${which("up")}, down ${which("down")})`,
          best("up").toFixed(0),
          best("down").toFixed(0),
          ratio(best("up"), median(mine.up)),
          ratio(best("down"), median(mine.down)),
        ]);
      }
      table(rows);
    }
  } finally {
    master.stop();
    await agent.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
