/**
 * The message catalogue: meta codes the agent answers itself, the error
 * response every target shares, and the codec for structured fields
 * (MessagePack; bulk bytes always travel raw). docs/protocol.md §5.
 *
 * @example
 * ```ts
 * const payload = encodeError({ code: "unknown-code", message: "no such meta code 99" });
 * decodeError(payload).message; // "no such meta code 99"
 * ```
 * @module
 */
import { decode, Encoder } from "@msgpack/msgpack";
import { ProtocolError } from "../errors.ts";

/**
 * Codes of meta messages: those addressed to the agent itself (target 0). One
 * code space for all of them; a reply is the request code + 1, and an event
 * (token 0) is never answered. The agent answers them from one table
 * (agent/connection.ts); docs/protocol.md §5 lists them.
 */
export enum MetaCode {
  /** Echo: payload is any bytes (≤ 64 KiB); the reply carries the agent's clock and the same bytes. */
  Ping = 1,
  Pong = 2,
  /** Agent info; empty request, MessagePack map reply ({@link AgentInfo}). */
  Info = 3,
  InfoReply = 4,
  /** `{ product }` → `{ sessionId, attachment, resumeToken, productRoot }` */
  Open = 5,
  OpenReply = 6,
  /** `{ sessionId }` → a new attachment for another client: same reply as Open */
  Attach = 7,
  AttachReply = 8,
  /** `{ sessionId, attachment, resumeToken, lastReceived }` → `{ attachment, lastReceived }`, then resent frames */
  Resume = 9,
  ResumeReply = 10,
  /** `{ attachment }`: leave the session; it goes on for others (no grace) */
  Detach = 11,
  DetachReply = 12,
  /** `{ sessionId }`: end the session for everyone (files closed, processes ended) */
  Close = 13,
  CloseReply = 14,
  /** `{}` → `{ sessions: SessionSummary[] }` */
  List = 15,
  ListReply = 16,
  // 17 and 18 are retired (a meta ProductRoot, never served): a session's system service answers it.
  /** Event (token 0), agent → client: `{ sessionId, attachment, code, message }` the session ended. */
  Ended = 19,
  /** Event (token 0), either direction on outbound connections: "still here". Never answered. */
  Heartbeat = 21,
  /** Version 4. `{ size, sha256, signature? }` → `{ updateId, maxChunkBytes }`: a new agent binary is coming. */
  UpdateBegin = 23,
  UpdateBeginReply = 24,
  /** Version 4. {@link encodeUpdateData}: update id, offset, then the binary's bytes → `{ received }` */
  UpdateData = 25,
  UpdateDataReply = 26,
  /** Version 4. `{ updateId }` → {@link UpgradeOutcome}, once the checked binary has taken over. */
  UpdateCommit = 27,
  UpdateCommitReply = 28,
  /** Version 4. `{ updateId }` → `{}`: the staged bytes are removed. */
  UpdateAbort = 29,
  UpdateAbortReply = 30,
  /**
   * Event (token 0), client → agent: `{ attachment, bytes }`, the window the client's transfers on that
   * attachment keep now (0: none runs), for `agent status` and /metrics. Sent only to an agent whose
   * attach reply has `windowReports`.
   */
  WindowReport = 31,
}

/** The first protocol version with the update messages (docs/protocol.md §5 "Pushed updates"). */
export const UPDATE_PROTOCOL_VERSION = 4;

/** Bytes before the binary's own in an UpdateData payload: uint32 LE update id, uint64 LE offset. */
export const UPDATE_DATA_HEADER = 12;

/**
 * What the agent answers once a pushed update has taken over: the new agent's version, and the
 * SHA-256 (hex) of the program it runs now and of the one it ran before; `tookMs` from the commit.
 *
 * @example
 * ```ts
 * const outcome: UpgradeOutcome = { version: "0.2.0", build: "9f86d0…", previousBuild: "2c26b4…", tookMs: 812 };
 * console.log(`${outcome.previousBuild.slice(0, 12)} -> ${outcome.build.slice(0, 12)}`);
 * ```
 */
export interface UpgradeOutcome {
  version: string;
  build: string;
  previousBuild: string;
  tookMs: number;
}

/** An UpdateData payload: the header, then `bytes`, as parts to send without a copy. */
export function encodeUpdateData(updateId: number, offset: number, bytes: Uint8Array): Uint8Array[] {
  const header = new Uint8Array(UPDATE_DATA_HEADER);
  const view = new DataView(header.buffer);
  view.setUint32(0, updateId, true);
  view.setBigUint64(4, BigInt(offset), true);
  return [header, bytes];
}

/** Splits an UpdateData payload; a payload shorter than its header is a {@link ProtocolError}. */
export function decodeUpdateData(payload: Uint8Array): { updateId: number; offset: number; bytes: Uint8Array } {
  if (payload.length < UPDATE_DATA_HEADER) throw new ProtocolError("update data shorter than its 12-byte header");
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const offset = view.getBigUint64(4, true);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError("update data offset out of range");
  return { updateId: view.getUint32(0, true), offset: Number(offset), bytes: payload.subarray(UPDATE_DATA_HEADER) };
}

/** Reply code shared by every target: the request with this token failed. Payload: {@link SerializedError}. */
export const ERROR_CODE = 0xffff;

/** Largest ping payload the agent echoes. */
export const MAX_PING_PAYLOAD = 64 * 1024;

/**
 * What the agent tells about itself.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const info: AgentInfo = await agent.info();
 * console.log(info.protocol.current, info.runtime.name); // 1 node
 * agent.close();
 * ```
 */
export interface AgentInfo {
  version: string;
  protocol: { min: number; max: number; current: number };
  os: string;
  arch: string;
  hostname: string;
  uptimeSeconds: number;
  runtime: { name: string; version: string };
}

/** An error as it crosses the wire. */
export interface SerializedError {
  code: string;
  message: string;
  detail?: string;
}

// One encoder for the process: `encode()` builds a new one with a fresh 2 KiB buffer per call, which
// doubles the cost of a small message. Its buffer grows to the largest message it has encoded, so a
// large one gets it replaced rather than held for the life of the process.
let encoder = new Encoder();
const ENCODER_KEEP_BYTES = 64 * 1024;

/** Encodes a structured payload (a copy the caller owns). */
export function encodeFields(value: unknown): Uint8Array {
  const bytes = encoder.encode(value);
  if (bytes.length > ENCODER_KEEP_BYTES) encoder = new Encoder();
  return bytes;
}

/** Decodes a structured payload; a malformed one is a {@link ProtocolError}. */
export function decodeFields<T>(bytes: Uint8Array): T {
  try {
    // Every element takes a byte at least: a larger count is malformed, refused before it is allocated.
    return decode(bytes, { maxArrayLength: bytes.length, maxMapLength: bytes.length >> 1 }) as T;
  } catch (e) {
    throw new ProtocolError(`malformed message fields: ${(e as Error).message}`, { cause: e });
  }
}

/** Encodes an error response payload. */
export function encodeError(error: SerializedError): Uint8Array {
  return encodeFields(error.detail === undefined ? { code: error.code, message: error.message } : error);
}

/** Decodes an error response payload, tolerating a peer that sent something odd. */
export function decodeError(bytes: Uint8Array): SerializedError {
  const e = decodeFields<Partial<SerializedError>>(bytes);
  return {
    code: typeof e?.code === "string" ? e.code : "unknown",
    message: typeof e?.message === "string" ? e.message : "the peer sent an unreadable error",
    ...(typeof e?.detail === "string" ? { detail: e.detail } : {}),
  };
}

/** Pong payload: float64 LE agent clock (ms since epoch), then the echoed bytes. */
export function encodePong(agentTimeMs: number, echo: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + echo.length);
  new DataView(out.buffer).setFloat64(0, agentTimeMs, true);
  out.set(echo, 8);
  return out;
}

/** Splits a pong payload into the agent's clock and the echoed bytes. */
export function decodePong(bytes: Uint8Array): { agentTimeMs: number; echo: Uint8Array } {
  if (bytes.length < 8) throw new ProtocolError("pong shorter than its timestamp");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { agentTimeMs: view.getFloat64(0, true), echo: bytes.subarray(8) };
}
