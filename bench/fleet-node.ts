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

const listener = await listen({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  cert: fs.readFileSync(process.env.CERT!, "utf8"),
  key: fs.readFileSync(process.env.KEY!, "utf8"),
  agents: JSON.parse(fs.readFileSync(process.env.TABLE!, "utf8")),
});
const cluster = await joinCluster(listener, { servers: process.env.NATS!, node: process.env.NODE! });

type Request = { id: number; op: "connected" | "p50" | "reach-all" | "engine-rtt"; servers?: string[] };

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
