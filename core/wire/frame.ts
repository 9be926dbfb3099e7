/**
 * Frames: what travels inside a record once the channel is up.
 * A frame is a 12-byte header (target, code, token; all uint32 LE) and a
 * payload. Layout in docs/protocol.md §4.
 *
 * @example
 * ```ts
 * const bytes = encodeFrame({ target: 0, code: MetaCode.Ping, token: 1, payload: new Uint8Array() });
 * decodeFrame(bytes).code; // MetaCode.Ping
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import { ProtocolError } from "../errors.ts";

/** Header size: target, code, token. */
export const FRAME_HEADER_SIZE = 12;
/** Largest payload a frame may carry (1 MiB). Bulk data is sent as several frames. */
export const MAX_PAYLOAD = 1024 * 1024;
/** Target number of the agent itself; other targets are attachments (docs/protocol.md §4). */
export const META_TARGET = 0;

/** One protocol message. `token` 0 means no reply is expected. */
export interface Frame {
  target: number;
  code: number;
  token: number;
  payload: Uint8Array;
}

/** Encodes a frame header followed by its payload. */
export function encodeFrame(frame: Frame): Uint8Array {
  return concat([encodeFrameHeader(frame.target, frame.code, frame.token), frame.payload]);
}

/** The 12-byte header alone, for senders that pass the payload separately. */
export function encodeFrameHeader(target: number, code: number, token: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, target, true);
  view.setUint32(4, code, true);
  view.setUint32(8, token, true);
  return out;
}

/** Decodes a frame; the payload is a view into `bytes`, not a copy. */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length < FRAME_HEADER_SIZE) {
    throw new ProtocolError(`frame of ${bytes.length} bytes is shorter than its header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    target: view.getUint32(0, true),
    code: view.getUint32(4, true),
    token: view.getUint32(8, true),
    payload: bytes.subarray(FRAME_HEADER_SIZE),
  };
}
