/**
 * Helpers for upgrade tests: an agent program copied where an upgrade may replace it, new
 * versions of it, broken programs, and a session holder that resumes after every cut.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { connect } from "../../mod.ts";
import type { Agent, RemoteSession } from "../../mod.ts";
import { denoRunCommand } from "../../runtime/heap.ts";
import type { AgentStatus } from "../../agent/server.ts";
import { alive, IS_DENO, ROOT, runAgentAsync, type RunningAgent, until } from "./agent-process.ts";

const DENO_BIN = path.join(ROOT, "node_modules/.bin/deno");

/** The built agent program (the single executable on Node, the bundle on Deno), copied into `dir`. */
export function installedCopy(dir: string): { file: string; command: string[] } {
  const file = path.join(dir, IS_DENO ? "agent.mjs" : "agent");
  fs.copyFileSync(path.join(ROOT, IS_DENO ? "dist/agent.mjs" : "dist/agent"), file);
  fs.chmodSync(file, 0o755);
  return { file, command: IS_DENO ? denoRunCommand(DENO_BIN, file) : [file] };
}

/** A new version of the program: the same build with `mark` appended, so its SHA-256 differs. */
export function newVersion(dir: string, mark: string): string {
  const file = path.join(dir, `agent-${mark}${IS_DENO ? ".mjs" : ""}`);
  fs.copyFileSync(path.join(ROOT, IS_DENO ? "dist/agent.mjs" : "dist/agent"), file);
  fs.appendFileSync(file, IS_DENO ? `\n// build ${mark}\n` : `build ${mark}`);
  fs.chmodSync(file, 0o755);
  return file;
}

/**
 * A program that passes `start --check` but then exits at once ("exits") or never reports
 * prepared ("hangs"): a script on Node, a module on Deno (the agent runs new bundles with Deno there).
 */
export function brokenProgram(dir: string, kind: "exits" | "hangs"): string {
  const file = path.join(dir, `broken-${kind}${IS_DENO ? ".mjs" : ""}`);
  const text = IS_DENO
    ? `if (Deno.args.includes("--check")) Deno.exit(0);\n` +
      (kind === "exits" ? `Deno.exit(1);\n` : `await new Promise((r) => setTimeout(r, 600000));\n`)
    : `#!/bin/sh\ncase " $* " in *" --check "*) exit 0;; esac\n` + (kind === "exits" ? "exit 1\n" : "exec sleep 600\n");
  fs.writeFileSync(file, text, { mode: 0o755 });
  return file;
}

/** A client's session that reconnects and resumes whenever the agent cuts its connection; counts the resumes. */
export class ResumingSession {
  resumes = 0;
  #stopped = false;
  #agent: Agent;
  readonly #watching: Promise<void>;

  private constructor(readonly port: number, readonly key: string, agent: Agent, readonly session: RemoteSession) {
    this.#agent = agent;
    this.#watching = this.#watch();
  }

  static async open(port: number, key: string, product: string): Promise<ResumingSession> {
    const agent = await connect({ host: "127.0.0.1", port, key });
    return new ResumingSession(port, key, agent, await agent.openSession(product));
  }

  static async attach(port: number, key: string, sessionId: string): Promise<ResumingSession> {
    const agent = await connect({ host: "127.0.0.1", port, key });
    return new ResumingSession(port, key, agent, await agent.attachSession(sessionId));
  }

  async #watch(): Promise<void> {
    while (!this.#stopped) {
      await this.#agent.closed;
      if (this.#stopped || this.session.ended) return;
      this.#agent = await this.#reconnect();
      await this.session.resume(this.#agent.client);
      this.resumes++;
    }
  }

  async #reconnect(): Promise<Agent> {
    for (let attempt = 0;; attempt++) {
      try {
        return await connect({ host: "127.0.0.1", port: this.port, key: this.key });
      } catch (e) {
        if (attempt >= 100) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    await this.session.close().catch(() => {});
    this.#agent.close();
    await this.#watching.catch(() => {});
  }
}

/** `agent status --json` of the agent on `agent`'s state directory, whichever process serves it now. */
export async function currentStatus(agent: RunningAgent): Promise<AgentStatus> {
  const r = await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: agent.stateDir });
  if (r.code !== 0) throw new Error(`agent status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as AgentStatus;
}

/** Agents that may have been upgraded: an upgraded one is not the test's child, so stopAll() misses it. */
const upgradeable = new Set<RunningAgent>();

/** Notes `agent` for {@link stopUpgradeable}; returns it. */
export function trackUpgradeable(agent: RunningAgent): RunningAgent {
  upgradeable.add(agent);
  return agent;
}

/** Ends every tracked agent still running, whichever process serves it now: a suite's after hook, so a failed test leaves none. */
export async function stopUpgradeable(): Promise<void> {
  for (const agent of [...upgradeable]) await stopCurrent(agent).catch(() => {});
}

/**
 * Ends the agent serving `agent`'s state directory, whichever process it is after upgrades (an
 * upgraded agent is not the test's child), then the one the test started.
 */
export async function stopCurrent(agent: RunningAgent): Promise<void> {
  upgradeable.delete(agent);
  const s = await currentStatus(agent).catch(() => null);
  if (s && s.pid !== agent.pid) {
    process.kill(s.pid, "SIGTERM");
    await until(() => !alive(s.pid), "the upgraded agent stopped", 15_000);
  }
  await agent.stop();
}
