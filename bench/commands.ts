/**
 * `agent run` and `agent cp`, the product side from the shell, next to the
 * OpenSSH tools an operator would otherwise use, in the same run:
 *
 *   run true     `agent run host -- true` vs `ssh host true`, fresh and multiplexed
 *   one file     `agent cp` up and down vs scp, sftp and `tar | ssh tar x` (BENCH_CP_MIB, default 1024)
 *   many files   1,000 files of 1 KiB, the same tools, recursive
 *
 * OpenSSH at its best: the loopback sshd from bench/sshd.sh (internal-sftp; as root a user whose
 * login shell is dash, which reads no startup files), ciphers aes256-gcm and chacha20-poly1305 with
 * the faster one kept per tool, ControlMaster multiplexing where said. Every ratio is
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
import { CIPHERS, findSsh, muxMaster, NO_SSH, SSH_PORT } from "./ssh.ts";
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
  const ssh = findSsh();
  if (!ssh) {
    console.log(`  ${NO_SSH}`);
    return;
  }
  const shell = ssh.shell;
  const shellCost = median(Array.from({ length: 20 }, () => timed(`${shell} -c true`)));
  console.log(
    `  peer: sshd on 127.0.0.1:${SSH_PORT}, user ${ssh.user}, login shell ${shell} (${
      shell.endsWith("dash") ? "reads no startup files" : "may read startup files"
    }; \`${shell} -c true\` costs ${shellCost.toFixed(2)} ms here), sftp = internal-sftp`,
  );
  console.log(`  peer ciphers: ${CIPHERS.join(", ")}; each transfer row keeps the faster`);

  const keyHex = crypto.randomBytes(32).toString("hex");
  const agent = await startBenchAgent(agentPath, keyHex);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-cp-"));
  const keyFile = path.join(work, "key");
  fs.writeFileSync(keyFile, keyHex, { mode: 0o600 });
  const agentCli = `${q(agentPath)}`;
  const target = `127.0.0.1:${agent.port}`;
  const agentRoot = path.join(agent.stateDir, "products/cli/work");
  const o = ssh.options.map(q).join(" ");
  const control = path.join(work, "mux");
  const master = await muxMaster(ssh, control, CIPHERS[0]);
  try {
    // ---- run true -----------------------------------------------------------------------------
    const runs = { agent: [] as number[], fresh: [] as number[], mux: [] as number[] };
    const agentRun = `${agentCli} run ${target} --key-file ${q(keyFile)} -- true`;
    const sshFresh = `ssh -p ${SSH_PORT} -c ${CIPHERS[0]} ${o} ${ssh.host} true`;
    const sshMux = `ssh -o ControlPath=${q(control)} ${ssh.host} true`;
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
      execFileSync("/bin/sh", ["-c", `ssh -o ControlPath=${q(control)} ${ssh.host} 'rm -rf x'`]);
      fs.rmSync(path.join(work, "down"), { recursive: true, force: true });
      // Every tool starts with nothing waiting to be written back, so none pays for another's files.
      execFileSync("sync");
    };
    const sshTools = (cipher: string, recursive: boolean) => {
      const r = recursive ? "-r " : "";
      const src = recursive ? tree : big;
      return {
        scp: {
          up: `scp -q -P ${SSH_PORT} -c ${cipher} ${o} ${r}${q(src)} ${ssh.host}:x`,
          down: `scp -q -P ${SSH_PORT} -c ${cipher} ${o} ${r}${ssh.host}:x ${q(path.join(work, "down"))}`,
        },
        sftp: {
          up: `echo ${q(`put ${r}${src} x`)} | sftp -q -P ${SSH_PORT} -c ${cipher} ${o} -b - ${ssh.host} >/dev/null`,
          down: `echo ${
            q(`get ${r}x ${path.join(work, "down")}`)
          } | sftp -q -P ${SSH_PORT} -c ${cipher} ${o} -b - ${ssh.host} >/dev/null`,
        },
        "tar | ssh tar x": {
          up: `tar -C ${q(path.dirname(src))} -cf - ${
            q(path.basename(src))
          } | ssh -p ${SSH_PORT} -c ${cipher} ${o} ${ssh.host} 'mkdir -p x && tar -C x -xf -'`,
          down: `mkdir -p ${
            q(path.join(work, "down"))
          } && ssh -p ${SSH_PORT} -c ${cipher} ${o} ${ssh.host} 'tar -C x -cf - .' | tar -C ${
            q(path.join(work, "down"))
          } -xf -`,
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
