/**
 * A product's session as the client library sees it: requests and replies
 * over the session channel, numbered so that after a lost connection
 * {@link RemoteSession.resume} picks up exactly where it left off, with the
 * files, processes and system services as ordinary async calls.
 *
 * @example
 * ```ts
 * const session = await RemoteSession.open(client, "buildmaster");
 * const proc = await session.processes.start({ program: "uname", args: ["-a"] });
 * console.log(new TextDecoder().decode(await proc.output()), await proc.wait());
 * await session.files.writeFile("/tmp/x", new TextEncoder().encode("hi"));
 * await session.close();
 * ```
 * @module
 */
import type { AgentClient, ChannelListener } from "./agent-client.ts";
import { ConnectionClosedError, ProtocolError, remoteError, SessionEndedError } from "../errors.ts";
import type { Frame } from "../wire/frame.ts";
import { decodeError, decodeFields, encodeFields, ERROR_CODE } from "../wire/messages.ts";
import {
  ACK_CODE, type AttachmentInfo, decodeEnvelope, decodeSessionPayload, encodeEnvelopeParts, encodeSessionHeader, type Envelope,
  REPLY_CODE, ServiceCode, SessionMeta,
} from "../session/protocol.ts";
import { FilesApi, ProcessesApi, RemoteProcess, SystemApi } from "./services.ts";

/** Acknowledge at least this often (bytes received) while data flows. */
const ACK_EVERY_BYTES = 256 * 1024;
/** Acknowledge within this long when traffic is light. */
const ACK_DELAY_MS = 20;

interface Pending {
  resolve(e: Envelope): void;
  reject(e: Error): void;
}

/** One client's attachment to a session on an agent. */
export class RemoteSession implements ChannelListener {
  readonly files: FilesApi = new FilesApi(this);
  readonly processes: ProcessesApi = new ProcessesApi(this);
  readonly system: SystemApi = new SystemApi(this);
  /** Set when the session has ended; every call then fails with it. */
  ended: SessionEndedError | null = null;

  #client: AgentClient | null;
  #sendSeq = 0;
  #recvSeq = 0;
  #unacked: Array<{ seq: number; code: number; token: number; body: Uint8Array[] }> = [];
  #pending = new Map<number, Pending>();
  #nextToken = 1;
  #unackedIn = 0;
  #ackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Processes by id, created on first sight (output may arrive before the start reply). */
  readonly procs = new Map<number, RemoteProcess>();

  private constructor(client: AgentClient, readonly info: AttachmentInfo) {
    this.#client = client;
    client.listen(info.channel, this);
  }

  get id(): string {
    return this.info.sessionId;
  }

  get channel(): number {
    return this.info.channel;
  }

  /** The product's root working directory on the agent's machine. */
  get productRoot(): string {
    return this.info.productRoot;
  }

  /** Opens a new session for `product`. */
  static async open(client: AgentClient, product: string): Promise<RemoteSession> {
    return new RemoteSession(client, await metaCall<AttachmentInfo>(client, SessionMeta.Open, { product }));
  }

  /** Attaches to a session another client opened. */
  static async attach(client: AgentClient, sessionId: string): Promise<RemoteSession> {
    return new RemoteSession(client, await metaCall<AttachmentInfo>(client, SessionMeta.Attach, { sessionId }));
  }

  /**
   * Continues this session over a new connection after the old one was lost:
   * the agent replays what this side missed and this side resends what the
   * agent did not get, so nothing is lost or repeated.
   */
  async resume(client: AgentClient): Promise<void> {
    if (this.ended) throw this.ended;
    const reply = await metaCall<AttachmentInfo>(client, SessionMeta.Resume, {
      sessionId: this.id, channel: this.channel, resumeToken: this.info.resumeToken, lastReceived: this.#recvSeq,
    });
    this.#client?.unlisten(this.channel);
    this.#client = client;
    client.listen(this.channel, this);
    this.#acknowledged(reply.lastReceived ?? 0);
    for (const m of this.#unacked) this.#transmit(m.seq, m.code, m.token, m.body);
  }

  /** Sends one request and resolves with the reply's fields and bytes; errors arrive typed. */
  call<F = Record<string, unknown>>(code: number, fields: Record<string, unknown> = {}, data?: Uint8Array): Promise<Envelope<F>> {
    if (this.ended) return Promise.reject(this.ended);
    const token = this.#nextToken;
    this.#nextToken = this.#nextToken >= 0xffffffff ? 1 : this.#nextToken + 1;
    const body = encodeEnvelopeParts(fields, data);
    const seq = ++this.#sendSeq;
    this.#unacked.push({ seq, code, token, body });
    return new Promise<Envelope<F>>((resolve, reject) => {
      this.#pending.set(token, { resolve: resolve as (e: Envelope) => void, reject });
      this.#transmit(seq, code, token, body);
    });
  }

  /** Leaves the session; it goes on for other clients. */
  async detach(): Promise<void> {
    const client = this.#live();
    await metaCall(client, SessionMeta.Detach, { channel: this.channel });
    this.#end(new SessionEndedError("detached", "this client detached from the session"));
  }

  /** Ends the session for everyone: files are closed and processes ended on the agent. */
  async close(): Promise<void> {
    if (this.ended) return;
    const client = this.#live();
    await metaCall(client, SessionMeta.Close, { sessionId: this.id });
    this.#end(new SessionEndedError("closed", "the session was closed"));
  }

  // ---- ChannelListener ---------------------------------------------------

  onFrame(frame: Frame): void {
    const { seq, ack, body } = decodeSessionPayload(frame.payload);
    this.#acknowledged(ack);
    if (seq === 0) return;
    if (seq <= this.#recvSeq) return; // replayed after a resume; already seen
    if (seq !== this.#recvSeq + 1) throw new ProtocolError(`session frame ${seq} after ${this.#recvSeq}`);
    this.#recvSeq = seq;
    this.#scheduleAck(frame.payload.length);
    if (frame.token !== 0) {
      const p = this.#pending.get(frame.token);
      if (!p) return;
      this.#pending.delete(frame.token);
      if (frame.code === ERROR_CODE) p.reject(remoteError(decodeError(body)));
      else if (frame.code === REPLY_CODE) p.resolve(decodeEnvelope(body));
      else p.reject(new ProtocolError(`unexpected reply code ${frame.code}`));
      return;
    }
    if (frame.code === ServiceCode.ProcessOutput || frame.code === ServiceCode.ProcessExit) {
      const { fields, data } = decodeEnvelope<{ id: number; stream?: "stdout" | "stderr"; code?: number | null; signal?: string | null }>(body);
      const proc = this.processById(fields.id);
      if (frame.code === ServiceCode.ProcessOutput) proc.pushOutput(fields.stream ?? "stdout", data.slice());
      else proc.pushExit(fields.code ?? null, fields.signal ?? null);
    }
  }

  onEnded(code: string, message: string): void {
    this.#end(new SessionEndedError(code, message));
  }

  onDisconnected(_error: Error): void {
    // Requests stay pending: resume() resends them. Nothing else to do until then.
  }

  /** The process with this id, created on first sight. */
  processById(id: number): RemoteProcess {
    let p = this.procs.get(id);
    if (!p) this.procs.set(id, p = new RemoteProcess(this, id));
    return p;
  }

  #live(): AgentClient {
    if (!this.#client || this.#client.isClosed) throw new ConnectionClosedError("the connection to the agent is closed; resume the session first");
    return this.#client;
  }

  #transmit(seq: number, code: number, token: number, body: Uint8Array[]) {
    const client = this.#client;
    if (!client || client.isClosed) return; // kept in #unacked; resume() sends it
    client.post(this.channel, code, token, [encodeSessionHeader(seq, this.#recvSeq), ...body]).catch(() => {});
    this.#unackedIn = 0;
  }

  #acknowledged(ack: number) {
    while (this.#unacked.length > 0 && this.#unacked[0].seq <= ack) this.#unacked.shift();
  }

  #scheduleAck(bytes: number) {
    this.#unackedIn += bytes;
    if (this.#unackedIn >= ACK_EVERY_BYTES) return this.#sendAck();
    this.#ackTimer ??= setTimeout(() => this.#sendAck(), ACK_DELAY_MS);
  }

  #sendAck() {
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#unackedIn = 0;
    const client = this.#client;
    if (!client || client.isClosed || this.ended) return;
    client.post(this.channel, ACK_CODE, 0, [encodeSessionHeader(0, this.#recvSeq)]).catch(() => {});
  }

  #end(error: SessionEndedError) {
    if (this.ended) return;
    this.ended = error;
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#client?.unlisten(this.channel);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    for (const p of this.procs.values()) p.fail(error);
  }
}

async function metaCall<T>(client: AgentClient, code: number, fields: Record<string, unknown>): Promise<T> {
  const reply = await client.request(0, code, encodeFields(fields));
  if (reply.code !== code + 1) throw new ProtocolError(`expected reply code ${code + 1}, got ${reply.code}`);
  return decodeFields<T>(reply.payload);
}

/** Lists the agent's sessions. */
export async function listSessions(client: AgentClient) {
  return (await metaCall<{ sessions: import("../session/protocol.ts").SessionSummary[] }>(client, SessionMeta.List, {})).sessions;
}
