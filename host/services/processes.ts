/**
 * The processes service: start programs, stream their output as it comes,
 * feed stdin, signal, wait, list. Output flows with backpressure: a child's
 * pipe is paused while its last chunk waits for room in the ring.
 * Every launched process leads its own process group and is tracked so the
 * session can end it and its children (TERM, then KILL after a grace period).
 * Processes start through runtime/spawn.ts (posix_spawn where it can).
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { type ExitStatus, ServiceCode, ServiceEvent } from "../../core/session/contract.ts";
import { ServiceError } from "../../core/errors.ts";
import { requireString, withoutNul } from "../errors.ts";
import { type StartedProcess, startProcess } from "../../runtime/spawn.ts";
import { type PtyProcess, startInPty } from "../../runtime/pty.ts";
import type { HostContext, ServiceHandlers } from "./types.ts";

interface Launched {
  id: number;
  owner: number;
  program: string;
  args: string[];
  child: StartedProcess | PtyProcess;
  startedAt: number;
  /** Settles after the process is reaped and all its output is sent. */
  exit: Promise<ExitStatus>;
  exited: ExitStatus | null;
}

/** Signals a child by pid; false if it is already gone. */
function signal(child: StartedProcess, name: NodeJS.Signals): boolean {
  try {
    process.kill(child.pid, name);
    return true;
  } catch {
    return false;
  }
}

/** Signals a launched process's whole group (it leads its own), reaching the children it started. */
function signalGroup(child: StartedProcess, name: NodeJS.Signals): boolean {
  try {
    process.kill(-child.pid, name);
    return true;
  } catch {
    return signal(child, name);
  }
}

/** A terminal's `{ rows, cols }` (each 1-65535), or null when `value` is not one. */
function terminalSize(value: unknown): { rows: number; cols: number } | null {
  const { rows, cols } = (value ?? {}) as { rows?: unknown; cols?: unknown };
  const fits = (n: unknown): n is number => Number.isInteger(n) && (n as number) > 0 && (n as number) < 65536;
  return fits(rows) && fits(cols) ? { rows, cols } : null;
}

/** Why a start found nothing: the working directory missing, or else the program. */
function notFound(program: string, cwd: string): ServiceError {
  if (!fs.existsSync(cwd)) {
    return new ServiceError("not-found", `cannot start "${program}": working directory ${cwd} does not exist`, cwd);
  }
  return new ServiceError("not-found", `cannot start "${program}": no such program`, program);
}

const SIGNALS = new Set([
  "SIGTERM",
  "SIGKILL",
  "SIGINT",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGSTOP",
  "SIGCONT",
]);

export class ProcessesService {
  #procs = new Map<number, Launched>();
  #nextId = 1;

  /** Writes to one process's stdin, and closing it, run in arrival order; everything else runs concurrently. */
  orderKey(code: number, fields: Record<string, unknown>): string | null {
    return code === ServiceCode.ProcessWrite || code === ServiceCode.ProcessCloseStdin ? `stdin:${fields.id}` : null;
  }

  constructor(readonly context: HostContext) {}

  get runningCount(): number {
    let n = 0;
    for (const p of this.#procs.values()) if (!p.exited) n++;
    return n;
  }
  /** Process groups still in use (each launched process leads one), for the agent to end if this host dies. */
  get processGroups(): number[] {
    return [...this.#procs.values()].filter((p) => !p.exited).map((p) => p.child.pid);
  }

  /** Ends every running process: TERM, then KILL those still running after `graceMs`. */
  async endAll(graceMs: number): Promise<void> {
    const running = [...this.#procs.values()].filter((p) => !p.exited);
    for (const p of running) signalGroup(p.child, "SIGTERM");
    const timer = setTimeout(() => running.forEach((p) => p.exited || signalGroup(p.child, "SIGKILL")), graceMs);
    await Promise.all(running.map((p) => p.exit));
    clearTimeout(timer);
  }

  #get(fields: Record<string, unknown>): Launched {
    const p = this.#procs.get(Number(fields.id));
    if (!p) throw new ServiceError("unknown-process", `no process with id ${fields.id} in this session`);
    return p;
  }

  handlers(): ServiceHandlers {
    return {
      [ServiceCode.ProcessStart]: ({ attachment, fields }) => this.#start(attachment, fields),
      [ServiceCode.ProcessWrite]: async ({ fields, data }) => {
        const p = this.#get(fields);
        if (p.exited || p.child.stdin.destroyed || p.child.stdin.writableEnded) {
          throw new ServiceError("stdin-closed", `stdin of process ${p.id} is closed`);
        }
        await new Promise<void>((resolve, reject) => p.child.stdin.write(data, (e) => (e ? reject(e) : resolve())));
      },
      [ServiceCode.ProcessCloseStdin]: ({ fields }) => {
        this.#get(fields).child.stdin.end();
      },
      [ServiceCode.ProcessSignal]: ({ fields }) => {
        const p = this.#get(fields);
        const name = String(fields.signal ?? "SIGTERM");
        if (!SIGNALS.has(name)) throw new ServiceError("invalid-argument", `unsupported signal "${name}"`);
        // SIGKILL ends the whole group: children left behind would hold the output open, and the exit with it.
        const send = name === "SIGKILL" ? signalGroup : signal;
        const delivered = !p.exited && send(p.child, name as NodeJS.Signals);
        return { fields: { delivered } };
      },
      [ServiceCode.ProcessResize]: ({ fields }) => {
        const p = this.#get(fields);
        const size = terminalSize(fields);
        if (!("resize" in p.child) || !size) {
          throw new ServiceError(
            "invalid-argument",
            `process ${p.id} has no terminal, or the size is not rows and cols`,
          );
        }
        if (!p.exited) p.child.resize(size.rows, size.cols);
      },
      [ServiceCode.ProcessWait]: async ({ fields }) => ({ fields: { ...(await this.#get(fields).exit) } }),
      [ServiceCode.ProcessRun]: async ({ attachment, fields, data }) => {
        const { id, pid } = (await this.#start(attachment, fields)).fields;
        const p = this.#procs.get(id)!;
        p.child.stdin.end(data.length > 0 ? data : undefined); // a program that does not read it gets EPIPE, ignored
        return { fields: { id, pid, ...(await p.exit) } };
      },
      [ServiceCode.ProcessList]: () => ({
        fields: {
          processes: [...this.#procs.values()].map((p) => ({
            id: p.id,
            pid: p.child.pid,
            program: p.program,
            args: p.args,
            startedAt: p.startedAt,
            running: !p.exited,
            code: p.exited?.code ?? null,
            signal: p.exited?.signal ?? null,
          })),
        },
      }),
    };
  }

  async #start(owner: number, fields: Record<string, unknown>) {
    const program = requireString(fields, "program");
    const args = Array.isArray(fields.args) ? fields.args.map((a) => withoutNul(String(a), "args")) : [];
    const env: Record<string, string> = {};
    if (fields.env && typeof fields.env === "object") {
      for (const [k, v] of Object.entries(fields.env)) env[withoutNul(k, "env")] = withoutNul(String(v), "env");
    }
    // A relative directory is under the product root, as every path the files service takes is.
    const cwd = typeof fields.cwd === "string"
      ? path.resolve(this.context.productRoot, withoutNul(fields.cwd, "cwd"))
      : this.context.productRoot;
    let child: StartedProcess | PtyProcess;
    try {
      const environment = fields.clearEnv === true ? env : { ...this.context.environment, ...env };
      const tty = terminalSize(fields.tty);
      child = tty
        ? startInPty(program, args, { cwd, environment, ...tty })
        : await startProcess(program, args, { cwd, environment });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw notFound(program, cwd);
      if (code === "EACCES") {
        throw new ServiceError("permission-denied", `cannot start "${program}": permission denied`, program);
      }
      throw e;
    }
    const id = this.#nextId++;
    const launched: Launched = {
      id,
      owner,
      program,
      args,
      child,
      startedAt: Date.now(),
      exited: null,
      exit: null as never,
    };
    const pumps = (["stdout", "stderr"] as const).map((stream) => this.#pump(launched, stream));
    launched.exit = child.exit.then(async (status) => {
      await Promise.all(pumps); // every byte of output goes out before the exit event
      launched.exited = status;
      this.context.statsChanged();
      await this.context.emit(owner, ServiceEvent.ProcessExit, { id, ...status }).catch(() => {});
      return status;
    });
    this.#procs.set(id, launched);
    this.context.statsChanged();
    return { fields: { id, pid: child.pid } };
  }

  /** Forwards one output stream, pausing the pipe while each chunk waits for ring space. */
  #pump(p: Launched, stream: "stdout" | "stderr"): Promise<void> {
    const source = p.child[stream];
    return new Promise<void>((resolve) => {
      let pending = Promise.resolve();
      source.on("data", (chunk: Uint8Array) => {
        source.pause();
        pending = pending
          .then(() => this.context.emit(p.owner, ServiceEvent.ProcessOutput, { id: p.id, stream }, chunk))
          .catch(() => {})
          .finally(() => source.resume());
      });
      source.once("close", () => pending.then(resolve));
    });
  }
}
