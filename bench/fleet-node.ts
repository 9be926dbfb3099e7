/**
 * One node of the fleet benchmark's listener cluster, in its own process: a
 * listener joined to NATS. Env: CERT, KEY, TABLE (as bench/fleet-listener.ts),
 * NATS (url), NODE (name), PORT. Prints "port N", then answers over IPC.
 * @module
 */
import fs from "node:fs";
import { listen } from "../client/listener.ts";
import { joinCluster } from "../client/cluster.ts";
import { eachLimited } from "../core/concurrency.ts";
import type { RemoteSession } from "../core/client/remote-session.ts";

const listener = await listen({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  cert: fs.readFileSync(process.env.CERT!, "utf8"),
  key: fs.readFileSync(process.env.KEY!, "utf8"),
  agents: JSON.parse(fs.readFileSync(process.env.TABLE!, "utf8")),
});
const cluster = await joinCluster(listener, { servers: process.env.NATS!, node: process.env.NODE! });

type Request = {
  id: number;
  op:
    | "connected"
    | "holds"
    | "p50"
    | "reach-all"
    | "engine-rtt"
    | "engine-wrapped-info"
    | "run-true"
    | "open-run-true"
    | "close-sessions";
  servers?: string[];
};

/** One open session per server for "run-true", opened (and warmed) on its first use. */
const sessions = new Map<string, RemoteSession>();

async function agentOf(server: string) {
  const agent = await cluster.agent(server);
  if (!agent) throw new Error(`no node holds ${server}`);
  return agent;
}

// The relay's floor on this engine: a NATS request that the node holding the agent answers once it has
// called info() itself (every node hears it; only the holder answers).
cluster.nc.subscribe("bench.info", {
  callback: (_e, m) => {
    const agent = listener.agent(new TextDecoder().decode(m.data));
    if (agent) void agent.info().then(() => m.respond(), () => {});
  },
});

const ops = {
  connected: () => listener.count,
  /** A bare NATS request/reply to another node, p50 in ms: the floor under any relayed call. */
  "engine-rtt": async (peers: string[]) => {
    const times: number[] = [];
    for (let i = 0; i < 400; i++) {
      const t0 = performance.now();
      await cluster.nc.request(`agent.node.${peers[i % peers.length]}`, undefined, { timeout: 5000 });
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[200];
  },
  /** `info()` on the sample's remote servers through a bare NATS request to the holding node: p50 in ms. */
  "engine-wrapped-info": async (servers: string[]) => {
    const times: number[] = [];
    for (const s of servers) {
      if (listener.agent(s)) continue;
      const request = () => cluster.nc.request("bench.info", new TextEncoder().encode(s), { timeout: 5000 });
      await request();
      const t0 = performance.now();
      await request();
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
  },
  /** Which of the servers given this node holds. */
  holds: (servers: string[]) => servers.filter((s) => listener.agent(s)),
  /** Runs `true` in an open session on the server's agent, through this node: ms. */
  "run-true": async ([server]: string[]) => {
    let session = sessions.get(server);
    if (!session) {
      session = await (await agentOf(server)).openSession("fleet-bench");
      sessions.set(server, session);
      await session.processes.run({ program: "true" }); // warm: the first spawn of the session's host
    }
    const t0 = performance.now();
    const { code } = await session.processes.run({ program: "true" });
    if (code !== 0) throw new Error(`true exited ${code}`);
    return performance.now() - t0;
  },
  /** A command from scratch: opens a session on the server's agent, runs `true`, closes it: ms. */
  "open-run-true": async ([server]: string[]) => {
    const agent = await agentOf(server);
    await agent.info(); // the proxy opened, once
    const t0 = performance.now();
    const session = await agent.openSession("fleet-bench");
    const { code } = await session.processes.run({ program: "true" });
    await session.close();
    if (code !== 0) throw new Error(`true exited ${code}`);
    return performance.now() - t0;
  },
  "close-sessions": async () => {
    for (const s of sessions.values()) await s.close().catch(() => {});
    sessions.clear();
    return 0;
  },
  /** `info()` on each server given, one at a time, through this node: p50 and p90 in ms. */
  p50: async (servers: string[]) => {
    const remote: number[] = [], local: number[] = [];
    for (const s of servers) {
      const agent = await cluster.agent(s);
      if (!agent) continue;
      await agent.info(); // the proxy opened, once
      const t0 = performance.now();
      await agent.info();
      (listener.agent(s) ? local : remote).push(performance.now() - t0);
    }
    const pick = (a: number[], q: number) => a.sort((x, y) => x - y)[Math.floor(a.length * q)] ?? null;
    return { remote: pick(remote, 0.5), remote90: pick(remote, 0.9), n: remote.length, local: pick(local, 0.5) };
  },
  /** `info()` on every server through this node (64 at once): how many answered. */
  "reach-all": async (servers: string[]) => {
    let ok = 0;
    await eachLimited(servers, 64, async (name) => {
      const agent = await cluster.agent(name).catch(() => undefined);
      if (agent && await agent.info().then(() => true, () => false)) ok++;
    });
    return ok;
  },
};

process.on("message", async (m: Request) => {
  try {
    process.send!({ id: m.id, ok: true, value: await ops[m.op](m.servers ?? []) });
  } catch (e) {
    process.send!({ id: m.id, ok: false, error: (e as Error).message });
  }
});
process.on("disconnect", () => process.exit(0));
console.log(`port ${listener.port}`);
