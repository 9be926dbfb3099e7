/**
 * The built-in services as a product author calls them: files, processes
 * and system facts on the agent's machine. Bulk data moves in pipelined
 * chunks, so a large transfer keeps the channel full without holding the
 * whole file in memory.
 *
 * @example
 * ```ts
 * await session.files.writeFile("/srv/app/config.json", bytes);
 * for await (const chunk of session.files.readStream("/var/log/app.log")) sink(chunk);
 * const p = await session.processes.start({ program: "systemctl", args: ["restart", "app"] });
 * const { code } = await p.wait();
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import { NotFoundError } from "../errors.ts";
import type { Envelope } from "../session/protocol.ts";
import { ServiceCode } from "../session/protocol.ts";

/** What the services need from a session. */
interface SessionCalls {
  call<F = Record<string, unknown>>(code: number, fields?: Record<string, unknown>, data?: Uint8Array): Promise<Envelope<F>>;
  processById(id: number): RemoteProcess;
}

/** Bytes per read or write request in whole-file transfers. */
export const TRANSFER_CHUNK = 512 * 1024;
/** Requests kept in flight during a transfer. */
export const TRANSFER_WINDOW = 6;

export interface FileInfo {
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  mode: number;
  mtimeMs: number;
  atimeMs: number;
}

export interface ListEntry {
  path: string;
  type: FileInfo["type"];
  size: number;
  mtimeMs: number;
}

type Source = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** An open file on the agent's machine. Positions default to the handle's own. */
export class RemoteFile {
  constructor(readonly session: SessionCalls, readonly handle: number, readonly size: number) {}

  /** Up to `length` bytes; an empty result means end of file. */
  async read(length = TRANSFER_CHUNK, position?: number): Promise<Uint8Array> {
    return (await this.session.call(ServiceCode.FileRead, { handle: this.handle, length, position })).data;
  }

  async write(data: Uint8Array, position?: number): Promise<number> {
    return (await this.session.call<{ written: number }>(ServiceCode.FileWrite, { handle: this.handle, position }, data)).fields.written;
  }

  async seek(position: number, whence: "start" | "current" | "end" = "start"): Promise<number> {
    return (await this.session.call<{ position: number }>(ServiceCode.FileSeek, { handle: this.handle, position, whence })).fields.position;
  }

  async close(): Promise<void> {
    await this.session.call(ServiceCode.FileClose, { handle: this.handle });
  }
}

export class FilesApi {
  constructor(readonly session: SessionCalls) {}

  async stat(path: string): Promise<FileInfo> {
    return (await this.session.call<FileInfo>(ServiceCode.FileStat, { path })).fields;
  }

  /** False only when the path does not exist; other failures still throw. */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /** Lists a directory; masks are globs (`*`, `?`, `**`) over paths relative to it. */
  async list(path: string, options: { recursive?: boolean; include?: string[]; exclude?: string[] } = {}): Promise<ListEntry[]> {
    return (await this.session.call<{ entries: ListEntry[] }>(ServiceCode.FileList, { path, ...options })).fields.entries;
  }

  async mkdir(path: string, options: { recursive?: boolean; mode?: number } = {}): Promise<void> {
    await this.session.call(ServiceCode.FileMkdir, { path, ...options });
  }

  async delete(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.session.call(ServiceCode.FileDelete, { path, ...options });
  }

  async copy(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    await this.session.call(ServiceCode.FileCopy, { from, to, ...options });
  }

  async move(from: string, to: string): Promise<void> {
    await this.session.call(ServiceCode.FileMove, { from, to });
  }

  async setTimes(path: string, times: { atime?: Date | number; mtime?: Date | number }): Promise<void> {
    const ms = (t?: Date | number) => (t === undefined ? undefined : typeof t === "number" ? t : t.getTime());
    await this.session.call(ServiceCode.FileSetTimes, { path, atimeMs: ms(times.atime), mtimeMs: ms(times.mtime) });
  }

  async setMode(path: string, mode: number): Promise<void> {
    await this.session.call(ServiceCode.FileSetMode, { path, mode });
  }

  /** SHA-256 of the file on the agent's machine, as hex, and its size. */
  async sha256(path: string): Promise<{ sha256: string; size: number }> {
    return (await this.session.call<{ sha256: string; size: number }>(ServiceCode.FileSha256, { path })).fields;
  }

  /** Opens a file: flags as in fopen (`r`, `r+`, `w`, `wx`, `w+`, `a`, `ax`, `a+`). */
  async open(path: string, flags = "r", mode?: number): Promise<RemoteFile> {
    const { fields } = await this.session.call<{ handle: number; size: number }>(ServiceCode.FileOpen, { path, flags, mode });
    return new RemoteFile(this.session, fields.handle, fields.size);
  }

  /** Streams a file of any size in order, with several reads in flight. */
  async *readStream(path: string): AsyncGenerator<Uint8Array> {
    const file = await this.open(path, "r");
    try {
      let next = 0;
      const inflight: Promise<Uint8Array>[] = [];
      // Reads go out up to the size seen at open; past it, one at a time until one comes back empty.
      const fill = () => {
        while (inflight.length < TRANSFER_WINDOW && (next < file.size || inflight.length === 0)) {
          inflight.push(file.read(TRANSFER_CHUNK, next));
          next += TRANSFER_CHUNK;
        }
      };
      fill();
      while (inflight.length > 0) {
        const chunk = await inflight.shift()!;
        if (chunk.length === 0) break;
        yield chunk;
        fill();
      }
      await Promise.allSettled(inflight);
    } finally {
      await file.close().catch(() => {});
    }
  }

  /** The whole file. */
  async readFile(path: string): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const c of this.readStream(path)) parts.push(c);
    return concat(parts);
  }

  /** Writes (creates or truncates) a file from bytes or a stream of chunks; returns its size. */
  async writeFile(path: string, source: Source, options: { mode?: number } = {}): Promise<number> {
    const file = await this.open(path, "w", options.mode);
    let position = 0;
    const inflight: Promise<number>[] = [];
    try {
      for await (const chunk of chunks(source)) {
        for (let o = 0; o < chunk.length; o += TRANSFER_CHUNK) {
          const piece = chunk.subarray(o, Math.min(chunk.length, o + TRANSFER_CHUNK));
          inflight.push(file.write(piece, position));
          position += piece.length;
          if (inflight.length >= TRANSFER_WINDOW) await inflight.shift();
        }
      }
      await Promise.all(inflight);
    } finally {
      await Promise.allSettled(inflight);
      await file.close().catch(() => {});
    }
    return position;
  }
}

async function* chunks(source: Source): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) yield source;
  else yield* source as AsyncIterable<Uint8Array>;
}

/** How to start a process. */
export interface StartOptions {
  program: string;
  args?: string[];
  /** Working directory; the product's root by default. */
  cwd?: string;
  /** Added to (or, with clearEnv, replacing) the agent's environment. */
  env?: Record<string, string>;
  clearEnv?: boolean;
}

/** The outcome of a process: exit code, or the signal that ended it. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

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

/** A process launched on the agent's machine. */
export class RemoteProcess {
  pid = 0;
  readonly stdout = new OutputStream();
  readonly stderr = new OutputStream();
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

  /** Resolves when the process has exited and all its output has arrived. */
  wait(): Promise<ExitStatus> {
    return this.#exit;
  }

  /** All of stdout (or stderr) until the process ends. */
  async output(stream: "stdout" | "stderr" = "stdout"): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const c of this[stream]) parts.push(c);
    return concat(parts);
  }

  async write(data: Uint8Array | string): Promise<void> {
    await this.session.call(ServiceCode.ProcessWrite, { id: this.id }, typeof data === "string" ? new TextEncoder().encode(data) : data);
  }

  async closeStdin(): Promise<void> {
    await this.session.call(ServiceCode.ProcessCloseStdin, { id: this.id });
  }

  /** Sends a signal (SIGTERM by default); false if the process had already exited. */
  async signal(signal = "SIGTERM"): Promise<boolean> {
    return (await this.session.call<{ delivered: boolean }>(ServiceCode.ProcessSignal, { id: this.id, signal })).fields.delivered;
  }
}

export class ProcessesApi {
  constructor(readonly session: SessionCalls) {}

  /** Starts a program (no shell: pass `sh`, `["-c", …]` for one). Output streams as it comes. */
  async start(options: StartOptions): Promise<RemoteProcess> {
    const { fields } = await this.session.call<{ id: number; pid: number }>(ServiceCode.ProcessStart, { ...options });
    const p = this.session.processById(fields.id);
    p.pid = fields.pid;
    return p;
  }

  /** Runs a program to the end and returns its exit status and output. */
  async run(options: StartOptions & { stdin?: Uint8Array | string }): Promise<ExitStatus & { stdout: Uint8Array; stderr: Uint8Array }> {
    const p = await this.start(options);
    if (options.stdin !== undefined) await p.write(options.stdin);
    await p.closeStdin();
    const [stdout, stderr, status] = await Promise.all([p.output("stdout"), p.output("stderr"), p.wait()]);
    return { ...status, stdout, stderr };
  }

  async list(): Promise<Array<{ id: number; pid: number; program: string; args: string[]; running: boolean; code: number | null; signal: string | null }>> {
    return (await this.session.call<{ processes: [] }>(ServiceCode.ProcessList)).fields.processes;
  }
}

export class SystemApi {
  constructor(readonly session: SessionCalls) {}

  async info(): Promise<{ hostname: string; os: string; arch: string; cpus: number; memory: { total: number; free: number }; uptimeSeconds: number; pid: number; extensions: unknown[] }> {
    return (await this.session.call(ServiceCode.SystemInfo)).fields as never;
  }

  async env(): Promise<Record<string, string>> {
    return (await this.session.call<{ vars: Record<string, string> }>(ServiceCode.SystemEnv)).fields.vars;
  }

  async productRoot(): Promise<string> {
    return (await this.session.call<{ path: string }>(ServiceCode.SystemProductRoot)).fields.path;
  }
}
