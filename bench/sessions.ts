/**
 * Session benchmarks, on an agent running on Node (the single executable) and on Deno
 * (`deno run dist/agent.mjs`), each next to its peer in the same run:
 *
 *   round trip        product message (client → agent → host → back) vs meta ping vs a raw TCP echo; also
 *                     call by call, alternating, so both see the same placement of processes on CPUs
 *   remote `true`     process start to exit on an open session vs OpenSSH multiplexed `ssh -S host true`
 *   during transfer   a small request's p99 in a session while a transfer runs in it, vs idle: during
 *                     the session's first upload (cold code) and its second
 *   session open      p50, on the spare host the agent keeps ready
 *   memory            PSS per extra session with 20 open; agent RSS idle and after 10,000 pings (the
 *                     binary first dropped from the page cache: see dropFromPageCache)
 *
 * The OpenSSH column is the project's peer (bench/peer.ts: shared/peer/sshd.sh, started if need be),
 * through a multiplexing master; without the peer it says "peer not found".
 * BENCH_RUNTIMES=node,deno picks the agent's runtimes; BENCH_TRANSFER_MIB sizes the upload
 * the small requests run beside (throughput itself: bench/transfer.ts).
 * @module
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Agent, connect, type RemoteSession } from "../mod.ts";
import { ServiceCode } from "../core/session/contract.ts";
import { generateKey } from "../core/secure/keys.ts";
import { AGENT_COMMANDS, startBenchAgent } from "./agent.ts";
import { echoRtts, startEchoServer } from "./echo.ts";
import { pssKiB, rssKiB, rssSplitKiB } from "./proc.ts";
import { CIPHERS, describePeer, muxMaster, NO_PEER, type Peer, startPeer } from "./peer.ts";
import { median, quantile, ratio, table, us } from "./stats.ts";
import { source, TRANSFER_MIB } from "./transfer.ts";

type Column = Record<string, string>;
const ms = (x: number) => `${x.toFixed(2)} ms`;
const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

async function timed<T>(samples: number[], f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  samples.push(performance.now() - t0);
  return r;
}

/**
 * Product message round trip, meta ping, both interleaved in rounds; then the two alternating call by
 * call. Where the scheduler puts the processes differs between rounds of one kind and the other: a
 * meta round often has the client and the agent on one CPU (a wake-up there is cheap) while a product
 * round always wakes a third process; alternating, both see the same placement.
 */
async function roundTrips(agent: Agent, s: RemoteSession, n: number) {
  const product: number[] = [], meta: number[] = [], alternating = { product: [] as number[], meta: [] as number[] };
  for (let i = 0; i < 300; i++) await s.call(ServiceCode.SystemProductRoot, {});
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < n / 4; i++) await timed(product, () => s.call(ServiceCode.SystemProductRoot, {}));
    for (let i = 0; i < n / 4; i++) meta.push((await agent.ping()).rttMs);
  }
  for (let i = 0; i < n / 2; i++) {
    await timed(alternating.product, () => s.call(ServiceCode.SystemProductRoot, {}));
    alternating.meta.push((await agent.ping()).rttMs);
  }
  return { product, meta, alternating };
}

/** p99 of `stat` in `s` every few ms while `busy` runs, and the same with nothing else going on. */
async function statDuring(s: RemoteSession, busy: Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  let done = false;
  busy.finally(() => (done = true));
  while (!done) {
    await timed(out, () => s.files.stat("."));
    await new Promise((r) => setTimeout(r, 5));
  }
  return out;
}

/**
 * Drops the executable's pages from the page cache (`dd iflag=nocache`), so the agent maps only what
 * it reads as it runs, as it does when installed. Just after build.ts writes the binary, each process
 * of it maps ~15 MiB more of it (60.6 against 45.3 MiB idle, measured; a `cp` of the same binary
 * shows the lower figure): that state belongs to the build machine, not to a server.
 */
function dropFromPageCache(binary: string): void {
  execFileSync("dd", [`if=${fs.realpathSync(binary)}`, "iflag=nocache", "count=0", "status=none"]);
}

/** The agent's RSS idle and after 10,000 pings, and the split of the latter. */
async function agentRss(command: string[]): Promise<{ idle: number; loaded: number; anon: number; file: number }> {
  dropFromPageCache(command[0]);
  const key = generateKey();
  const bench = await startBenchAgent(command, key.hex);
  const pid = bench.child.pid!;
  try {
    await new Promise((r) => setTimeout(r, 1500));
    const idle = rssKiB(pid);
    const agent = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });
    for (let i = 0; i < 10_000; i++) await agent.ping();
    agent.close();
    await new Promise((r) => setTimeout(r, 1500));
    return { idle, loaded: rssKiB(pid), ...rssSplitKiB(pid) };
  } finally {
    await bench.stop();
  }
}

async function measureRuntime(runtime: string, command: string[]): Promise<Column> {
  const col: Column = {};
  const rss = await agentRss(command);
  col["agent RSS, idle"] = mib(rss.idle);
  col["agent RSS after 10,000 pings"] = mib(rss.loaded);
  col["  of it private / file-backed"] = `${mib(rss.anon)} / ${mib(rss.file)}`;
  const key = generateKey();
  const bench = await startBenchAgent(command, key.hex);
  let agent: Agent | null = null;
  try {
    agent = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });

    // Session open: the agent keeps a spare host per product; give it time to be ready each time.
    const opens: number[] = [];
    for (let i = 0; i < 9; i++) {
      await new Promise((r) => setTimeout(r, 1200));
      const s = await timed(opens, () => agent!.openSession("bench"));
      await s.close();
    }
    col["session open p50"] = ms(median(opens));

    const s = await agent.openSession("bench");
    const { product, meta, alternating } = await roundTrips(agent, s, 4000);
    col["meta ping p50"] = us(median(meta));
    col["product round trip p50"] = us(median(product));
    col["product / meta ping"] = ratio(median(product), median(meta));
    col["  alternating call by call: product / meta ping"] = `${
      ratio(median(alternating.product), median(alternating.meta))
    } (${us(median(alternating.product))} / ${us(median(alternating.meta))})`;

    const trues: number[] = [];
    for (let i = 0; i < 10; i++) await s.processes.run({ program: "true" });
    for (let i = 0; i < 100; i++) await timed(trues, () => s.processes.run({ program: "true" }));
    col["remote true p50 (open session)"] = ms(median(trues));

    const idle: number[] = [];
    for (let i = 0; i < 300; i++) await timed(idle, () => s.files.stat("."));
    col["stat p99 idle"] = ms(quantile(idle, 0.99));
    const file = path.join(os.tmpdir(), `agent-bench-${process.pid}-${runtime}.bin`);
    // The same session from a second connection too: what waits there is the session's host, not TCP behind the upload.
    const other = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });
    const s2 = await other.attachSession(s.id);
    // Twice: the session's first upload also pays for V8 compiling the transfer path in the agent and
    // the host (measured: their first 256 MiB cost them 1.5-1.7x the CPU of later ones); the second runs warm.
    for (const nth of ["first", "second"]) {
      const upHash = crypto.createHash("sha256");
      const upload = s.files.writeFile(file, source(TRANSFER_MIB, upHash), { onSha256: () => {} });
      const [during, duringOther] = await Promise.all([statDuring(s, upload), statDuring(s2, upload)]);
      col[`stat p99 during the session's ${nth} ${TRANSFER_MIB} MiB upload, same connection`] = ms(
        quantile(during, 0.99),
      );
      col[`  ${nth} upload, same session, another connection`] = ms(quantile(duringOther, 0.99));
      if ((await s.files.sha256(file)).sha256 !== upHash.digest("hex")) throw new Error("upload checksum mismatch");
      await s.files.delete(file); // the second upload makes a new file too, not truncates the first (bench/transfer.ts)
    }
    await s2.detach();
    other.close();
    await s.close();

    // Memory per session: 20 open at once, each host's proportional share.
    const many: RemoteSession[] = [];
    for (let i = 0; i < 20; i++) many.push(await agent.openSession("bench"));
    const pids = await Promise.all(many.map(async (m) => (await m.system.info()).pid));
    await new Promise((r) => setTimeout(r, 1500));
    const pss = pids.map(pssKiB);
    col["host PSS per session, 20 open (median)"] = mib(median(pss));
    col["host RSS, one of 20"] = mib(rssKiB(pids[0]));
    for (const m of many) await m.close();
    return col;
  } finally {
    agent?.close();
    await bench.stop();
  }
}

/** OpenSSH's figures for the same rows, through a multiplexed master with each fast cipher. */
function measureSsh(peer: Peer): Column {
  const col: Column = {};
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-ssh-"));
  try {
    const trues: Record<string, number[]> = {};
    for (const cipher of CIPHERS) {
      const master = muxMaster(peer, path.join(work, `mux-${cipher.slice(0, 4)}`), cipher);
      try {
        const runs: number[] = [];
        for (let i = 0; i < 5; i++) execFileSync("ssh", [...master.args, "true"]);
        for (let i = 0; i < 30; i++) {
          const t0 = performance.now();
          execFileSync("ssh", [...master.args, "true"]);
          runs.push(performance.now() - t0);
        }
        trues[cipher] = runs;
      } finally {
        master.stop();
      }
    }
    const best = Math.min(...CIPHERS.map((c) => median(trues[c])));
    col["remote true p50 (open session)"] = ms(best);
    return col;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export async function benchSessions(): Promise<void> {
  const ssh = startPeer();
  const runtimes = (process.env.BENCH_RUNTIMES ?? "node,deno").split(",");
  console.log(`\n== sessions: agent on ${runtimes.join(" and ")}, next to OpenSSH ==`);
  if (ssh) {
    console.log(
      `  ${describePeer(ssh)}; \`ssh -S MASTER peer true\` over a multiplexing master; ciphers ${
        CIPHERS.join(", ")
      }, the faster kept per row`,
    );
  }
  const server = await startEchoServer();
  const echo = await echoRtts(server.port, new Uint8Array(64), 3000).finally(() => server.stop());
  const columns: Record<string, Column> = {};
  for (const runtime of runtimes) columns[runtime] = await measureRuntime(runtime, AGENT_COMMANDS[runtime]);
  const peer = ssh ? measureSsh(ssh) : {};
  const rows = [["", ...runtimes.map((r) => `agent on ${r}`), "OpenSSH"]];
  for (const label of Object.keys(columns[runtimes[0]])) {
    rows.push([
      label,
      ...runtimes.map((r) => columns[r][label] ?? ""),
      peer[label] ?? "",
    ]);
  }
  rows.push(["raw TCP echo p50 (same machine)", us(median(echo)), "", ""]);
  table(rows);
  const num = (s: string | undefined) => Number.parseFloat(s ?? "NaN");
  for (const r of runtimes) {
    const c = columns[r];
    console.log(
      `  ${r}: product round trip / meta ping ${c["product / meta ping"]} (target ≤ 1.5×; alternating call by call ${
        c["  alternating call by call: product / meta ping"].split(" ")[0]
      }); meta ping / raw TCP echo ${ratio(num(c["meta ping p50"]), median(echo) * 1000)}`,
    );
    if (ssh) {
      console.log(
        `  ${r}: remote true, ssh -S / agent ${
          ratio(num(peer["remote true p50 (open session)"]), num(c["remote true p50 (open session)"]))
        } (target ≥ 4×)`,
      );
    } else console.log(`  OpenSSH: ${NO_PEER}`);
  }
  console.log(
    "  targets: stat during transfer p99 ≤ 20 ms; session open ≤ 25 ms; PSS ≤ 8 MiB per extra session; agent RSS ≤ 60 MiB after load",
  );
  console.log(
    "  agent RSS: the binary is first dropped from the page cache, so the agent maps what it reads as it runs, as when",
  );
  console.log(
    "  installed; file-backed pages are the runtime's code, shared with every process running that binary; read 1.5 s",
  );
  console.log(
    "  after the pings end, by when the idle agent has given freed memory back (runtime/malloc.ts, 0.5-1 s idle)",
  );
}
