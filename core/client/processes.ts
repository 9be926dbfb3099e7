/**
 * The processes service as a product author calls it: start programs,
 * stream their output as it comes, feed stdin, signal and wait. Output and
 * exit events from the host are routed here, to the process they belong to.
 *
 * @example
 * ```ts
 * const p = await session.processes.start({ program: "systemctl", args: ["restart", "app"] });
 * for await (const chunk of p.stdout) console.log(new TextDecoder().decode(chunk));
 * const { code } = await p.wait();
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import {
  type ExitStatus,
  type ProcessEntry,
  ServiceCode,
  ServiceEvent,
  type StartOptions,
} from "../session/contract.ts";
import { abortable, type CallOptions } from "./abort.ts";
import type { SessionCalls } from "./calls.ts";

export type { ExitStatus, ProcessEntry, StartOptions };

/** Output as it arrives, as an async iterable of chunks. */
class OutputStream implements AsyncIterable<Uint8Array> {
  #chunks: Uint8Array[] = [];
  #done = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  push(c: Uint8Array) {
    this.#chunks.push(c);
    this.#notify();
  }
  end(error?: Error) {
    this.#done = true;
    this.#error ??= error ?? null;
    this.#notify();
  }
  #notify() {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.#chunks.length > 0) yield this.#chunks.shift()!;
      else if (this.#done) {
        if (this.#error) throw this.#error;
        return;
      } else await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

/**
 * A process launched on the agent's machine.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const p = await session.processes.start({ program: "cat" });
 * await p.write("echo me");
 * await p.closeStdin();
 * console.log(new TextDecoder().decode(await p.output()), await p.wait()); // echo me { code: 0, signal: null }
 * await session.close();
 * agent.close();
 * ```
 */
export class RemoteProcess {
  pid = 0;
  readonly stdout: OutputStream = new OutputStream();
  readonly stderr: OutputStream = new OutputStream();
  #exit: Promise<ExitStatus>;
  #resolveExit!: (s: ExitStatus) => void;
  #rejectExit!: (e: Error) => void;
  exitStatus: ExitStatus | null = null;

  constructor(readonly session: SessionCalls, readonly id: number) {
    this.#exit = new Promise((resolve, reject) => {
      this.#resolveExit = resolve;
      this.#rejectExit = reject;
    });
    this.#exit.catch(() => {});
  }

  pushOutput(stream: "stdout" | "stderr", data: Uint8Array) {
    this[stream].push(data);
  }

  pushExit(code: number | null, signal: string | null) {
    this.exitStatus = { code, signal };
    this.stdout.end();
    this.stderr.end();
    this.#resolveExit(this.exitStatus);
  }

  fail(error: Error) {
    if (this.exitStatus) return;
    this.stdout.end(error);
    this.stderr.end(error);
    this.#rejectExit(error);
  }

  /**
   * Resolves when the process has exited and all its output has arrived. Aborting `options.signal`
   * rejects with an `AbortedError` and stops only the waiting: the process runs on (end it
   * with {@link RemoteProcess.signal}), and a later `wait()` still gets its exit.
   */
  wait(options: CallOptions = {}): Promise<ExitStatus> {
    return abortable(this.#exit, options.signal);
  }

  /** All of stdout (or stderr) until the process ends. */
  async output(stream: "stdout" | "stderr" = "stdout"): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const c of this[stream]) parts.push(c);
    return concat(parts);
  }

  async write(data: Uint8Array | string): Promise<void> {
    await this.session.call(
      ServiceCode.ProcessWrite,
      { id: this.id },
      typeof data === "string" ? new TextEncoder().encode(data) : data,
    );
  }

  async closeStdin(): Promise<void> {
    await this.session.call(ServiceCode.ProcessCloseStdin, { id: this.id });
  }

  /**
   * Sets the size of the terminal of a process started with `tty`; it gets SIGWINCH.
   *
   * @example
   * ```ts
   * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
   * const session = await agent.openSession("buildmaster");
   * const p = await session.processes.start({ program: "sh", args: ["-c", "sleep 0.5; stty size"], tty: { rows: 24, cols: 80 } });
   * await p.resize(40, 132);
   * console.log(new TextDecoder().decode(await p.output()).trim()); // 40 132
   * await session.close();
   * agent.close();
   * ```
   */
  async resize(rows: number, cols: number): Promise<void> {
    await this.session.call(ServiceCode.ProcessResize, { id: this.id, rows, cols });
  }

  /**
   * Sends a signal (SIGTERM by default) to the program; SIGKILL ends the children it started too
   * (its process group). False if the process had already exited.
   */
  async signal(signal = "SIGTERM"): Promise<boolean> {
    return (await this.session.call(ServiceCode.ProcessSignal, { id: this.id, signal })).fields.delivered;
  }
}

/** Stdin up to this size goes in the run request itself (the rest of a frame is left for the options). */
const RUN_STDIN_MAX = 960 * 1024;

/**
 * Programs on the agent's machine. Owns the session's processes and routes their events.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const { code, stdout } = await session.processes.run({ program: "sh", args: ["-c", "echo $GREETING"], env: { GREETING: "hi" } });
 * console.log(code, new TextDecoder().decode(stdout)); // 0 hi
 * console.log((await session.processes.list()).length); // 1
 * await session.close();
 * agent.close();
 * ```
 */
export class ProcessesApi {
  /** Processes by id, created on first sight (output may arrive before the start reply). */
  readonly #procs = new Map<number, RemoteProcess>();

  constructor(readonly session: SessionCalls) {
    session.onEvent(
      ServiceEvent.ProcessOutput,
      (fields, data) => this.#byId(fields.id).pushOutput(fields.stream ?? "stdout", data.slice()),
    );
    session.onEvent(
      ServiceEvent.ProcessExit,
      (fields) => this.#byId(fields.id).pushExit(fields.code ?? null, fields.signal ?? null),
    );
    session.onEnd((error) => {
      for (const p of this.#procs.values()) p.fail(error);
    });
  }

  #byId(id: number): RemoteProcess {
    let p = this.#procs.get(id);
    if (!p) this.#procs.set(id, p = new RemoteProcess(this.session, id));
    return p;
  }

  /**
   * Starts a program (no shell: pass `sh`, `["-c", …]` for one). Output streams as it comes.
   * Aborting `options.signal` rejects with an `AbortedError`; a program the agent started
   * meanwhile runs on in the session (`list()` shows it; the session's end stops it).
   */
  async start(options: StartOptions & CallOptions): Promise<RemoteProcess> {
    const { signal, ...start } = options;
    const { fields } = await this.session.call(ServiceCode.ProcessStart, start, undefined, { signal });
    const p = this.#byId(fields.id);
    p.pid = fields.pid;
    return p;
  }

  /** Runs a program to the end and returns its exit status and output. */
  async run(
    options: StartOptions & { stdin?: Uint8Array | string },
  ): Promise<ExitStatus & { stdout: Uint8Array; stderr: Uint8Array }> {
    const { stdin, ...start } = options;
    const input = typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin ?? new Uint8Array(0);
    let p: RemoteProcess;
    if (input.length <= RUN_STDIN_MAX) {
      // One message: the reply comes after the exit event, so every byte of output is already here.
      const { fields } = await this.session.call(ServiceCode.ProcessRun, { ...start }, input);
      p = this.#byId(fields.id);
      p.pid = fields.pid;
    } else {
      p = await this.start(start);
      await p.write(input);
      await p.closeStdin();
    }
    const [stdout, stderr, status] = await Promise.all([p.output("stdout"), p.output("stderr"), p.wait()]);
    return { ...status, stdout, stderr };
  }

  /** Every process this session launched, running or ended. */
  async list(): Promise<ProcessEntry[]> {
    return (await this.session.call(ServiceCode.ProcessList, {})).fields.processes;
  }
}
