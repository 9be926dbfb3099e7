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
   * Optional: writes several pieces as one, without joining them first. `released`, if given,
   * is called once the transport holds none of the pieces any more (they reached the OS, or the
   * write failed), so their memory may be reused; a transport that cannot tell never calls it.
   */
  writev?(parts: readonly Uint8Array[], released?: () => void): Promise<void>;
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

  constructor(readonly stream: ByteStream) {}

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Resolves with exactly `n` bytes. Allocates only once the bytes have
   * arrived, so a large `n` that never arrives costs nothing.
   * Throws {@link ConnectionClosedError} if the stream ends first.
   */
  async readExactly(n: number): Promise<Uint8Array> {
    if (this.#buffered < n) await this.#fill(n);
    return this.#take(n);
  }

  /**
   * Like {@link readExactly}, but the `n` bytes come as the consecutive pieces they arrived in,
   * not joined: for a consumer that takes pieces anyway (a decryption), one copy less.
   */
  async readPieces(n: number): Promise<Uint8Array[]> {
    if (this.#buffered < n) await this.#fill(n);
    this.#buffered -= n;
    return takeFront(this.#chunks, n);
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n) {
      const chunk = await this.stream.read();
      if (chunk === null) {
        throw new ConnectionClosedError(
          this.#buffered === 0 && n > 0 ? "the connection was closed" : `the connection was closed mid-message (${this.#buffered} of ${n} bytes)`,
        );
      }
      if (chunk.length === 0) continue;
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
  }

  /** Like {@link readExactly} but resolves null when the stream ends cleanly before the first byte. */
  async readExactlyOrEnd(n: number): Promise<Uint8Array | null> {
    if (this.#buffered === 0) {
      const chunk = await this.stream.read();
      if (chunk === null) return null;
      if (chunk.length > 0) {
        this.#chunks.push(chunk);
        this.#buffered += chunk.length;
      }
    }
    return this.readExactly(n);
  }

  #take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    if (first.length === n) {
      this.#chunks.shift();
      this.#buffered -= n;
      return first;
    }
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      this.#buffered -= n;
      return first.subarray(0, n);
    }
    this.#buffered -= n;
    return concat(takeFront(this.#chunks, n));
  }
}
