/**
 * The files service as a product author calls it. Bulk data moves in
 * pipelined chunks, so a large transfer keeps the connection full without
 * holding the whole file in memory.
 *
 * @example
 * ```ts
 * await session.files.writeFile("/srv/app/config.json", bytes);
 * for await (const chunk of session.files.readStream("/var/log/app.log")) sink(chunk);
 * ```
 * @module
 */
import { allocateUninitialized, concat } from "../bytes.ts";
import { NotFoundError, ProtocolError } from "../errors.ts";
import {
  BATCH_MAX_BYTES,
  BATCH_MAX_FILES,
  type FileInfo,
  type ListEntry,
  type OpenFlags,
  ServiceCode,
} from "../session/contract.ts";
import { type CallOptions, throwIfAborted } from "./abort.ts";
import type { SessionCalls } from "./calls.ts";
import { type LinkMemory, type SentRequest, TransferWindow } from "./window.ts";
import type { WindowReports } from "./window-report.ts";

export type { FileInfo, ListEntry, OpenFlags };

/** Bytes per read or write request in whole-file transfers. */
export const TRANSFER_CHUNK = 512 * 1024;
/**
 * The most a transfer keeps in flight unless {@link TransferOptions.maxWindowBytes} says less: 15 MiB,
 * a 50 ms round trip at 300 MiB/s, under the agent's bounds (16 MiB of request bodies per session,
 * 16 MiB of unacknowledged replies per attachment). Within it the window follows the measured
 * bandwidth-delay product (core/client/window.ts): 4 requests (2 MiB) on a short link, more on a long one.
 */
export const TRANSFER_WINDOW_MAX_BYTES = 15 * 1024 * 1024;

/**
 * A source `writeFile` reads into memory of its own: `readInto(into)` fills `into` from its start and
 * resolves with how many bytes it put there, 0 or null at the end. The library reuses each buffer
 * once the agent has answered the write that carried it (so no resume can send it again): a
 * transfer allocates a window's worth of buffers once instead of new memory per chunk, which a
 * stream's chunks cost in allocation and garbage collection (about 0.5-1 CPU-s/GiB on Node).
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const local = path.join(os.tmpdir(), `release-${process.pid}.bin`);
 * fs.writeFileSync(local, new Uint8Array(3 * 1024 * 1024));
 * const handle = await fs.promises.open(local);
 * const reader: ChunkReader = {
 *   readInto: async (into) => (await handle.read(into, 0, into.length, null)).bytesRead,
 * };
 * console.log(await session.files.writeFile("release.bin", reader)); // 3145728
 * await handle.close();
 * fs.rmSync(local);
 * await session.close();
 * agent.close();
 * ```
 */
export interface ChunkReader {
  readInto(into: Uint8Array): Promise<number | null>;
}

/** What `writeFile` writes: text (as UTF-8), bytes, a stream of chunks, or a {@link ChunkReader}. */
type Source = string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array> | ChunkReader;

/**
 * An open file on the agent's machine. Positions default to the handle's own.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const file = await session.files.open("notes.txt", "w+");
 * await file.write(new TextEncoder().encode("hello"));
 * await file.seek(0);
 * console.log(new TextDecoder().decode(await file.read(5))); // hello
 * await file.close();
 * await session.close();
 * agent.close();
 * ```
 */
export class RemoteFile {
  constructor(readonly session: SessionCalls, readonly handle: number, readonly size: number) {}

  /** Up to `length` bytes; an empty result means end of file. */
  async read(length = TRANSFER_CHUNK, position?: number, options: CallOptions = {}): Promise<Uint8Array> {
    const request = { handle: this.handle, length, position };
    return (await this.session.call(ServiceCode.FileRead, request, undefined, options)).data;
  }

  async write(data: Uint8Array, position?: number, options: CallOptions = {}): Promise<number> {
    const { fields } = await this.session.call(ServiceCode.FileWrite, { handle: this.handle, position }, data, options);
    return fields.written;
  }

  async seek(position: number, whence: "start" | "current" | "end" = "start"): Promise<number> {
    return (await this.session.call(ServiceCode.FileSeek, { handle: this.handle, position, whence })).fields.position;
  }

  /** Closes the handle. Opened with `{ sha256: true }` and used in order from the start, it returns the host's digest of those bytes. */
  async close(): Promise<{ sha256?: string; size?: number }> {
    return (await this.session.call(ServiceCode.FileClose, { handle: this.handle })).fields;
  }
}

/**
 * Files and directories on the agent's machine.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * await session.files.mkdir("app/config");
 * await session.files.writeFile("app/config/app.json", new TextEncoder().encode("{}"));
 * console.log((await session.files.list("app", { recursive: true })).map((e) => e.path)); // ["config", "config/app.json"]
 * console.log((await session.files.sha256("app/config/app.json")).size); // 2
 * await session.files.delete("app", { recursive: true });
 * await session.close();
 * agent.close();
 * ```
 */
export class FilesApi {
  /**
   * `agentWindowBytes`: the most the agent asks a transfer to keep in flight (its `transferWindowMiB`).
   * `learned`: what earlier transfers on the same link learned (the connection's); each transfer starts there.
   */
  constructor(
    readonly session: SessionCalls,
    readonly agentWindowBytes = TRANSFER_WINDOW_MAX_BYTES,
    readonly learned: LinkMemory = {},
    /** Where this attachment's transfer windows are reported to the agent, if it takes reports. */
    readonly reports?: WindowReports,
  ) {}

  /** A transfer's window, counted in {@link reports} until `untrack()` (call it when the transfer ends). */
  #window(options: TransferOptions): { window: TransferWindow; untrack: () => void } {
    const reports = this.reports;
    const window = transferWindow(options, this.agentWindowBytes, this.learned, reports && (() => reports.changed()));
    return { window, untrack: reports?.track(window) ?? (() => {}) };
  }

  async stat(path: string): Promise<FileInfo> {
    return (await this.session.call(ServiceCode.FileStat, { path })).fields;
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
  async list(
    path: string,
    options: { recursive?: boolean; include?: string[]; exclude?: string[] } = {},
  ): Promise<ListEntry[]> {
    return (await this.session.call(ServiceCode.FileList, { path, ...options })).fields.entries;
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

  /**
   * Creates a symbolic link at `path` holding `target` (not resolved: a relative target is
   * relative to the link's directory); fails with `AlreadyExistsError` when anything is at `path`.
   */
  async symlink(target: string, path: string): Promise<void> {
    await this.session.call(ServiceCode.FileSymlink, { path, target });
  }

  /** SHA-256 of the file on the agent's machine, as hex, and its size. */
  async sha256(path: string): Promise<{ sha256: string; size: number }> {
    return (await this.session.call(ServiceCode.FileSha256, { path })).fields;
  }

  /**
   * Opens a file: flags as in fopen (`r`, `r+`, `w`, `wx`, `w+`, `a`, `ax`, `a+`). An open aborted
   * through `signal` after it was sent may still open the file on the agent: the session's end closes it.
   */
  async open(
    path: string,
    flags: OpenFlags = "r",
    mode?: number,
    options: { sha256?: boolean } & CallOptions = {},
  ): Promise<RemoteFile> {
    const { fields } = await this.session.call(
      ServiceCode.FileOpen,
      { path, flags, mode, ...(options.sha256 ? { sha256: true } : {}) },
      undefined,
      { signal: options.signal },
    );
    return new RemoteFile(this.session, fields.handle, fields.size);
  }

  /**
   * Streams a file of any size in order, with several reads in flight.
   * `onSha256` receives the agent's SHA-256 of exactly the bytes it sent,
   * computed as they passed (no second read), after the last chunk: compare
   * it with your own digest of what arrived. With `reuseChunks`, each chunk is
   * valid only until the loop asks for the next one (see {@link ReadStreamOptions}).
   * Aborting `signal` ends the loop with an `AbortedError`: no more reads
   * are sent, and the file is closed on the agent. Once the last chunk is in,
   * the loop ends without waiting for the close's answer (with `onSha256`, it
   * waits: the digest comes with it); the agent closes the file behind the reads.
   */
  async *readStream(path: string, options: ReadStreamOptions = {}): AsyncGenerator<Uint8Array> {
    const { signal } = options;
    const file = await this.open(path, "r", undefined, { sha256: options.onSha256 !== undefined, signal });
    let closed = false;
    const { window, untrack } = this.#window(options);
    try {
      let next = 0;
      const inflight: Promise<Uint8Array>[] = [];
      // Reads go out up to the size seen at open, and one past it that finds the end with the last
      // data; past that (the file grew), one at a time until one comes back empty.
      const fill = () => {
        while (inflight.length < window.requests && (next < file.size + TRANSFER_CHUNK || inflight.length === 0)) {
          inflight.push(measured(window, file.read(TRANSFER_CHUNK, next, { signal }), (c) => c.length));
          next += TRANSFER_CHUNK;
        }
      };
      fill();
      while (inflight.length > 0) {
        const chunk = await inflight.shift()!;
        if (chunk.length === 0) break;
        yield chunk;
        if (options.reuseChunks) this.session.recycle(chunk);
        throwIfAborted(signal);
        fill();
      }
      await Promise.allSettled(inflight);
      closed = true;
      if (options.onSha256) {
        const digest = await file.close(); // the agent's digest comes with the close's answer
        options.onSha256(requireDigest(digest, path), digest.size ?? 0);
      } else {
        // Every byte is here: the agent closes the handle behind the reads, no round trip waited for.
        file.close().catch(() => {});
      }
    } finally {
      untrack();
      if (!closed) await file.close().catch(() => {});
    }
  }

  /**
   * Writes many small files in as few requests as fit ({@link BATCH_MAX_BYTES} of data and
   * {@link BATCH_MAX_FILES} files each): one round trip for what would take four per file. Each
   * file lands whole under its name or not at all; the result gives each one's SHA-256 as the
   * agent wrote it, in order. Parent directories must exist. Larger files: use `writeFile`.
   * `exclusive` creates each file under its own name and fails with `AlreadyExistsError` where
   * one exists, instead of replacing it through a temporary name (one rename less per file).
   */
  async writeFiles(
    files: ReadonlyArray<{ path: string; data: Uint8Array; mode?: number }>,
    options: { exclusive?: boolean } = {},
  ): Promise<Array<{ path: string; size: number; sha256: string }>> {
    const out: Array<{ path: string; size: number; sha256: string }> = [];
    for (const batch of batches(files, (f) => f.data.length)) {
      if (batch.length === 1 && batch[0].data.length > BATCH_MAX_BYTES) {
        const [f] = batch; // too large for a batch: streamed, with the agent's digest as it passes
        let sha256 = "";
        await this.writeFile(f.path, f.data, { mode: f.mode, onSha256: (hex) => (sha256 = hex) });
        out.push({ path: f.path, size: f.data.length, sha256 });
        continue;
      }
      const { fields } = await this.session.call(
        ServiceCode.FileWriteBatch,
        {
          files: batch.map((f) => ({
            path: f.path,
            size: f.data.length,
            ...(f.mode !== undefined ? { mode: f.mode } : {}),
          })),
          ...(options.exclusive ? { exclusive: true } : {}),
        },
        concat(batch.map((f) => f.data)),
      );
      batch.forEach((f, i) => out.push({ path: f.path, size: f.data.length, sha256: fields.sha256[i] }));
    }
    return out;
  }

  /**
   * Reads many small files in as few requests as fit, in order, each with the SHA-256 the agent
   * computed of the bytes it sent. A file too large for a batch is read with `readFile` instead.
   */
  async readFiles(paths: readonly string[]): Promise<Array<{ path: string; data: Uint8Array; sha256: string }>> {
    const out: Array<{ path: string; data: Uint8Array; sha256: string }> = [];
    let next = 0;
    while (next < paths.length) {
      const asked = paths.slice(next, next + BATCH_MAX_FILES);
      const { fields, data } = await this.session.call(ServiceCode.FileReadBatch, { paths: asked });
      if (fields.files.length === 0) {
        // The first alone is larger than a batch: stream it, with the agent's digest as it passes.
        let sha256 = "";
        const data = await this.readFile(asked[0], { onSha256: (hex) => (sha256 = hex) });
        out.push({ path: asked[0], data, sha256 });
        next++;
        continue;
      }
      let offset = 0;
      fields.files.forEach((f, i) => {
        out.push({ path: asked[i], data: data.subarray(offset, offset + f.size), sha256: f.sha256 });
        offset += f.size;
      });
      next += fields.files.length;
    }
    return out;
  }

  /** The whole file (`onSha256` as for {@link FilesApi.readStream}). */
  async readFile(path: string, options: TransferOptions = {}): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    // Kept: never reuseChunks.
    const { onSha256, signal, maxWindowBytes } = options;
    for await (const c of this.readStream(path, { onSha256, signal, maxWindowBytes })) parts.push(c);
    return concat(parts);
  }

  /**
   * Writes (creates or truncates) a file from text (UTF-8), bytes or a stream of chunks;
   * returns its size. `onSha256` receives the agent's SHA-256 of exactly the
   * bytes it wrote, computed as they passed: compare it with your own.
   * Aborting `signal` rejects with an `AbortedError`: no more of the source
   * is read or sent, and the file is closed on the agent with what arrived so far.
   * `exclusive` creates the file and fails with `AlreadyExistsError` if anything is at `path`,
   * a symlink included (open flags "wx"): nothing planted there is written through.
   * A stream's chunks are copied into the library's own 512 KiB buffers as they come (reused once
   * the agent has answered them), so a source may refill a chunk's memory once it yields the next,
   * and small chunks still go as whole requests. Text and bytes are sent from where they are: do
   * not change them until this resolves.
   */
  async writeFile(
    path: string,
    source: Source,
    options: { mode?: number; exclusive?: boolean } & TransferOptions = {},
  ): Promise<number> {
    const { signal } = options;
    const flags = options.exclusive ? "wx" : "w";
    const file = await this.open(path, flags, options.mode, { sha256: options.onSha256 !== undefined, signal });
    let position = 0;
    const inflight: Promise<number>[] = [];
    const { window, untrack } = this.#window(options);
    let closing: Promise<{ sha256?: string; size?: number }> | null = null;
    const free: Uint8Array[] = []; // a reader's buffers whose writes were answered
    // A stream's chunks are gathered into the library's own buffers: whole requests, whatever the
    // chunks' size, and a source may refill a chunk's memory once it yields the next.
    const stream = isStream(source) ? gathered(source) : null; // reads nothing until the first readInto
    const reader = isChunkReader(source) ? source : stream;
    const reuse = reader !== null;
    try {
      for await (const piece of reader ? readInto(reader, free) : pieces(source as string | Uint8Array)) {
        throwIfAborted(signal);
        const written = measured(window, file.write(piece, position, { signal }), () => piece.length);
        // Answered means acknowledged (the reply's header carries it), so no resume sends it again.
        inflight.push(reuse ? handled(written.then((n) => (free.push(whole(piece)), n))) : written);
        position += piece.length;
        while (inflight.length >= window.requests) await inflight.shift();
      }
      // One handle's requests run in order: the close follows the last write without waiting a round trip for it.
      closing = file.close();
      closing.catch(() => {}); // awaited below, after the writes: a failed write's error is the one to report
      await Promise.all(inflight);
      const digest = await closing;
      if (options.onSha256) options.onSha256(requireDigest(digest, path), digest.size ?? position);
    } finally {
      untrack();
      await stream?.stop(); // a source left part-read (an error, an abort) is told to let go of what it holds
      await Promise.allSettled(inflight);
      await (closing ?? file.close()).catch(() => {});
    }
    return position;
  }
}

/**
 * For whole-file transfers: `onSha256(hex, size)` is called with the agent's
 * SHA-256 of the bytes as they passed, once the transfer is complete; aborting
 * `signal` (from {@link CallOptions}) stops the transfer with an `AbortedError`.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const options: TransferOptions = { onSha256: (hex, size) => console.log(size, hex.slice(0, 8)) }; // 5 2cf24dba
 * await session.files.writeFile("hello.txt", new TextEncoder().encode("hello"), options);
 * await session.close();
 * agent.close();
 * ```
 */
export interface TransferOptions extends CallOptions {
  onSha256?: (sha256: string, size: number) => void;
  /**
   * Caps the bytes kept in flight (default and most: {@link TRANSFER_WINDOW_MAX_BYTES}, or less
   * where the agent's `transferWindowMiB` says so); the window grows up to it only as far as the
   * link's measured bandwidth-delay product needs.
   */
  maxWindowBytes?: number;
}

/**
 * For {@link FilesApi.readStream}. `reuseChunks: true` lets a later chunk arrive in the memory of
 * one the loop is done with, instead of a new 512 KiB each: a chunk is valid only until the loop
 * asks for the next. For a consumer that hashes, writes or sends each chunk before it takes the
 * next (a download's client spends less CPU, measured); one that keeps chunks must copy them.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * await session.files.writeFile("hello.txt", "hello");
 * let size = 0;
 * for await (const chunk of session.files.readStream("hello.txt", { reuseChunks: true })) size += chunk.length; // used, not kept
 * console.log(size); // 5
 * await session.close();
 * agent.close();
 * ```
 */
export interface ReadStreamOptions extends TransferOptions {
  reuseChunks?: boolean;
}

/** Splits `items` into runs that fit one batch request. */
function* batches<T>(items: readonly T[], sizeOf: (item: T) => number): Generator<T[]> {
  let batch: T[] = [], bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (batch.length > 0 && (batch.length >= BATCH_MAX_FILES || bytes + size > BATCH_MAX_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

function requireDigest(reply: { sha256?: string }, path: string): string {
  if (typeof reply.sha256 !== "string") {
    throw new ProtocolError(`the agent returned no SHA-256 for ${path} (an agent older than this library?)`);
  }
  return reply.sha256;
}

/**
 * Marks a request in flight as handled: when one of several fails, the
 * others fail too while nobody awaits them yet, and an unhandled rejection
 * would end the product's process. They are still awaited (and so throw)
 * in order.
 */
function handled<T>(request: Promise<T>): Promise<T> {
  request.catch(() => {});
  return request;
}

/**
 * The window for one transfer, within the caller's cap, the agent's and the library's, starting
 * from what the session's earlier transfers that way learned (`memory`, updated as it runs).
 */
function transferWindow(
  options: TransferOptions,
  agentWindowBytes: number,
  memory: LinkMemory,
  onResize?: () => void,
): TransferWindow {
  const caller = options.maxWindowBytes ?? TRANSFER_WINDOW_MAX_BYTES;
  const cap = Math.min(caller, agentWindowBytes, TRANSFER_WINDOW_MAX_BYTES);
  return new TransferWindow(TRANSFER_CHUNK, cap, { memory, onResize });
}

/** A request in flight, {@link handled}, whose return sizes `window` with the bytes it moved. */
function measured<T>(window: TransferWindow, request: Promise<T>, bytes: (result: T) => number): Promise<T> {
  const sent: SentRequest = window.sent();
  return handled(request.then((result) => {
    window.done(sent, bytes(result));
    return result;
  }));
}

/** Text or bytes cut into write requests of at most {@link TRANSFER_CHUNK}: views, no copies. */
function* pieces(source: string | Uint8Array): Generator<Uint8Array> {
  const bytes = typeof source === "string" ? new TextEncoder().encode(source) : source;
  for (let o = 0; o < bytes.length; o += TRANSFER_CHUNK) {
    yield bytes.subarray(o, Math.min(bytes.length, o + TRANSFER_CHUNK));
  }
}

function isChunkReader(source: Source): source is ChunkReader {
  return typeof (source as Partial<ChunkReader>).readInto === "function";
}

function isStream(source: Source): source is Iterable<Uint8Array> | AsyncIterable<Uint8Array> {
  return typeof source !== "string" && !(source instanceof Uint8Array) && !isChunkReader(source);
}

/**
 * A stream read as a {@link ChunkReader}: each `readInto` fills the buffer from as many chunks as
 * it takes, copying them, so 64 KiB chunks go as 512 KiB requests and no chunk is held afterwards.
 * `stop()` lets go of a stream left part-read (its `return()`, as `for await` would call it), and
 * never of one that ended or failed; what the stream throws as it lets go does not replace the
 * transfer's own outcome.
 */
function gathered(stream: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): ChunkReader & { stop(): Promise<void> } {
  let chunks: Iterator<Uint8Array> | AsyncIterator<Uint8Array> | null = null;
  let rest: Uint8Array = new Uint8Array(0), finished = false;
  const next = async (): Promise<Uint8Array | null> => {
    chunks ??= iterate(stream);
    try {
      const r = await chunks.next();
      if (r.done) return (finished = true, null);
      if (!(r.value instanceof Uint8Array)) {
        throw new TypeError(`a stream given to writeFile must yield Uint8Array chunks, not ${describe(r.value)}`);
      }
      return r.value;
    } catch (e) {
      finished = true;
      throw e;
    }
  };
  return {
    async readInto(into: Uint8Array): Promise<number> {
      let n = 0;
      while (n < into.length) {
        if (rest.length === 0) {
          const chunk = await next();
          if (chunk === null) break;
          rest = chunk;
          continue;
        }
        const k = Math.min(rest.length, into.length - n);
        into.set(k === rest.length ? rest : rest.subarray(0, k), n);
        n += k;
        rest = rest.subarray(k);
      }
      return n;
    },
    async stop() {
      if (finished || !chunks) return;
      finished = true;
      await Promise.resolve(chunks.return?.()).catch(() => {});
    },
  };
}

function iterate(
  stream: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Iterator<Uint8Array> | AsyncIterator<Uint8Array> {
  const s = stream as Partial<Iterable<Uint8Array> & AsyncIterable<Uint8Array>>;
  if (typeof s[Symbol.asyncIterator] === "function") return s[Symbol.asyncIterator]!();
  if (typeof s[Symbol.iterator] === "function") return s[Symbol.iterator]!();
  throw new TypeError(
    `writeFile takes text, bytes, a stream of Uint8Array chunks or a ChunkReader, not ${describe(stream)}`,
  );
}

/** A value's kind, for an error message: its constructor's name or its type. */
function describe(value: unknown): string {
  const name = (value as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  if (typeof name !== "string" || typeof value !== "object") return typeof value;
  return `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
}

/** The buffer of {@link TRANSFER_CHUNK} bytes a piece of {@link readInto} begins. */
const whole = (piece: Uint8Array) => new Uint8Array(piece.buffer, piece.byteOffset, TRANSFER_CHUNK);

/** What `reader` reads, each piece in a buffer from `free` (handed back there once written) or a new one. */
async function* readInto(reader: ChunkReader, free: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buffer = free.pop() ?? allocateUninitialized(TRANSFER_CHUNK);
    const n = (await reader.readInto(buffer)) ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > buffer.length) {
      throw new RangeError(`readInto returned ${n}, not a count from 0 to ${buffer.length}`);
    }
    if (n === 0) return;
    yield buffer.subarray(0, n);
  }
}
