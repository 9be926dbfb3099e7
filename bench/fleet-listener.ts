/**
 * The fleet benchmark's listener, in its own process so its memory and CPU
 * are its own. Env: CERT, KEY (PEM files), TABLE (JSON file: server → key),
 * PORT (0: any), KEEPALIVE. Prints "port N", then answers the driver's
 * messages over IPC.
 * @module
 */
import fs from "node:fs";
import { listen, type ListenerEvent } from "../client/listener.ts";
import { runOnAgents } from "../client/fleet.ts";

const counts: Record<string, number> = {};
const listener = await listen({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  cert: fs.readFileSync(process.env.CERT!, "utf8"),
  key: fs.readFileSync(process.env.KEY!, "utf8"),
  agents: JSON.parse(fs.readFileSync(process.env.TABLE!, "utf8")),
  keepaliveSeconds: Number(process.env.KEEPALIVE ?? 15),
  onEvent: (e: ListenerEvent) => {
    counts[e.type] = (counts[e.type] ?? 0) + 1;
    if (e.type === "fd-exhausted" || (e.type === "handshake-failed" && (counts[e.type] ?? 0) <= 3)) {
      console.error(`${e.type}: ${e.reason}`);
    }
  },
});

type Request = { id: number; op: "stats" | "info-all" | "set-agents" | "session-p50" | "gc"; servers?: string[] };

const ops = {
  stats: () => ({ ...listener.stats(), events: counts, heapUsed: process.memoryUsage().heapUsed }),
  "info-all": async () => {
    const targets = [...listener.connected()].map((name) => ({ name, agent: listener.agent(name)! }));
    const t0 = performance.now();
    const results = await runOnAgents(targets, (a) => a.info(), { concurrency: 256 });
    return { ms: performance.now() - t0, ok: results.filter((r) => r.ok).length, of: targets.length };
  },
  "set-agents": async () => {
    const table = JSON.parse(fs.readFileSync(process.env.TABLE!, "utf8"));
    table["bench-extra"] = "ab".repeat(32);
    const t0 = performance.now();
    await listener.setAgents(table);
    return { ms: performance.now() - t0 };
  },
  "session-p50": async (servers: string[]) => {
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const agent = listener.agent(servers[i % servers.length]);
      if (!agent) continue;
      const t0 = performance.now();
      const s = await agent.openSession("fleet-bench");
      await s.processes.run({ program: "true" });
      times.push(performance.now() - t0);
      await s.close();
    }
    times.sort((a, b) => a - b);
    return { p50: times[Math.floor(times.length / 2)] ?? null, n: times.length };
  },
  gc: () => {
    (globalThis as { gc?: () => void }).gc?.();
    return {};
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
