/**
 * Records and the frame stream: how frames travel once the opening is done. Each record is a
 * uint32 LE body length and the body. Plain (inside TLS, or --insecure), one record carries one
 * frame. In key mode a record's body is one Noise transport message (AES-256-GCM under the
 * direction's key and counter nonce), at most 65,535 bytes as the Noise spec requires; a frame
 * is sealed as the plaintext `uint32 LE frame length, frame`, cut into as many messages as it
 * takes. Every length is checked against its maximum before anything is allocated.
 * docs/protocol.md §3–§4.
 *
 * @example
 * ```ts
 * await frames.send({ target: 0, code: MetaCode.Ping, token: 7, payload });
 * const frame = await frames.receive(); // null once the peer closed cleanly
 * ```
 * @module
 */
import { BULK_MESSAGE, TAG_SIZE } from "./crypto.ts";
import {
  ConnectionClosedError,
  FrameTooLargeError,
  IntegrityError,
  ProtocolError,
  RecordTooLargeError,
} from "../errors.ts";
import { decodeFrame, encodeFrameHeader, type Frame, FRAME_HEADER_SIZE, MAX_PAYLOAD } from "../wire/frame.ts";
import { allocateUninitialized, BufferRecycler, concat, takeFront } from "../bytes.ts";
import type { CipherState } from "./noise.ts";
import type { ByteStream, StreamReader } from "../wire/stream.ts";

/** Largest plain record body: a full frame. */
export const MAX_RECORD = FRAME_HEADER_SIZE + MAX_PAYLOAD;
/** Largest Noise transport message (Noise spec §3): ciphertext and tag. */
export const MAX_NOISE_MESSAGE = 65535;
/** Plaintext bytes one transport message carries at most. */
export const MAX_NOISE_PLAINTEXT = MAX_NOISE_MESSAGE - TAG_SIZE;
const FRAME_LENGTH_SIZE = 4;

/** Reads a record's length prefix, refusing lengths above `max`; null when the stream ended cleanly first. */
async function readRecordLength(reader: StreamReader, max: number): Promise<number | null> {
  const prefix = await reader.readExactlyOrEnd(4);
  if (prefix === null) return null;
  const length = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0, true);
  if (length > max) throw new RecordTooLargeError(length, max);
  return length;
}

/** Refuses a frame length outside 12 (a bare header) to {@link MAX_RECORD}, before anything is read for it. */
function checkFrameLength(length: number): void {
  if (length > MAX_RECORD) throw new FrameTooLargeError(length, MAX_RECORD);
  if (length < FRAME_HEADER_SIZE) {
    throw new ProtocolError(`a frame length of ${length} is below the minimum of ${FRAME_HEADER_SIZE}`);
  }
}

/** Reads a sealed record's length prefix: at most {@link MAX_NOISE_MESSAGE}, and no shorter than its tag. */
async function readSealedLength(reader: StreamReader): Promise<number | null> {
  const length = await readRecordLength(reader, MAX_NOISE_MESSAGE);
  if (length !== null && length < TAG_SIZE) throw new IntegrityError(); // cannot hold a tag: no valid message is this short
  return length;
}

/** Reads one length-prefixed record body, refusing lengths above `max` before reading the body. */
export async function readRecord(reader: StreamReader, max: number): Promise<Uint8Array | null> {
  const length = await readRecordLength(reader, max);
  return length === null ? null : await reader.readExactly(length);
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
  /** Frames reassembled from several messages; one handed back is kept for the next. */
  readonly #reassembly = new BufferRecycler(1);
  /** A bulk message that began a longer frame, once copied into it: the next one opens into it. */
  readonly #firstMessage = new BufferRecycler(1);
  /** Sealed bulk frames; two cover one being sealed while the previous one is written. */
  readonly #sealed = new BufferRecycler(2);

  constructor(
    readonly reader: StreamReader,
    readonly keys: { send: CipherState; receive: CipherState } | null,
  ) {
    // Decryption copies every sealed byte out, so the socket may reuse what was read; plain frames keep views of it.
    if (keys) reader.recycleConsumed();
  }

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

  /**
   * Sends a frame whose payload is the concatenation of `parts`, without joining them. Once keys are
   * set, the promise settles only after `parts` were sealed into a buffer of the stream's own, so the
   * caller may reuse their memory then; before the handshake the transport may still hold them.
   */
  sendParts(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void> {
    const run = this.#sendQueue.then(async () => {
      if (this.#closed) throw new ConnectionClosedError();
      const plain = [encodeFrameHeader(target, code, token), ...parts];
      if (!this.keys) {
        const length = frameLength(plain);
        const pieces = [lengthPrefix(length), ...plain];
        const joined = !this.stream.writev || length <= JOIN_BELOW;
        return joined ? await this.stream.write(concat(pieces)) : await this.stream.writev!(pieces);
      }
      const sealed = await sealFrame(
        this.keys.send,
        plain,
        (size) => (size >= BULK_MESSAGE ? this.#sealed.take(size) : allocateUninitialized(size)),
      );
      if (!this.stream.writev) return await this.stream.write(sealed);
      await this.stream.writev([sealed], this.#sealed.owns(sealed) ? () => this.#sealed.recycle(sealed) : undefined);
    });
    this.#sendQueue = run.catch(() => {});
    return run;
  }

  /** The next frame, or null when the peer closed between records. Throws on a bad or oversized record. */
  async receive(): Promise<Frame | null> {
    if (!this.keys) {
      const length = await readRecordLength(this.reader, MAX_RECORD);
      if (length === null) return null;
      checkFrameLength(length);
      return decodeFrame(await this.reader.readExactly(length));
    }
    const plain = await this.#openMessage(this.keys.receive);
    if (plain === null) return null;
    if (plain.length < FRAME_LENGTH_SIZE) {
      throw new ProtocolError(
        `a frame's first message holds ${plain.length} bytes, fewer than the ${FRAME_LENGTH_SIZE} bytes of its length`,
      );
    }
    const length = new DataView(plain.buffer, plain.byteOffset, FRAME_LENGTH_SIZE).getUint32(0, true);
    checkFrameLength(length);
    const piece = plain.subarray(FRAME_LENGTH_SIZE);
    if (piece.length === length) return decodeFrame(piece); // the whole frame in one message: no copy
    if (piece.length > length) throw new ProtocolError("a message runs past the end of its frame");
    // The rest of the frame is decrypted straight into it, from the pieces the socket delivered.
    const frame = this.#reassembly.take(length); // every byte written below before it is returned
    frame.set(piece);
    this.#firstMessage.recycle(plain); // copied: the next frame's first message may take it
    for (let filled = piece.length; filled < length;) {
      const sealed = await readSealedLength(this.reader);
      if (sealed === null) throw new ConnectionClosedError("the connection closed in the middle of a frame");
      const size = sealed - TAG_SIZE;
      if (filled + size > length) throw new ProtocolError("a message runs past the end of its frame");
      await this.keys.receive.decryptInto(await this.reader.readPieces(sealed), frame.subarray(filled, filled + size));
      filled += size;
    }
    return decodeFrame(frame);
  }

  /** The next message's plaintext, or null at a clean end: a bulk one opened from the socket's pieces, a small one whole. */
  async #openMessage(cipher: CipherState): Promise<Uint8Array | null> {
    const length = await readSealedLength(this.reader);
    if (length === null) return null;
    if (length < BULK_MESSAGE + TAG_SIZE) return await cipher.decrypt(await this.reader.readExactly(length));
    const plain = this.#firstMessage.take(length - TAG_SIZE); // every byte written by the decryption
    await cipher.decryptInto(await this.reader.readPieces(length), plain);
    return plain;
  }

  /**
   * Hands back a frame's payload from {@link receive} (or any view of it) once nothing reads it
   * any more: the agent, once the frame is in the host's ring; a client, once the caller is done
   * with a reply's bytes. A frame that spanned several messages leaves its reassembly buffer for
   * a later one, instead of a new MiB each time. Others are ignored.
   */
  recycle(payload: Uint8Array): void {
    this.#reassembly.recycle(payload);
  }

  close(): void {
    this.#closed = true;
    this.stream.close();
  }
}

/**
 * Plain frames up to this size are joined and written as one buffer: a TLS socket's writev of
 * several pieces cost about 10 µs more per heartbeat than one write (measured, 10,000 sockets).
 */
const JOIN_BELOW = 8 * 1024;

/** The length of the frame `parts` make up together. */
function frameLength(parts: readonly Uint8Array[]): number {
  let length = 0;
  for (const p of parts) length += p.length;
  return length;
}

/** A frame's `length` as its uint32 LE prefix. */
function lengthPrefix(length: number): Uint8Array {
  const prefix = new Uint8Array(4);
  new DataView(prefix.buffer).setUint32(0, length, true);
  return prefix;
}

/**
 * Seals a frame as Noise transport messages of at most {@link MAX_NOISE_MESSAGE}
 * bytes, each after its record length, all into one buffer: what to write.
 */
async function sealFrame(
  cipher: CipherState,
  frame: readonly Uint8Array[],
  allocate: (size: number) => Uint8Array,
): Promise<Uint8Array> {
  const plainLength = frameLength(frame);
  const total = FRAME_LENGTH_SIZE + plainLength;
  const messages = Math.ceil(total / MAX_NOISE_PLAINTEXT);
  const out = allocate(total + messages * (4 + TAG_SIZE)); // every byte written below
  const view = new DataView(out.buffer, out.byteOffset);
  const plain = [lengthPrefix(plainLength), ...frame];
  let at = 0;
  for (let left = total; left > 0;) {
    const size = Math.min(left, MAX_NOISE_PLAINTEXT);
    view.setUint32(at, size + TAG_SIZE, true);
    await cipher.encryptInto(takeFront(plain, size), out.subarray(at + 4, at + 4 + size + TAG_SIZE));
    at += 4 + size + TAG_SIZE;
    left -= size;
  }
  return out;
}
