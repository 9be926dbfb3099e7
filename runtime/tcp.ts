/**
 * TCP for the CLI: a {@link ByteStream} over a `node:net` socket (Node, and
 * Deno through its Node compatibility layer), and a dialer whose failures say
 * which stage went wrong.
 *
 * @example
 * ```ts
 * const stream = await dialTcp("127.0.0.1", 46336, { timeoutMs: 5000 });
 * ```
 * @module
 */
import net from "node:net";
import { ConnectionClosedError } from "../core/errors.ts";
import { DialError } from "./errors.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { allocateUninitialized } from "../core/bytes.ts";

/** Pause the socket once this much has been received but not read. */
const READ_HIGH_WATER = 1024 * 1024;
/**
 * Most a socket delivers in one turn of the event loop. Node reads a readable socket up to 32
 * times (2 MiB) before it looks at the next one, so one connection's upload would hold every other
 * connection's requests for that long; past this, the socket waits for the next turn.
 */
export const READ_TURN_BUDGET = 256 * 1024;

/** Most one read takes from the socket into a slab (Node's own read size). */
const MAX_SLAB_READ = 64 * 1024;
/** Memory a dialed socket reads into, a few reads at a time. */
const SLAB_SIZE = 256 * 1024;

/** Slabs kept for later reads once every byte read into them was recycled: enough for a socket's read-ahead. */
const SPARE_SLABS = 6;

/**
 * Reads for a socket this side dials (`onread`, on Node and Deno alike): each read lands in the
 * free tail of a slab, which reads share until a new one takes over, so a read allocates nothing
 * and skips the stream machinery a `data` event goes through (a download's client spends about
 * a seventh less CPU, measured). Nothing is copied; each chunk is a view. A slab whose every byte
 * the reader recycled ({@link ByteStream.recycle}) takes later reads again; one with bytes never
 * recycled lives while its chunks do, like any memory. A server's accepted sockets cannot be given `onread`.
 */
class SlabReads {
  /** Each slab with reads in it, by its memory: what recycle() finds a piece's slab by. */
  readonly #slabs = new WeakMap<ArrayBufferLike, Slab>();
  readonly #spare: Slab[] = [];
  /** The slab reads land in now, and how much of it they filled. */
  #current = this.#fresh();
  #used = 0;
  /** Takes each read; socketStream sets it. */
  deliver: (chunk: Uint8Array) => void = () => {};
  readonly onread = {
    buffer: (): Uint8Array => {
      if (this.#current.memory.length - this.#used < MAX_SLAB_READ) {
        this.#current.full = true;
        if (this.#current.lent === 0) this.#makeSpare(this.#current);
        this.#current = this.#spare.pop() ?? this.#fresh();
        this.#used = 0;
      }
      return this.#current.memory.subarray(this.#used, this.#used + MAX_SLAB_READ);
    },
    callback: (length: number, buffer: Uint8Array): boolean => {
      this.#used += length;
      this.#current.lent += length;
      this.deliver(buffer.subarray(0, length));
      return true; // keep reading: deliver pauses the socket itself
    },
  };

  /** The reader is done with `piece`; the last piece of a full slab makes it spare. */
  recycle(piece: Uint8Array): void {
    const slab = this.#slabs.get(piece.buffer);
    if (!slab) return;
    slab.lent -= piece.length;
    if (slab.lent === 0 && slab.full) this.#makeSpare(slab);
  }

  #fresh(): Slab {
    const slab = { memory: allocateUninitialized(SLAB_SIZE), lent: 0, full: false };
    this.#slabs.set(slab.memory.buffer, slab);
    return slab;
  }

  #makeSpare(slab: Slab): void {
    slab.full = false;
    if (this.#spare.length < SPARE_SLABS) this.#spare.push(slab);
    else this.#slabs.delete(slab.memory.buffer);
  }
}

/** A slab's memory, the bytes read into it and lent to the reader, not yet recycled, and whether reads moved on to another. */
interface Slab {
  memory: Uint8Array;
  lent: number;
  full: boolean;
}

/**
 * Wraps a connected socket. Reading pauses the socket when the consumer falls behind. `reads` is
 * given for a socket created with its `onread`; other sockets deliver through `data` events.
 */
export function socketStream(socket: net.Socket, reads?: SlabReads): ByteStream {
  return new SocketStream(socket, reads);
}

/** A {@link ByteStream} over a connected socket (see {@link socketStream}). */
class SocketStream implements ByteStream {
  readonly #socket: net.Socket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #highWater = READ_HIGH_WATER;
  #ended = false;
  #wake: (() => void) | null = null;
  /** Bytes delivered in this turn of the event loop, and which turn that is ({@link currentTurn}). */
  #turnBytes = 0;
  #turn = -1;
  readonly remote: string | undefined;
  readonly closed: Promise<void>;
  readonly recycle: ((piece: Uint8Array) => void) | undefined;

  constructor(socket: net.Socket, reads?: SlabReads) {
    this.#socket = socket;
    socket.setNoDelay(true);
    if (reads) reads.deliver = this.#deliver;
    else socket.on("data", this.#deliver);
    socket.on("end", this.#finish);
    socket.on("close", this.#finish);
    socket.on("error", this.#finish);
    this.closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    this.remote = socket.remoteAddress ? `${formatHost(socket.remoteAddress)}:${socket.remotePort}` : undefined;
    this.recycle = reads && ((piece) => reads.recycle(piece));
  }

  async read(): Promise<Uint8Array | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#wake = r));
    }
    const chunk = this.#chunks.shift()!;
    this.#buffered -= chunk.length;
    this.#resumeIfRoom();
    return chunk;
  }

  limitReads(bytes: number | null): void {
    this.#highWater = bytes ?? READ_HIGH_WATER;
    this.#resumeIfRoom();
  }

  writev(parts: readonly Uint8Array[], recycle?: () => void): Promise<void> {
    const socket = this.#socket;
    if (this.#ended || socket.destroyed) return Promise.reject(new ConnectionClosedError());
    socket.cork();
    let flowing = true;
    // Writes complete in order: the last piece's callback means all of them left.
    for (let i = 0; i < parts.length; i++) {
      flowing = socket.write(parts[i], i === parts.length - 1 ? recycle : undefined);
    }
    socket.uncork();
    return flowing ? Promise.resolve() : this.#drained();
  }

  write(data: Uint8Array): Promise<void> {
    if (this.#ended || this.#socket.destroyed) return Promise.reject(new ConnectionClosedError());
    if (this.#socket.write(data)) return Promise.resolve();
    return this.#drained();
  }

  close(): void {
    const socket = this.#socket;
    this.#ended = true;
    this.#notify();
    if (socket.writableLength === 0) return void socket.destroy();
    // Let a final record (such as "authentication failed") reach the peer first.
    socket.end();
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.once("close", () => clearTimeout(timer));
  }

  /** Takes a chunk the socket read; pauses the socket past the high water or the turn budget. */
  readonly #deliver = (data: Uint8Array): void => {
    this.#chunks.push(data);
    this.#buffered += data.length;
    const turn = currentTurn();
    if (this.#turn !== turn) {
      this.#turn = turn;
      this.#turnBytes = 0;
    }
    this.#turnBytes += data.length;
    // With onread too, pause() stops the reads (and resume() restarts them).
    if (this.#turnBytes >= READ_TURN_BUDGET) {
      this.#socket.pause();
      setImmediate(this.#nextTurn);
    } else if (this.#buffered > this.#highWater) this.#socket.pause();
    this.#notify();
  };

  readonly #nextTurn = (): void => {
    this.#turnBytes = 0;
    this.#resumeIfRoom();
  };

  readonly #finish = (): void => {
    this.#ended = true;
    this.#notify();
  };

  /** Resumes only when neither the consumer (high water) nor the turn budget holds the socket. */
  #resumeIfRoom(): void {
    if (
      this.#buffered <= this.#highWater && this.#turnBytes < READ_TURN_BUDGET && !this.#ended &&
      this.#socket.isPaused()
    ) this.#socket.resume();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #drained(): Promise<void> {
    const socket = this.#socket;
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        socket.off("drain", done);
        socket.off("close", done);
        if (socket.destroyed) reject(new ConnectionClosedError());
        else resolve();
      };
      socket.on("drain", done);
      socket.on("close", done);
    });
  }
}

let turnsSeen = 0;
let turnCounting = false;

/**
 * The event loop's turn, for the read budget: counted by one immediate per turn in which any
 * socket read, not one per socket (20,000 idle connections' heartbeats would schedule 20,000).
 */
function currentTurn(): number {
  if (!turnCounting) {
    turnCounting = true;
    setImmediate(() => {
      turnsSeen++;
      turnCounting = false;
    });
  }
  return turnsSeen;
}

/** Connects to `host:port` (an address or name), failing with a {@link DialError}. */
export function dialTcp(
  host: string,
  port: number,
  options: { timeoutMs: number; localAddress?: string },
): Promise<ByteStream> {
  return new Promise((resolve, reject) => {
    const reads = new SlabReads();
    const socket = net.connect({ host, port, localAddress: options.localAddress, onread: reads.onread });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DialError("timeout", `timed out after ${options.timeoutMs} ms connecting to ${host}:${port}`));
    }, options.timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socketStream(socket, reads));
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(e, host, port));
    });
  });
}

/** A socket error while connecting, as the {@link DialError} that names the stage. */
export function connectError(e: NodeJS.ErrnoException, host: string, port: number): DialError {
  if (e.code === "ECONNREFUSED") {
    return new DialError("refused", `connection refused by ${host}:${port}: nothing is listening there`, { cause: e });
  }
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") {
    return new DialError("unresolved", `cannot resolve ${host}: no such host name (${e.code})`, { cause: e });
  }
  return new DialError("unreachable", `cannot connect to ${host}:${port}: ${e.message}`, { cause: e });
}

/** "[::1]" for IPv6 literals, the address itself otherwise. */
export function formatHost(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback(address: string): boolean {
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || /^127\.\d+\.\d+\.\d+$/.test(a);
}
