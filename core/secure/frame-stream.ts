/**
 * Records and the frame stream: how frames travel once the opening is done. Each record is a
 * uint32 LE body length and the body; in key mode the body is the frame
 * sealed with AES-256-GCM under the direction's key and counter nonce.
 * The length is checked against the maximum before anything is allocated.
 * docs/protocol.md §3–§4.
 *
 * @example
 * ```ts
 * await frames.send({ target: 0, code: MetaCode.Ping, token: 7, payload });
 * const frame = await frames.receive(); // null once the peer closed cleanly
 * ```
 * @module
 */
import { TAG_SIZE } from "./crypto.ts";
import { ConnectionClosedError, FrameTooLargeError } from "../errors.ts";
import { decodeFrame, encodeFrameHeader, type Frame, FRAME_HEADER_SIZE, MAX_PAYLOAD } from "../wire/frame.ts";
import { concat } from "../bytes.ts";
import type { CipherState } from "./noise.ts";
import type { ByteStream, StreamReader } from "../wire/stream.ts";

/** Largest record body: a full frame plus the tag. */
export const MAX_RECORD = FRAME_HEADER_SIZE + MAX_PAYLOAD + TAG_SIZE;

/** Reads one length-prefixed record body, refusing lengths above `max` before reading the body. */
export async function readRecord(reader: StreamReader, max: number): Promise<Uint8Array | null> {
  const prefix = await reader.readExactlyOrEnd(4);
  if (prefix === null) return null;
  const length = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0, true);
  if (length > max) throw new FrameTooLargeError(length, max);
  return await reader.readExactly(length);
}

/** Prefixes `body` with its uint32 LE length. */
export function encodeRecord(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

/** Frames over a byte stream, each in one record: sealed (key mode) or plain (inside TLS, or --insecure). */
export class FrameStream {
  #sendQueue: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(
    readonly reader: StreamReader,
    readonly keys: { send: CipherState; receive: CipherState } | null,
  ) {}

  get stream(): ByteStream {
    return this.reader.stream;
  }

  /** True when records are encrypted. */
  get encrypted(): boolean {
    return this.keys !== null;
  }

  /**
   * Sends one frame. Sends are serialized so counter nonces go out in order;
   * the promise resolves once the transport accepted the record.
   */
  send(frame: Frame): Promise<void> {
    return this.sendParts(frame.target, frame.code, frame.token, [frame.payload]);
  }

  /** Sends a frame whose payload is the concatenation of `parts`, without joining them. */
  sendParts(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void> {
    const run = this.#sendQueue.then(async () => {
      if (this.#closed) throw new ConnectionClosedError();
      const plain = [encodeFrameHeader(target, code, token), ...parts];
      const body = this.keys ? await this.keys.send.encryptParts(plain) : plain;
      let length = 0;
      for (const b of body) length += b.length;
      const prefix = new Uint8Array(4);
      new DataView(prefix.buffer).setUint32(0, length, true);
      if (this.stream.writev) await this.stream.writev([prefix, ...body]);
      else await this.stream.write(concat([prefix, ...body]));
    });
    this.#sendQueue = run.catch(() => {});
    return run;
  }

  /** The next frame, or null when the peer closed between records. Throws on a bad or oversized record. */
  async receive(): Promise<Frame | null> {
    const body = await readRecord(this.reader, this.keys ? MAX_RECORD : MAX_RECORD - TAG_SIZE);
    if (body === null) return null;
    return decodeFrame(this.keys ? await this.keys.receive.decrypt(body) : body);
  }

  close(): void {
    this.#closed = true;
    this.stream.close();
  }
}
