/**
 * The byte-stream contract every runtime transport implements, and a reader
 * that pulls exact lengths out of it without copying more than it must.
 *
 * @example
 * ```ts
 * const reader = new StreamReader(stream);
 * const hello = await reader.readExactly(24);
 * ```
 * @module
 */
import { ConnectionClosedError } from "../errors.ts";
import { concat, takeFront } from "../bytes.ts";

/** A duplex byte stream: TCP, TLS, a Unix socket or an in-memory pair. */
export interface ByteStream {
  /** The next chunk, or null once the peer has closed its side. */
  read(): Promise<Uint8Array | null>;
  /** Resolves once the transport has taken the bytes (its backpressure point). */
  write(data: Uint8Array): Promise<void>;
  /**
   * Optional: writes several pieces as one, without joining them first. `recycle`, if given,
   * is called once the transport holds none of the pieces any more (they reached the OS, or the
   * write failed), so their memory may be recycled; a transport that cannot tell never calls it.
   */
  writev?(parts: readonly Uint8Array[], recycle?: () => void): Promise<void>;
  /**
   * Optional: the reader promises that nothing reads `piece` (part of a chunk from {@link read})
   * any more, so the transport may read into its memory again. Every byte it recycles was read.
   */
  recycle?(piece: Uint8Array): void;
  /**
   * Optional: keep at most about `bytes` received but unread before pausing the peer (one transport read may
   * overshoot); null restores the transport's own limit. A responder sets it low until the peer authenticates.
   */
  limitReads?(bytes: number | null): void;
  /** Closes both directions; pending reads resolve null. Safe to call twice. */
  close(): void;
  /** "address:port" of the peer, where the transport knows it. */
  readonly remote?: string;
  /** Resolves once the stream has ended in either direction, for whatever reason. */
  readonly closed: Promise<void>;
}

/** Reads exact byte counts from a {@link ByteStream}. */
export class StreamReader {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  /** Views handed out by the last read, recycled at the next one; null until {@link recycleConsumed}. */
  #lent: Uint8Array[] | null = null;
  #inFlight: Promise<boolean> | null = null;

  constructor(readonly stream: ByteStream) {}

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * From now on, whatever a read hands out is dead once the next read starts: the caller copies
   * what it keeps (a decryption does). The reader then hands those bytes back to the stream
   * ({@link ByteStream.recycle}), which may read into their memory again instead of allocating.
   */
  recycleConsumed(): void {
    if (this.stream.recycle) this.#lent ??= [];
  }

  /**
   * Resolves with exactly `n` bytes. Allocates only once the bytes have
   * arrived, so a large `n` that never arrives costs nothing.
   * Throws {@link ConnectionClosedError} if the stream ends first.
   */
  async readExactly(n: number): Promise<Uint8Array> {
    this.#recycleLent();
    if (this.#buffered < n) await this.#fill(n);
    return this.#take(n);
  }

  /**
   * Like {@link readExactly}, but the `n` bytes come as the consecutive pieces they arrived in,
   * not joined: for a consumer that takes pieces anyway (a decryption), one copy less.
   */
  async readPieces(n: number): Promise<Uint8Array[]> {
    this.#recycleLent();
    if (this.#buffered < n) await this.#fill(n);
    this.#buffered -= n;
    const pieces = takeFront(this.#chunks, n);
    this.#lent?.push(...pieces);
    return pieces;
  }

  /**
   * Resolves once at least `n` bytes are buffered, consuming none (a responder watching for bytes a
   * peer should not have sent yet). Throws {@link ConnectionClosedError} if the stream ends first.
   */
  async waitFor(n: number): Promise<void> {
    if (this.#buffered < n) await this.#fill(n);
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n) {
      if (!(await this.#pull())) {
        throw new ConnectionClosedError(
          this.#buffered === 0 && n > 0
            ? "the connection was closed"
            : `the connection was closed mid-message (${this.#buffered} of ${n} bytes)`,
        );
      }
    }
  }

  /** One stream read at a time, shared by all who wait: its chunk joins the buffer. False once the stream ended. */
  #pull(): Promise<boolean> {
    return this.#inFlight ??= this.stream.read().then((chunk) => {
      this.#inFlight = null;
      if (chunk === null) return false;
      if (chunk.length > 0) {
        this.#chunks.push(chunk);
        this.#buffered += chunk.length;
      }
      return true;
    }, (e) => {
      this.#inFlight = null;
      throw e;
    });
  }

  /**
   * True once bytes are buffered, false when the stream ended with none: how an idle connection
   * waits. It waits on one stream read, not on the chain of calls a whole read is, so 20,000 idle
   * connections keep less alive, and a heartbeat leaves less behind for the collector.
   */
  readable(): boolean | Promise<boolean> {
    return this.#buffered > 0 || this.#pull();
  }

  /** Like {@link readExactly} but resolves null when the stream ends cleanly before the first byte. */
  async readExactlyOrEnd(n: number): Promise<Uint8Array | null> {
    this.#recycleLent();
    if (this.#buffered === 0 && !(await this.#pull())) return null;
    return this.readExactly(n);
  }

  #recycleLent(): void {
    if (!this.#lent?.length) return;
    for (const piece of this.#lent) this.stream.recycle!(piece);
    this.#lent.length = 0;
  }

  #take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    if (first.length >= n) {
      const taken = first.length === n ? first : first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#buffered -= n;
      this.#lent?.push(taken);
      return taken;
    }
    this.#buffered -= n;
    const pieces = takeFront(this.#chunks, n);
    this.#lent?.push(...pieces); // joined into new memory below, so they are dead at once
    return concat(pieces);
  }
}
