/**
 * `npm run bench`: measures the agent next to a peer doing the same work in
 * the same run, and prints ratios (absolute times on shared machines are noise).
 *
 *   ping        meta ping over the encrypted channel vs a raw TCP echo (separate process, same payload)
 *   startup     spawn to first accepted TCP connection: dist/agent vs a bare node listener
 *   memory      resident set of an idle agent
 *   crypto      AES-256-GCM throughput of the two providers (node:crypto, WebCrypto)
 *   outbound    handshake to ready and round trips through an outbound TLS connection, next to inbound
 *   flood       1,000 simultaneous connections, 70% hostile: legitimate clients' time through, next to no flood
 *   sessions    on Node and on Deno: product round trip vs meta ping vs TCP echo, remote `true` vs
 *               `ssh -S MASTER peer true`, a small request during a transfer, session open, PSS per
 *               session, agent RSS (bench/sessions.ts)
 *   transfer    on Node and Deno: one 1 GiB file, file to file, transport and integrity, a fresh
 *               session's first transfer, `agent cp` vs scp, next to the peer's transfer.sh run in
 *               the same run, CPU-s/GiB by process next to ssh's, the per-byte stages (bench/transfer.ts)
 *   fleet       one listener, FLEET_AGENTS simulated agents (their own outbound code) + real ones: RSS and idle
 *               CPU per agent, info() on all, a restart storm (bench/fleet.ts); with nats-server installed,
 *               three listener nodes on NATS: info() and a command (`true` on a real agent) through another
 *               node vs on the holding node, the engine's floor, one node killed (bench/fleet-cluster.ts;
 *               CLUSTER_AGENTS, default FLEET_AGENTS; CLUSTER_REAL, default 2; BENCH_CLUSTER=0 skips it)
 *   wan         on Node and Deno: 128 MiB up and down through a relay adding 2, 20 and 50 ms of round trip,
 *               agent vs `ssh -c aes256-gcm` multiplexed through the same relay (bench/wan.ts; the peer)
 *   commands    `agent run` and `agent cp` vs ssh, scp, sftp and `tar | ssh tar x` (bench/commands.ts)
 *
 * OpenSSH is the project's peer, shared/peer beside the repository (bench/peer.ts); without it the
 * sections say "peer not found".
 *
 * BENCH_ONLY=name,name runs only those sections.
 *
 * Run after `npm run build`. Each section prints its figures and ratio.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../core/client/agent-client.ts";
import { generateKey } from "../core/secure/keys.ts";
import { type CryptoProvider, webCryptoProvider } from "../core/secure/crypto.ts";
import { nodeCryptoProvider, runtimeCryptoProvider } from "../runtime/crypto.ts";
import { dialTcp } from "../runtime/tcp.ts";
import { median, quantile, ratio, table, us } from "./stats.ts";
import { benchSessions } from "./sessions.ts";
import { benchTransfer } from "./transfer.ts";
import { benchOutbound } from "./outbound.ts";
import { benchFlood } from "./flood.ts";
import { benchFleet } from "./fleet.ts";
import { benchFleetCluster } from "./fleet-cluster.ts";
import { startBenchAgent } from "./agent.ts";
import { benchCommands } from "./commands.ts";
import { benchWan } from "./wan.ts";
import { echoRtts, startEchoServer } from "./echo.ts";
import { rssKiB } from "./proc.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const AGENT = path.join(ROOT, "dist/agent");
const PINGS = Number(process.env.BENCH_PINGS ?? 5000);
const children = new Set<ChildProcess>();

function spawnTracked(cmd: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

async function startAgent(key: string) {
  const agent = await startBenchAgent(AGENT, key);
  children.add(agent.child);
  return { ...agent, key };
}

async function benchPing() {
  console.log(`\nping round trip (${PINGS} sequential, 16-byte payload)`);
  const echo = await startEchoServer();
  const key = generateKey();
  const agent = await startAgent(key.hex);
  const payload = new Uint8Array(16);
  // Interleave halves so both see the same machine conditions.
  const raw: number[] = [], agentRtts: number[] = [];
  const client = await AgentClient.open(await dialTcp("127.0.0.1", agent.port, { timeoutMs: 5000 }), {
    key: key.bytes,
    provider: runtimeCryptoProvider(),
  });
  for (let round = 0; round < 2; round++) {
    raw.push(...await echoRtts(echo.port, payload, PINGS));
    for (let i = 0; i < 200; i++) await client.ping(payload.subarray(8)); // warm-up
    for (let i = 0; i < PINGS; i++) agentRtts.push((await client.ping(payload.subarray(8))).rttMs);
  }
  client.close();
  echo.stop();
  const rows = [["", "p50", "p99"], ["raw TCP echo", us(median(raw)), us(quantile(raw, 0.99))], [
    "agent meta ping (encrypted)",
    us(median(agentRtts)),
    us(quantile(agentRtts, 0.99)),
  ]];
  table(rows);
  console.log(
    `  ratio agent/raw: p50 ${ratio(median(agentRtts), median(raw))}, p99 ${
      ratio(quantile(agentRtts, 0.99), quantile(raw, 0.99))
    }  (target: p50 within 3×)`,
  );
  return agent;
}

async function timeToAccept(
  cmd: string,
  args: string[],
  port: number,
  env: Record<string, string> = {},
): Promise<number> {
  const t0 = performance.now();
  const child = spawnTracked(cmd, args, env);
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (performance.now() - t0 > 20_000) throw new Error(`${cmd} did not accept within 20 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
  const elapsed = performance.now() - t0;
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  return elapsed;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function benchStartup() {
  console.log("\nstart to first accepted connection (median of 7)");
  const key = generateKey().hex;
  const agentTimes: number[] = [], nodeTimes: number[] = [];
  for (let i = 0; i < 7; i++) {
    const p1 = await freePort();
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-"));
    agentTimes.push(
      await timeToAccept(AGENT, ["start", "--host", "127.0.0.1", "--port", String(p1), "--key", key], p1, {
        AGENT_STATE_DIR: stateDir,
      }),
    );
    fs.rmSync(stateDir, { recursive: true, force: true });
    const p2 = await freePort();
    nodeTimes.push(
      await timeToAccept(process.execPath, ["-e", `require("net").createServer().listen(${p2}, "127.0.0.1")`], p2),
    );
  }
  table([["", "median"], ["bare node listener", `${median(nodeTimes).toFixed(0)} ms`], [
    "agent start (SEA binary)",
    `${median(agentTimes).toFixed(0)} ms`,
  ]]);
  console.log(`  ratio agent/node: ${ratio(median(agentTimes), median(nodeTimes))}  (target: within 2×)`);
}

const rssMiB = (pid: number) => rssKiB(pid) / 1024;

async function benchMemory(afterLoadPid: number) {
  const fresh = await startAgent(generateKey().hex);
  await new Promise((r) => setTimeout(r, 2000));
  console.log("\nidle agent resident memory (target: under 60 MiB)");
  table([["", "RSS"], ["freshly started, idle 2 s", `${rssMiB(fresh.child.pid!).toFixed(1)} MiB`], [
    "idle 2 s after the ping run",
    `${rssMiB(afterLoadPid).toFixed(1)} MiB`,
  ]]);
  fresh.child.kill();
  fs.rmSync(fresh.stateDir, { recursive: true, force: true });
}

async function benchCrypto() {
  console.log("\nAES-256-GCM seal, 256 KiB records, 64 MiB total");
  const chunk = new Uint8Array(256 * 1024).fill(1);
  const rows = [["provider", "MB/s"]];
  const results: Record<string, number> = {};
  for (const provider of [nodeCryptoProvider, webCryptoProvider] as CryptoProvider[]) {
    const aead = await provider.aesGcm(new Uint8Array(32));
    const nonce = new Uint8Array(12);
    const t0 = performance.now();
    for (let i = 0; i < 256; i++) await aead.seal(nonce, chunk, new Uint8Array(0));
    const mbps = (64 * 1024 * 1024) / 1e6 / ((performance.now() - t0) / 1000);
    results[provider.name] = mbps;
    rows.push([provider.name, mbps.toFixed(0)]);
  }
  table(rows);
  console.log(`  ratio node:crypto/webcrypto: ${ratio(results["node:crypto"], results["webcrypto"])}`);
}

async function main() {
  if (!fs.existsSync(AGENT)) throw new Error("dist/agent is missing: run `npm run build` first");
  console.log(
    `agent benchmarks — ${os.cpus().length} CPUs, node ${process.versions.node}; peers run in the same process tree`,
  );
  if (process.env.NODE_EXTRA_CA_CERTS) {
    // Node reads that file at every start, which is this machine's cost, not the agent's; ssh never reads it.
    const start = (env: NodeJS.ProcessEnv) =>
      median(Array.from({ length: 5 }, () => {
        const t0 = performance.now();
        spawnSync(process.execPath, ["-e", "0"], { env });
        return performance.now() - t0;
      }));
    const withIt = start(process.env);
    delete process.env.NODE_EXTRA_CA_CERTS;
    console.log(
      `NODE_EXTRA_CA_CERTS is set here: a Node start takes ${withIt.toFixed(0)} ms with it, ${
        start(process.env).toFixed(0)
      } ms without; every process this bench starts runs without it`,
    );
  }
  const only = process.env.BENCH_ONLY?.split(",");
  const wanted = (name: string) => !only || only.includes(name);
  if (wanted("sessions")) await benchSessions();
  if (wanted("transfer")) await benchTransfer();
  if (["ping", "memory", "outbound"].some(wanted)) {
    const agent = await benchPing();
    if (wanted("memory")) await benchMemory(agent.child.pid!);
    if (wanted("outbound")) await benchOutbound(AGENT, agent.port, agent.key);
    await agent.stop();
  }
  if (wanted("flood")) await benchFlood(AGENT);
  if (wanted("fleet")) await benchFleet(AGENT);
  if (wanted("fleet")) await benchFleetCluster(AGENT);
  if (wanted("wan")) await benchWan();
  if (wanted("commands")) await benchCommands(AGENT);
  if (wanted("startup")) await benchStartup();
  if (wanted("crypto")) await benchCrypto();
}

try {
  await main();
} finally {
  for (const c of children) c.kill("SIGKILL");
}
