/**
 * Sessions on the wire (docs/protocol.md §6): what the session meta messages
 * (MetaCode.Open to MetaCode.Ended) carry; the session frame header
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
import { allocateUninitialized } from "../bytes.ts";

/**
 * What `list` and `agent status` show of a session.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const [summary]: SessionSummary[] = (await agent.listSessions()).filter((s) => s.id === session.id);
 * console.log(summary.product, summary.clients); // buildmaster 1
 * await session.close();
 * agent.close();
 * ```
 */
export interface SessionSummary {
  id: string;
  product: string;
  hostPid: number;
  clients: number;
  idleSeconds: number;
  openFiles: number;
  runningProcesses: number;
  /**
   * Each attachment's bytes in flight as the agent sees them: request bodies not yet answered and
   * replies not yet acknowledged (optional: older agents leave it out).
   */
  attachments?: Array<{ id: number; inFlightBytes: number; windowBytes?: number }>;
}

/** Reply to open, attach and resume. */
export interface AttachmentInfo {
  sessionId: string;
  /** The frame target this client uses for the session on its connection. */
  attachment: number;
  resumeToken: string;
  productRoot: string;
  lastReceived?: number;
  /** The most a transfer should keep in flight (the agent's `transferWindowMiB`; older agents leave it out). */
  transferWindowBytes?: number;
  /** The agent takes the client's window reports (meta code 31, WindowReport; older agents leave it out). */
  windowReports?: boolean;
}

/** Bare acknowledgement on an attachment (sequence 0, no body). */
export const ACK_CODE = 0xfffd;

/** Size of the session header at the start of every session frame's payload. */
export const SESSION_HEADER_SIZE = 8;

/** Reads the session header at the start of a session frame's payload. */
export function decodeSessionHeader(payload: Uint8Array): { seq: number; ack: number } {
  if (payload.length < SESSION_HEADER_SIZE) throw new ProtocolError("session frame shorter than its header");
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { seq: v.getUint32(0, true), ack: v.getUint32(4, true) };
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
  const out = allocateUninitialized(4 + f.length + data.length);
  new DataView(out.buffer, out.byteOffset).setUint32(0, f.length, true);
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
