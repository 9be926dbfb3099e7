/** Starts the built agent for a benchmark: its own state directory, loopback, a free port. */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { denoRunCommand } from "../runtime/heap.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** Deno, from the dev dependency. */
export const DENO = path.join(ROOT, "node_modules/.bin/deno");

/** How the built agent runs on each runtime, as the README tells an operator to run it. */
export const AGENT_COMMANDS: Record<string, string[]> = {
  node: [path.join(ROOT, "dist/agent")],
  deno: denoRunCommand(DENO, path.join(ROOT, "dist/agent.mjs")),
};

/** A running agent; `stop` ends it and removes its state directory. */
export interface BenchAgent {
  child: ChildProcess;
  port: number;
  stateDir: string;
  stop(): Promise<void>;
}

/**
 * `agent start --host 127.0.0.1 --port 0 --key keyHex`, resolved once it listens. `agent` is the
 * program, or an argv prefix that runs it (`deno run -A dist/agent.mjs`).
 */
export async function startBenchAgent(agent: string | string[], keyHex: string): Promise<BenchAgent> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-"));
  const [cmd, ...prefix] = typeof agent === "string" ? [agent] : agent;
  const child = spawn(cmd, [...prefix, "start", "--host", "127.0.0.1", "--port", "0", "--key", keyHex], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, AGENT_STATE_DIR: stateDir },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let text = "";
    child.stderr!.on("data", (d) => {
      text += d;
      const m = /listening on \S+:(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`the agent exited (${code}) before listening: ${text}`)));
  });
  return {
    child,
    port,
    stateDir,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
