/**
 * Starts the built agent as a real process for end-to-end tests: the SEA
 * binary when the tests run on Node, the same bundle under `deno run` when
 * they run on Deno. Every process started here is ended by {@link stopAll}.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { denoRunCommand } from "../../runtime/heap.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const IS_DENO = "Deno" in globalThis;
const DENO_BIN = path.join(ROOT, "node_modules/.bin/deno");

/** argv prefix that runs a TypeScript file on this test run's runtime. */
export function scriptCommand(): string[] {
  return IS_DENO ? [DENO_BIN, "run", "-A"] : [process.execPath, "--import", "tsx"];
}

/** The command that runs the built agent on this test run's runtime. */
export function agentCommand(): string[] {
  if (IS_DENO) return denoRunCommand(DENO_BIN, path.join(ROOT, "dist/agent.mjs"));
  return [path.join(ROOT, "dist/agent")];
}

/** A fresh private directory, removed by {@link stopAll}, which also runs when the process exits. */
export function tempDir(prefix = "agent-test-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

const dirs: string[] = [];
const running = new Set<ChildProcess>();

/** Settings through which a process finds the machine's real agent state or cache. */
const REAL_STATE_SETTINGS = /^(AGENT_|XDG_STATE_HOME$|XDG_CACHE_HOME$|STATE_DIRECTORY$)/;

/**
 * The test process itself runs with a private HOME and none of {@link REAL_STATE_SETTINGS}, so what
 * it starts without {@link hermeticEnv} (a LocalAgent's hosts, helper scripts) cannot reach the
 * user's state or cache either. XDG_STATE_HOME points into that HOME, as the default state
 * directory of root is /var/lib/agent whatever HOME says. Deno keeps reading its module cache where
 * it was.
 */
function isolateTestProcess(): void {
  process.env.DENO_DIR ??= path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "deno");
  for (const name of Object.keys(process.env)) if (REAL_STATE_SETTINGS.test(name)) delete process.env[name];
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "agent-test-home-"));
  process.env.HOME = home;
  process.env.XDG_STATE_HOME = path.join(home, ".local", "state");
  process.on("exit", () => fs.rmSync(home, { recursive: true, force: true }));
}
isolateTestProcess();

/**
 * The environment every agent and CLI call in the tests gets: this process's (see
 * {@link isolateTestProcess}), with its own HOME and its own state directory. No test reads or
 * writes the machine's real state (/var/lib/agent, ~/.local/state/agent), whatever it holds.
 */
export function hermeticEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !REAL_STATE_SETTINGS.test(k)) env[k] = v;
  // DENO_NO_UPDATE_CHECK: Deno's own version check would reach for the network (through HTTPS_PROXY, when set).
  return {
    ...env,
    HOME: tempDir("agent-home-"),
    AGENT_STATE_DIR: tempDir("agent-state-"),
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    ...extra,
  };
}

/** Runs the agent CLI to completion (no TTY, no stdin). */
export function runAgent(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000) {
  const [cmd, ...pre] = agentCommand();
  const r = spawnSync(cmd, [...pre, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    env: hermeticEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", signal: r.signal };
}

/** Runs the agent CLI without blocking the event loop (needed when the test itself serves a socket). */
export function runAgentAsync(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000) {
  const [cmd, ...pre] = agentCommand();
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(cmd, [...pre, ...args], { env: hermeticEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    running.add(child);
    let stdout = "", stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => sendSignal(child, "SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A running `agent start`. */
export interface RunningAgent {
  port: number;
  pid: number;
  stateDir: string;
  keyHex: string | null;
  stdout(): string;
  stderr(): string;
  /** Resolves once a line matching `pattern` has been logged. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /**
   * Sends SIGTERM (or `signal`) and resolves with the exit code. Deno's
   * child_process reports null for a child it signalled even when that child
   * then exited 0, so on Deno a clean exit shows as null; see {@link cleanExit}.
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  child: ChildProcess;
}

/** Starts `agent start --host 127.0.0.1 --port 0` and waits until it listens. */
export async function startAgent(
  args: string[] = [],
  options: {
    stateDir?: string;
    env?: Record<string, string>;
    listenFlags?: boolean;
    ready?: RegExp;
    /** Descriptors of this process the agent inherits as its 3, 4, … (as a careless parent would leave them). */
    inherit?: number[];
    /** The program to start instead of the built agent (a test's own entry point). */
    command?: string[];
  } = {},
): Promise<RunningAgent> {
  const stateDir = options.stateDir ?? tempDir();
  const [cmd, ...pre] = options.command ?? agentCommand();
  const listen = options.listenFlags === false ? [] : ["--host", "127.0.0.1", "--port", "0"];
  const child = spawn(cmd, [...pre, "start", ...listen, ...args], {
    env: hermeticEnv({ AGENT_STATE_DIR: stateDir, ...options.env }),
    stdio: ["ignore", "pipe", "pipe", ...(options.inherit ?? [])],
  });
  running.add(child);
  let out = "", err = "";
  const waiters: Array<() => void> = [];
  child.stdout!.on("data", (d) => {
    out += d;
    waiters.forEach((w) => w());
  });
  child.stderr!.on("data", (d) => {
    err += d;
    waiters.forEach((w) => w());
  });
  const exited = new Promise<number | null>((r) =>
    child.on("exit", (code) => {
      running.delete(child);
      waiters.forEach((w) => w());
      r(code);
    })
  );
  const waitForLog = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(err);
        if (m) {
          cleanup();
          resolve(m[0]);
        } else if (child.exitCode !== null) {
          cleanup();
          reject(new Error(`agent exited (${child.exitCode}) before logging ${pattern}:\n${err}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`agent did not log ${pattern} within ${timeoutMs} ms:\n${err}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        const i = waiters.indexOf(check);
        if (i >= 0) waiters.splice(i, 1);
      };
      waiters.push(check);
      check();
    });
  await waitForLog(options.ready ?? /listening on \S+:(\d+)/);
  const port = Number(/listening on \S+:(\d+)/.exec(err)?.[1] ?? 0);
  const keyHex = /^\s+([0-9a-f]{64})$/m.exec(out)?.[1] ?? null;
  return {
    port,
    pid: child.pid!,
    stateDir,
    keyHex,
    child,
    stdout: () => out,
    stderr: () => err,
    waitForLog,
    stop(signal = "SIGTERM") {
      if (child.exitCode === null) sendSignal(child, signal);
      const timer = setTimeout(() => sendSignal(child, "SIGKILL"), 10_000);
      return exited.finally(() => clearTimeout(timer));
    },
  };
}

/** True when `code` is what a clean shutdown after {@link RunningAgent.stop} reports on this runtime. */
export function cleanExit(code: number | null): boolean {
  return IS_DENO ? code === 0 || code === null : code === 0;
}

/**
 * Signals a child by pid: Deno's ChildProcess.kill() delivers only the first
 * signal asked of it, which would make a later SIGKILL fallback a no-op.
 */
export function sendSignal(child: ChildProcess, name: NodeJS.Signals): void {
  try {
    if (child.pid && child.exitCode === null) process.kill(child.pid, name);
  } catch { /* already gone */ }
}

/** Kills every process the tests started and removes temp directories. */
export function stopAll(): void {
  for (const c of running) sendSignal(c, "SIGKILL");
  running.clear();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
// A test file run on its own may never call stopAll: what it made still goes when it ends.
process.on("exit", stopAll);

/** Writes a key file with mode 0600 and returns its path. */
export function writeKeyFile(dir: string, hex: string, name = "test.key"): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, hex + "\n", { mode: 0o600 });
  return file;
}

/** Resident memory of a process in KiB (Linux /proc); `private` counts only its anonymous pages, not code mapped from files. */
export function residentKiB(pid: number, which: "all" | "private" = "all"): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number((which === "all" ? /VmRSS:\s+(\d+)/ : /RssAnon:\s+(\d+)/).exec(status)![1]);
}

/**
 * The fields of `/proc/<pid>/stat` after the command name ("self": this process), from field 3 on:
 * [0] state, [2] process group, [7] minor faults, [11] and [12] user and system CPU in clock ticks.
 * Cut at the last ")", since the command name may hold one.
 */
export function procStat(pid: number | "self"): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Runs `body` with a fresh 1 MiB tmpfs mounted at a temporary directory, to fill a disk for real;
 * unmounts it after. Where mounting is not allowed it says why and skips `body`.
 */
export async function withFullDisk(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], { encoding: "utf8" });
  if (mounted.status !== 0) {
    console.log(
      `\n  (skipped: cannot mount a small tmpfs here: ${(mounted.stderr || mounted.error?.message || "").trim()})`,
    );
    return;
  }
  try {
    await body(dir);
  } finally {
    spawnSync("umount", [dir]);
  }
}
