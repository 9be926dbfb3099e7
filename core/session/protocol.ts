/**
 * Sessions on the wire (docs/protocol.md §6): the meta messages that open,
 * attach, resume, detach, close and list sessions; the session frame header
 * (sequence number and acknowledgement) that lets a client resume without
 * losing or repeating messages; and the envelope every product message
 * uses: MessagePack fields followed by raw bulk bytes.
 *
 * @example
 * ```ts
 * const payload = encodeEnvelope({ path: "/etc/hosts" });
 * decodeEnvelope(payload).fields.path; // "/etc/hosts"
 * ```
 * @module
 */
import { decodeFields, encodeFields } from "../wire/messages.ts";
import { ProtocolError } from "../errors.ts";

/** Meta codes for sessions (target 0); replies are request code + 1. */
export enum SessionMeta {
  /** `{ product }` → `{ sessionId, channel, resumeToken, productRoot }` */
  Open = 5,
  OpenReply = 6,
  /** `{ sessionId }` → a new attachment for another client: same reply as Open */
  Attach = 7,
  AttachReply = 8,
  /** `{ sessionId, channel, resumeToken, lastReceived }` → `{ channel, lastReceived }`, then replayed frames */
  Resume = 9,
  ResumeReply = 10,
  /** `{ channel }`: leave the session; it goes on for others (no grace) */
  Detach = 11,
  DetachReply = 12,
  /** `{ sessionId }`: end the session for everyone (files closed, processes ended) */
  Close = 13,
  CloseReply = 14,
  /** `{}` → `{ sessions: SessionSummary[] }` */
  List = 15,
  ListReply = 16,
  /** `{ product }` → `{ path }` */
  ProductRoot = 17,
  ProductRootReply = 18,
  /** Event (token 0), agent → client: `{ sessionId, channel, code, message }` the session ended. */
  Ended = 19,
}

/** What `list` and `agent status` show of a session. */
export interface SessionSummary {
  id: string;
  product: string;
  hostPid: number;
  clients: number;
  idleSeconds: number;
  openFiles: number;
  runningProcesses: number;
}

/** Reply to open, attach and resume. */
export interface AttachmentInfo {
  sessionId: string;
  channel: number;
  resumeToken: string;
  productRoot: string;
  lastReceived?: number;
}

/** Codes of the built-in services every host offers (product target). Products use 0x1000 and up. */
export enum ServiceCode {
  FileStat = 0x100,
  FileList = 0x101,
  FileMkdir = 0x102,
  FileDelete = 0x103,
  FileCopy = 0x104,
  FileMove = 0x105,
  FileSetTimes = 0x106,
  FileSetMode = 0x107,
  FileSha256 = 0x108,
  FileOpen = 0x109,
  FileRead = 0x10a,
  FileWrite = 0x10b,
  FileSeek = 0x10c,
  FileClose = 0x10d,
  ProcessStart = 0x200,
  ProcessWrite = 0x201,
  ProcessCloseStdin = 0x202,
  ProcessSignal = 0x203,
  ProcessWait = 0x204,
  ProcessList = 0x205,
  /** Event: `{ id, stream: "stdout" | "stderr" }` + bytes. */
  ProcessOutput = 0x280,
  /** Event: `{ id, code, signal }`. */
  ProcessExit = 0x281,
  SystemInfo = 0x300,
  SystemEnv = 0x301,
  SystemProductRoot = 0x302,
  /** Agent → host: end gracefully (close files, TERM then KILL processes), then exit. */
  HostShutdown = 0xf00,
  /** Host → agent (channel 0): `{ openFiles, runningProcesses }` after each change. */
  HostStats = 0xf01,
  /** Host → agent (channel 0): the host is up and serving: `{ pid, extensions }`. */
  HostReady = 0xf02,
}

/** First code a product's extensions may use. */
export const EXTENSION_CODE_MIN = 0x1000;

/** Success reply to any product request; its envelope carries the result. */
export const REPLY_CODE = 0xfffe;

/** Standalone acknowledgement on a session channel (sequence 0, no body). */
export const ACK_CODE = 0xfffd;

/** Size of the session header at the start of every session frame's payload. */
export const SESSION_HEADER_SIZE = 8;

/** Splits a session frame payload. */
export function decodeSessionPayload(payload: Uint8Array): { seq: number; ack: number; body: Uint8Array } {
  if (payload.length < SESSION_HEADER_SIZE) throw new ProtocolError("session frame shorter than its header");
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { seq: v.getUint32(0, true), ack: v.getUint32(4, true), body: payload.subarray(SESSION_HEADER_SIZE) };
}

/** A product message body: structured fields and optional raw bytes. */
export interface Envelope<F = Record<string, unknown>> {
  fields: F;
  data: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** uint32 LE length of the MessagePack fields, the fields, then the raw bytes. */
export function encodeEnvelope(fields: unknown, data: Uint8Array = EMPTY): Uint8Array {
  const f = encodeFields(fields ?? {});
  const out = new Uint8Array(4 + f.length + data.length);
  new DataView(out.buffer).setUint32(0, f.length, true);
  out.set(f, 4);
  out.set(data, 4 + f.length);
  return out;
}

/** The envelope as two pieces (length and fields; the bytes), so bulk data is never copied to build it. */
export function encodeEnvelopeParts(fields: unknown, data: Uint8Array = EMPTY): Uint8Array[] {
  const f = encodeFields(fields ?? {});
  const head = new Uint8Array(4 + f.length);
  new DataView(head.buffer).setUint32(0, f.length, true);
  head.set(f, 4);
  return data.length > 0 ? [head, data] : [head];
}

/** Just the 8-byte session header. */
export function encodeSessionHeader(seq: number, ack: number): Uint8Array {
  const out = new Uint8Array(SESSION_HEADER_SIZE);
  const v = new DataView(out.buffer);
  v.setUint32(0, seq, true);
  v.setUint32(4, ack, true);
  return out;
}

/** Decodes an envelope; `data` is a view, not a copy. */
export function decodeEnvelope<F = Record<string, unknown>>(bytes: Uint8Array): Envelope<F> {
  if (bytes.length < 4) throw new ProtocolError("message body shorter than its fields length");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (4 + n > bytes.length) throw new ProtocolError("message fields run past the end of the body");
  return { fields: decodeFields<F>(bytes.subarray(4, 4 + n)), data: bytes.subarray(4 + n) };
}
