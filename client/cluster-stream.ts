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
/** Message header: the type byte and a data message's sequence number. */
const DATA_HEADER = 5;
/**
 * Data bytes in one engine message at most, for an engine taking messages of up to `maxPayload`
 * bytes (NATS's max_payload, 1 MiB by default): a file transfer's frame (512 KiB and headers)
 * then travels as one message, which the reader takes without joining pieces.
 */
export function chunkBytesFor(maxPayload: number): number {
  return Math.max(16 * 1024, Math.min(maxPayload, 2 * 1024 * 1024) - DATA_HEADER);
}
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
    readonly chunkBytes = chunkBytesFor(1024 * 1024),
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
    if (message[0] === DATA && message.length >= DATA_HEADER) {
      const seq = view.getUint32(1, false);
      if (seq !== this.#receivedSeq + 1) {
        this.fail(
          `the engine lost or reordered a message of this connection (got ${seq}, expected ${this.#receivedSeq + 1})`,
        );
        return;
      }
      this.#receivedSeq = seq;
      this.#chunks.push(message.subarray(DATA_HEADER));
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

  write(data: Uint8Array): Promise<void> {
    return this.writev([data]);
  }

  /**
   * Sends `parts` as one engine message when they fit (a frame and its length prefix, typically),
   * else as several; each byte is copied once, into the message, which the engine may send after
   * this returns. Waits while the next message would take the bytes in flight past the window.
   */
  async writev(parts: readonly Uint8Array[]): Promise<void> {
    let length = 0;
    for (const p of parts) length += p.length;
    const source = { parts, index: 0, offset: 0 };
    // At most half a window per message: the reader credits in quarters, so a whole message always fits eventually.
    const most = Math.max(1, Math.min(this.chunkBytes, Math.floor(this.window / 2)));
    for (let left = length; left > 0;) {
      const size = Math.min(left, most);
      while (this.#sent + size - this.#peerConsumed > this.window) { // never past the window, not even by a message
        if (this.#ended) break;
        await new Promise<void>((r) => (this.#wakeWriter = r));
      }
      if (this.#ended) throw new ConnectionClosedError(this.#reason ?? "the connection through the cluster is closed");
      const message = new Uint8Array(DATA_HEADER + size);
      message[0] = DATA;
      new DataView(message.buffer).setUint32(1, ++this.#sentSeq, false);
      copyInto(message, DATA_HEADER, size, source);
      this.#sent += size;
      left -= size;
      this.#send(message);
    }
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

/** Copies the next `size` bytes of `source`'s parts into `target` at `at`, advancing `source`. */
function copyInto(
  target: Uint8Array,
  at: number,
  size: number,
  source: { parts: readonly Uint8Array[]; index: number; offset: number },
): void {
  while (size > 0) {
    const part = source.parts[source.index];
    const n = Math.min(size, part.length - source.offset);
    target.set(n === part.length ? part : part.subarray(source.offset, source.offset + n), at);
    at += n;
    size -= n;
    source.offset += n;
    if (source.offset === part.length) (source.index++, source.offset = 0);
  }
}
