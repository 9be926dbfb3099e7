/**
 * A product's session as the client library sees it: requests and replies
 * over one attachment, carried by a {@link DeliveryLink} so that after a
 * lost connection {@link RemoteSession.resume} picks up exactly where it
 * left off, with the files, processes and system services as ordinary
 * async calls.
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
import type { AgentClient, AttachmentRoute } from "./agent-client.ts";
import {
  AbortedError,
  ConnectionClosedError,
  FrameTooLargeError,
  isErrorCode,
  ProtocolError,
  remoteError,
  SessionEndedError,
} from "../errors.ts";
import { type Frame, MAX_PAYLOAD, META_TARGET } from "../wire/frame.ts";
import { decodeError, decodeFields, encodeFields, ERROR_CODE, MetaCode } from "../wire/messages.ts";
import {
  type EventContract,
  EXTENSION_CODE_MAX,
  EXTENSION_CODE_MIN,
  REPLY_CODE,
  type ReplyOf,
  type RequestOf,
  type ServiceCode,
  type ServiceEvent,
} from "../session/contract.ts";
import { DeliveryLink } from "../session/delivery.ts";
import {
  type AttachmentInfo,
  decodeEnvelope,
  encodeEnvelopeParts,
  type Envelope,
  SESSION_HEADER_SIZE,
  type SessionSummary,
} from "../session/protocol.ts";
import type { CallOptions } from "./abort.ts";
import type { SessionCalls } from "./calls.ts";
import { FilesApi } from "./files.ts";
import { WindowReports } from "./window-report.ts";
import { ProcessesApi } from "./processes.ts";
import { SystemApi } from "./system.ts";

interface Pending {
  resolve(e: Envelope): void;
  reject(e: Error): void;
}

/**
 * One client's attachment to a session on an agent.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * console.log(session.id.length, session.productRoot); // 32 …/products/buildmaster/work
 * const second = await (await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! })).attachSession(session.id);
 * console.log(second.id === session.id); // true: two clients, one session
 * await session.close();
 * agent.close();
 * ```
 */
export class RemoteSession implements AttachmentRoute, SessionCalls {
  /** Set when the session has ended; every call then fails with it. */
  ended: SessionEndedError | null = null;

  #client: AgentClient | null;
  #link: DeliveryLink;
  #pending = new Map<number, Pending>();
  /** Each signal's requests in flight, and its one listener (see #abortable). */
  #aborts = new Map<AbortSignal, { tokens: Set<number>; onAbort: () => void }>();
  #nextToken = 1;
  #events = new Map<number, (fields: never, data: Uint8Array) => void>();
  #endHandlers: Array<(error: Error) => void> = [];
  /** The agent takes window reports (its attach or resume reply said so). */
  #windowReports: boolean;
  readonly #reports: WindowReports;

  readonly files: FilesApi;
  readonly processes: ProcessesApi;
  readonly system: SystemApi;

  private constructor(client: AgentClient, readonly info: AttachmentInfo) {
    this.#client = client;
    this.#link = new DeliveryLink({ transmit: this.#transportFor(client).transmit });
    client.route(info.attachment, this);
    this.#windowReports = info.windowReports === true;
    this.#reports = new WindowReports((bytes) => this.#reportWindow(bytes));
    this.files = new FilesApi(this, info.transferWindowBytes, client.transferMemory, this.#reports);
    this.processes = new ProcessesApi(this);
    this.system = new SystemApi(this);
  }

  get id(): string {
    return this.info.sessionId;
  }

  /** This client's frame target for the session. */
  get attachment(): number {
    return this.info.attachment;
  }

  /** The product's root working directory on the agent's machine. */
  get productRoot(): string {
    return this.info.productRoot;
  }

  /** Opens a new session for `product`. */
  static async open(client: AgentClient, product: string): Promise<RemoteSession> {
    return new RemoteSession(client, await metaCall<AttachmentInfo>(client, MetaCode.Open, { product }));
  }

  /** Attaches to a session another client opened. */
  static async attach(client: AgentClient, sessionId: string): Promise<RemoteSession> {
    return new RemoteSession(client, await metaCall<AttachmentInfo>(client, MetaCode.Attach, { sessionId }));
  }

  /**
   * Continues this session over a new connection after the old one was lost:
   * the agent resends what this side missed and this side resends what the
   * agent did not get, so nothing is lost or repeated.
   */
  async resume(client: AgentClient): Promise<void> {
    if (this.ended) throw this.ended;
    const reply = await metaCall<AttachmentInfo>(client, MetaCode.Resume, {
      sessionId: this.id,
      attachment: this.attachment,
      resumeToken: this.info.resumeToken,
      lastReceived: this.#link.lastReceived,
    });
    this.#client?.unroute(this.attachment);
    this.#client = client;
    client.route(this.attachment, this);
    this.#windowReports = reply.windowReports === true; // the agent may have been upgraded meanwhile
    this.#reports.resend(); // ahead of the requests sent again, which may be a window of data
    this.#link.resume(this.#transportFor(client), reply.lastReceived ?? 0);
  }

  /**
   * Sends one request of the built-in services; resolves with the reply's fields and bytes, errors arrive typed.
   * Aborting `options.signal` rejects it with an {@link AbortedError}; a reply that comes later is dropped.
   */
  call<C extends ServiceCode>(
    code: C,
    fields: RequestOf<C>,
    data?: Uint8Array,
    options: CallOptions = {},
  ): Promise<Envelope<ReplyOf<C>>> {
    return this.#request(code, fields, data, options.signal) as Promise<Envelope<ReplyOf<C>>>;
  }

  /** Sends one request to a product extension (codes 0x1000–0xfff0); fields and reply are the extension's own. */
  callExtension<F = Record<string, unknown>>(
    code: number,
    fields: Record<string, unknown> = {},
    data?: Uint8Array,
    options: CallOptions = {},
  ): Promise<Envelope<F>> {
    if (!(code >= EXTENSION_CODE_MIN && code <= EXTENSION_CODE_MAX)) {
      return Promise.reject(
        new RangeError(
          `extension codes run from 0x${EXTENSION_CODE_MIN.toString(16)} to 0x${EXTENSION_CODE_MAX.toString(16)}`,
        ),
      );
    }
    return this.#request(code, fields, data, options.signal) as Promise<Envelope<F>>;
  }

  onEvent<E extends ServiceEvent>(code: E, handler: (fields: EventContract[E], data: Uint8Array) => void): void {
    this.#events.set(code, handler as (fields: never, data: Uint8Array) => void);
  }

  onEnd(handler: (error: Error) => void): void {
    this.#endHandlers.push(handler);
  }

  recycle(data: Uint8Array): void {
    this.#client?.frames.recycle(data);
  }

  /** Leaves the session; it goes on for other clients. */
  async detach(): Promise<void> {
    const client = this.#live();
    await metaCall(client, MetaCode.Detach, { attachment: this.attachment });
    this.#end(new SessionEndedError("detached", "this client detached from the session"));
  }

  /** Ends the session for everyone: files are closed and processes ended on the agent. */
  async close(): Promise<void> {
    if (this.ended) return;
    const client = this.#live();
    await metaCall(client, MetaCode.Close, { sessionId: this.id });
    this.#end(new SessionEndedError("closed", "the session was closed"));
  }

  // ---- AttachmentRoute ---------------------------------------------------

  onFrame(frame: Frame): void {
    const body = this.#link.receive(frame.code, frame.payload);
    if (body === null) return;
    if (frame.token !== 0) {
      const p = this.#pending.get(frame.token);
      if (!p) return;
      this.#pending.delete(frame.token);
      if (frame.code === ERROR_CODE) p.reject(remoteError(decodeError(body)));
      else if (frame.code === REPLY_CODE) p.resolve(decodeEnvelope(body));
      else p.reject(new ProtocolError(`unexpected reply code ${frame.code}`));
      return;
    }
    const handler = this.#events.get(frame.code);
    if (handler) {
      const { fields, data } = decodeEnvelope<never>(body);
      handler(fields, data);
    }
  }

  onEnded(code: string, message: string): void {
    // A code this side does not know (a newer agent) still ends the session.
    this.#end(new SessionEndedError(isErrorCode(code) ? code : "session-ended", message));
  }

  onDisconnected(_error: Error): void {
    // Requests stay pending and kept by the link: resume() sends them again.
    this.#link.disconnect();
  }

  #request(code: number, fields: unknown, data: Uint8Array | undefined, signal?: AbortSignal): Promise<Envelope> {
    if (this.ended) return Promise.reject(this.ended);
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const token = this.#nextToken;
    this.#nextToken = this.#nextToken >= 0xffffffff ? 1 : this.#nextToken + 1;
    const body = encodeEnvelopeParts(fields, data);
    const size = body.reduce((n, b) => n + b.length, SESSION_HEADER_SIZE);
    // Refused here, with the sizes: sent, it would make the agent close the whole connection.
    if (size > MAX_PAYLOAD) return Promise.reject(new FrameTooLargeError(size, MAX_PAYLOAD));
    return new Promise<Envelope>((resolve, reject) => {
      if (!signal) this.#pending.set(token, { resolve, reject });
      else {
        const settled = this.#abortable(signal, token);
        this.#pending.set(token, {
          resolve: (e) => (settled(), resolve(e)),
          reject: (e) => (settled(), reject(e)),
        });
      }
      this.#link.send(code, token, body);
    });
  }

  /**
   * Has `signal` abort request `token`; returns what forgets it once the request settles. One
   * listener per signal however many requests share it (a transfer's window of them): a listener
   * each would pass the runtime's 10-listener warning on every large transfer.
   */
  #abortable(signal: AbortSignal, token: number): () => void {
    let watch = this.#aborts.get(signal);
    if (!watch) {
      const tokens = new Set<number>();
      // Aborted, each token is forgotten: its reply, when it comes, is acknowledged and dropped.
      const onAbort = () => {
        this.#aborts.delete(signal);
        for (const t of tokens) {
          const p = this.#pending.get(t);
          this.#pending.delete(t);
          p?.reject(new AbortedError(signal.reason));
        }
      };
      watch = { tokens, onAbort };
      this.#aborts.set(signal, watch);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    const { tokens, onAbort } = watch;
    tokens.add(token);
    return () => {
      tokens.delete(token);
      if (tokens.size > 0 || this.#aborts.get(signal)?.tokens !== tokens) return;
      this.#aborts.delete(signal);
      signal.removeEventListener("abort", onAbort);
    };
  }

  /** An event: lost with the connection, which is fine, since the next change sends the figure again. */
  #reportWindow(bytes: number) {
    const client = this.#client;
    if (!this.#windowReports || this.ended || !client || client.isClosed) return;
    const fields = encodeFields({ attachment: this.attachment, bytes });
    client.post(META_TARGET, MetaCode.WindowReport, 0, [fields]).catch(() => {});
  }

  #transportFor(client: AgentClient) {
    return {
      transmit: (code: number, token: number, parts: readonly Uint8Array[]) => {
        if (!client.isClosed) client.post(this.attachment, code, token, parts).catch(() => {});
      },
    };
  }

  #live(): AgentClient {
    if (!this.#client || this.#client.isClosed) {
      throw new ConnectionClosedError("the connection to the agent is closed; resume the session first");
    }
    return this.#client;
  }

  #end(error: SessionEndedError) {
    if (this.ended) return;
    this.ended = error;
    this.#link.close();
    this.#client?.unroute(this.attachment);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    for (const h of this.#endHandlers) h(error);
  }
}

async function metaCall<T>(client: AgentClient, code: number, fields: Record<string, unknown>): Promise<T> {
  const reply = await client.request(0, code, encodeFields(fields));
  if (reply.code !== code + 1) throw new ProtocolError(`expected reply code ${code + 1}, got ${reply.code}`);
  return decodeFields<T>(reply.payload);
}

/** Lists the agent's sessions. */
export async function listSessions(client: AgentClient): Promise<SessionSummary[]> {
  return (await metaCall<{ sessions: SessionSummary[] }>(client, MetaCode.List, {})).sessions;
}
