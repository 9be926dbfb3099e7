/**
 * A byte stream between two cluster nodes over the engine's subjects: one
 * proxied agent connection. Each engine message is a type byte and its body:
 * data (a sequence number and bytes), credit (bytes the reader has consumed
 * so far) or close (the reason). The writer keeps at most a window of bytes
 * unconsumed by the reader, so a slow reader slows the writer instead of
 * filling the engine; a lost or reordered message ends the stream with the
 * reason instead of corrupting the frames it carries.
 * @module
 */
import { ConnectionClosedError } from "../core/errors.ts";
import type { ByteStream } from "../core/wire/stream.ts";

const DATA = 0, CREDIT = 1, CLOSE = 2;
/** Bytes in one engine message at most (NATS refuses messages over its max_payload, 1 MiB by default). */
export const CHUNK_BYTES = 256 * 1024;
/** Bytes a writer may have sent that its reader has not consumed yet (default). */
export const WINDOW_BYTES = 4 * 1024 * 1024;

export class EngineStream implements ByteStream {
  #chunks: Uint8Array[] = [];
  #wakeReader: (() => void) | null = null;
  #wakeWriter: (() => void) | null = null;
  #ended = false;
  #reason: string | null = null;
  #sentSeq = 0;
  #receivedSeq = 0;
  #sent = 0;
  #peerConsumed = 0;
  #consumed = 0;
  #creditSent = 0;
  #markClosed!: () => void;
  readonly closed: Promise<void> = new Promise((r) => (this.#markClosed = r));

  /** `publish` sends one engine message to the peer; `window` bounds what is in flight each way. */
  constructor(
    readonly publish: (message: Uint8Array) => void,
    readonly remote: string,
    readonly window = WINDOW_BYTES,
  ) {}

  /** Why the stream ended (null while open, or when it closed cleanly from this side). */
  get reason(): string | null {
    return this.#reason;
  }

  get isClosed(): boolean {
    return this.#ended;
  }

  /** One engine message from the peer. */
  deliver(message: Uint8Array): void {
    if (this.#ended || message.length === 0) return;
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    if (message[0] === DATA && message.length >= 5) {
      const seq = view.getUint32(1, false);
      if (seq !== this.#receivedSeq + 1) {
        this.fail(
          `the engine lost or reordered a message of this connection (got ${seq}, expected ${this.#receivedSeq + 1})`,
        );
        return;
      }
      this.#receivedSeq = seq;
      this.#chunks.push(message.subarray(5));
      this.#wake("reader");
    } else if (message[0] === CREDIT && message.length >= 9) {
      this.#peerConsumed = Math.max(this.#peerConsumed, view.getFloat64(1, false));
      this.#wake("writer");
    } else if (message[0] === CLOSE) {
      this.#end(new TextDecoder().decode(message.subarray(1)) || "the peer node closed the connection");
    }
  }

  async read(): Promise<Uint8Array | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#wakeReader = r));
    }
    const chunk = this.#chunks.shift()!;
    this.#consumed += chunk.length;
    if (this.#consumed - this.#creditSent >= this.window / 4 && !this.#ended) {
      this.#creditSent = this.#consumed;
      const credit = new Uint8Array(9);
      credit[0] = CREDIT;
      new DataView(credit.buffer).setFloat64(1, this.#consumed, false);
      this.#send(credit);
    }
    return chunk;
  }

  async write(data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length;) {
      while (this.#sent - this.#peerConsumed >= this.window) {
        if (this.#ended) break;
        await new Promise<void>((r) => (this.#wakeWriter = r));
      }
      if (this.#ended) throw new ConnectionClosedError(this.#reason ?? "the connection through the cluster is closed");
      const piece = data.subarray(at, at + CHUNK_BYTES);
      const message = new Uint8Array(5 + piece.length); // a copy: the engine may send it after this returns
      message[0] = DATA;
      new DataView(message.buffer).setUint32(1, ++this.#sentSeq, false);
      message.set(piece, 5);
      this.#sent += piece.length;
      this.#send(message);
      at += piece.length;
    }
  }

  writev(parts: readonly Uint8Array[]): Promise<void> {
    let length = 0;
    for (const p of parts) length += p.length;
    const joined = new Uint8Array(length);
    let at = 0;
    for (const p of parts) (joined.set(p, at), at += p.length);
    return this.write(joined);
  }

  /** Closes both ways and tells the peer. */
  close(): void {
    if (this.#ended) return;
    this.#send(new Uint8Array([CLOSE]));
    this.#end(null);
  }

  /** Ends the stream for `reason`, telling the peer when it can still hear. */
  fail(reason: string): void {
    if (this.#ended) return;
    this.#send(new Uint8Array([CLOSE, ...new TextEncoder().encode(reason)]));
    this.#end(reason);
  }

  #send(message: Uint8Array) {
    try {
      this.publish(message);
    } catch (e) {
      this.#end(`the engine refused a message: ${(e as Error).message}`);
    }
  }

  #end(reason: string | null) {
    if (this.#ended) return;
    this.#ended = true;
    this.#reason = reason;
    this.#wake("reader");
    this.#wake("writer");
    this.#markClosed();
  }

  #wake(which: "reader" | "writer") {
    const w = which === "reader" ? this.#wakeReader : this.#wakeWriter;
    if (which === "reader") this.#wakeReader = null;
    else this.#wakeWriter = null;
    w?.();
  }
}
