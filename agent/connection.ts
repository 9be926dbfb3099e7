/**
 * One authenticated client connection, however it arrived (inbound, outbound,
 * LocalAgent): answers meta messages from one table, {@link META_HANDLERS},
 * and forwards session frames to their host, in order, with backpressure:
 * while a host's ring is full this connection is not read.
 * @module
 */
import os from "node:os";
import type { FrameStream } from "../core/secure/frame-stream.ts";
import { AgentError, type ErrorCode, ServiceError } from "../core/errors.ts";
import { serializeError } from "../core/wire/error-reply.ts";
import { type Frame, META_TARGET } from "../core/wire/frame.ts";
import { PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import {
  type AgentInfo,
  decodeFields,
  encodeError,
  encodeFields,
  encodePong,
  ERROR_CODE,
  MAX_PING_PAYLOAD,
  MetaCode,
} from "../core/wire/messages.ts";
import { startKeepalive } from "../core/wire/keepalive.ts";
import { CloseWatch } from "../core/concurrency.ts";
import { VERSION } from "../core/version.ts";
import type { Attachment, SessionManager, SessionPeer } from "./sessions.ts";
import type { UpdateReceiver } from "./updates.ts";
import { runtimeInfo } from "../runtime/crypto.ts";
import { IdleTrim } from "../runtime/malloc.ts";

/** The agent process's: every connection's traffic counts, and memory goes back when all are quiet. */
const idle = new IdleTrim();

export class ClientConnection implements SessionPeer {
  /** When the last frame arrived (ms since the epoch). */
  lastReceivedAt = Date.now();

  constructor(
    readonly frames: FrameStream,
    readonly remote: string,
    readonly sessions: SessionManager,
    /** When this agent started (ms since the epoch): meta Info reports the uptime from it. */
    readonly startedAt: number,
    /** The key the client authenticated with: it decides which sessions the client may use. */
    readonly keyId: string | null = null,
    /** Takes pushed updates (meta UpdateBegin…); null where none may be pushed (LocalAgent). */
    readonly updates: UpdateReceiver | null = null,
  ) {
    this.#closes = new CloseWatch(frames.stream.closed);
  }

  /** When a frame last moved either way (ms since the epoch); null until the peer's first frame. */
  #lastActiveAt: number | null = null;
  /** Requests waiting on a full ring watch for the client leaving through this. */
  readonly #closes: CloseWatch;

  send(frame: Frame): Promise<void> {
    this.#sentAt();
    return this.frames.send(frame);
  }

  sendParts(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void> {
    this.#sentAt();
    return this.frames.sendParts(target, code, token, parts);
  }

  #sentAt() {
    if (this.#lastActiveAt !== null) this.#lastActiveAt = Date.now();
  }

  /**
   * Closes the connection when the peer sends no frame within `firstFrameMs` of authenticating, or when no frame
   * has moved either way for `idleMs` while no session is attached (an attached session may be running a long,
   * silent process: that is work, not idleness). Returns a function that stops the checks.
   */
  idleLimits(firstFrameMs: number, idleMs: number): () => void {
    const since = Date.now();
    let timer: ReturnType<typeof setTimeout>;
    const check = () => {
      const now = Date.now();
      if (this.#lastActiveAt === null) {
        if (now - since >= firstFrameMs) {
          return this.#closeFor(`no frame within ${firstFrameMs / 1000} s of authenticating`);
        }
        return schedule(Math.min(since + firstFrameMs - now, idleMs));
      }
      const quiet = now - this.#lastActiveAt;
      if (quiet >= idleMs && !this.sessions.isAttached(this)) {
        return this.#closeFor(`idle for ${idleMs / 1000} s with no session attached`);
      }
      schedule(Math.max(idleMs - quiet, Math.min(idleMs, 1000)));
    };
    const schedule = (ms: number) => {
      timer = setTimeout(check, ms);
      (timer as { unref?: () => void }).unref?.();
    };
    schedule(Math.min(firstFrameMs, idleMs));
    return () => clearTimeout(timer);
  }

  #closeFor(reason: string) {
    this.deadReason = reason;
    this.frames.close();
  }

  #dropped = false;

  drop(): boolean {
    if (this.#dropped) return false;
    this.#dropped = true;
    this.frames.close();
    return true;
  }

  /** Serves frames until the peer leaves; returns why it ended, if not cleanly. */
  async serve(): Promise<string | null> {
    try {
      for (;;) {
        const frame = await this.frames.receive();
        if (frame === null) return null;
        this.lastReceivedAt = this.#lastActiveAt = Date.now();
        // An event (a heartbeat) is no work: it must not keep the agent's memory from going back.
        if (frame.token !== 0) idle.activity();
        if (frame.target === META_TARGET) await this.#meta(frame);
        else await this.#session(frame);
      }
    } catch (e) {
      return e instanceof AgentError ? `${e.code}: ${e.message}` : (e as Error).message;
    } finally {
      this.sessions.disconnected(this);
      this.updates?.disconnected(this);
      this.frames.close();
    }
  }

  /** Heartbeats every `intervalMs`; closes the connection after `deadMs` of silence from the peer. */
  keepalive(intervalMs: number, deadMs: number): () => void {
    return startKeepalive({
      intervalMs,
      deadMs,
      lastReceivedAt: () => this.lastReceivedAt,
      beat: () =>
        void this.send({ target: META_TARGET, code: MetaCode.Heartbeat, token: 0, payload: new Uint8Array(0) }).catch(
          () => {},
        ),
      dead: () => this.#closeFor(`no traffic for ${Math.round(deadMs / 1000)} s (half-open connection)`),
    });
  }

  /** Set when {@link keepalive} gave up on the peer, or {@link idleLimits} closed it. */
  deadReason: string | null = null;

  #error(request: Frame, code: string, message: string) {
    return this.send({
      target: request.target,
      code: ERROR_CODE,
      token: request.token,
      payload: encodeError({ code, message }),
    });
  }

  async #meta(frame: Frame) {
    const handler = META_HANDLERS[frame.code as MetaCode];
    if (!handler) {
      return await this.#error(frame, "unknown-code", `the agent has no meta message with code ${frame.code}`);
    }
    const replyBytes = (payload: Uint8Array) =>
      this.send({ target: frame.target, code: frame.code + 1, token: frame.token, payload });
    const fail = (e: unknown) => {
      const { code, message } = serializeError(e);
      return this.#error(frame, code, message);
    };
    const request: MetaRequest = {
      payload: frame.payload,
      fields: () => decodeFields<Record<string, unknown>>(frame.payload) ?? {},
      reply: (fields) => replyBytes(encodeFields(fields)),
      replyBytes,
      later: (work, answered) => void work.then((fields) => request.reply(fields).then(answered), fail).catch(() => {}),
    };
    try {
      await handler(request, this);
    } catch (e) {
      return await fail(e);
    }
  }

  async #session(frame: Frame) {
    const att = this.sessions.attachmentFor(frame.target, this);
    if (!att) {
      return await this.#error(
        frame,
        "unknown-target",
        `no session is attached on target ${frame.target} of this connection`,
      );
    }
    if (att.session.frozen) return; // a hand-over is under way: not counted, so sent again after the resume
    const body = att.link.receive(frame.code, frame.payload);
    if (body === null) return; // a bare acknowledgement, or sent again after a resume
    att.requested(frame.token, body.length);
    if (att.session.ending) return this.#failRequest(att, frame, "session-ended", "the session has ended");
    // A full ring holds this connection (backpressure), but must not hide that the client left.
    // A host that dies meanwhile fails this request and its session, never the connection.
    try {
      const sent = att.session.host.send({ target: att.id, code: frame.code, token: frame.token, payload: body });
      const copied = await this.#closes.race(sent.then(() => true), false);
      if (copied) this.frames.recycle(frame.payload); // in the ring now: its buffer can take the next frame
    } catch (e) {
      this.#failRequest(att, frame, "host-failed", `the session's host process is gone: ${(e as Error).message}`);
    }
  }

  /** Answers a session request with an error, numbered on its attachment like any reply from the host. */
  #failRequest(att: Attachment, request: Frame, code: ErrorCode, message: string) {
    if (request.token !== 0) att.link.send(ERROR_CODE, request.token, [encodeError({ code, message })]);
  }
}

/** One meta request as its handler sees it. */
interface MetaRequest {
  readonly payload: Uint8Array;
  /** The payload as MessagePack fields, each still to be checked (malformed: invalid-argument). */
  fields(): Record<string, unknown>;
  /** Answers with `fields` in MessagePack, under the request code + 1. */
  reply(fields: unknown): Promise<void>;
  /** Answers with raw bytes, under the request code + 1. */
  replyBytes(payload: Uint8Array): Promise<void>;
  /** Answers with what `work` resolves to, or its error, whenever it settles; this connection reads on meanwhile. */
  later(work: Promise<unknown>, answered?: () => void): void;
}

/**
 * What the agent does with one meta code: answer the request once, or, for an
 * event, nothing. A thrown {@link ServiceError} is the reply's error code.
 */
type MetaHandler = (request: MetaRequest, connection: ClientConnection) => Promise<void> | void;

/**
 * Every meta message the agent serves (docs/protocol.md §5); any other code
 * gets `unknown-code` and the connection stays up.
 */
const META_HANDLERS: { [C in MetaCode]?: MetaHandler } = {
  [MetaCode.Ping]: (request) => {
    if (request.payload.length > MAX_PING_PAYLOAD) {
      throw new ServiceError("too-large", `ping payload over ${MAX_PING_PAYLOAD} bytes`);
    }
    return request.replyBytes(encodePong(Date.now(), request.payload));
  },
  [MetaCode.Info]: (request, connection) => request.reply(agentInfo(connection.startedAt)),
  [MetaCode.Open]: async (request, connection) =>
    request.reply(await connection.sessions.open(request.fields().product, connection)),
  [MetaCode.Attach]: (request, connection) =>
    request.reply(connection.sessions.attach(request.fields().sessionId, connection)),
  // The reply goes before the frames the client missed, so resume sends it itself.
  [MetaCode.Resume]: (request, connection) =>
    connection.sessions.resume(request.fields(), connection, (info) => request.reply(info)),
  [MetaCode.Detach]: (request, connection) => {
    connection.sessions.detach(request.fields().attachment, connection);
    return request.reply({});
  },
  [MetaCode.Close]: async (request, connection) => {
    await connection.sessions.close(request.fields().sessionId, connection);
    return request.reply({});
  },
  [MetaCode.List]: (request, connection) => request.reply({ sessions: connection.sessions.list(connection) }),
  // Its arrival is the news (lastReceivedAt); an event is never answered.
  [MetaCode.Heartbeat]: () => {},
  [MetaCode.WindowReport]: (request, connection) => connection.sessions.reportWindow(request.fields(), connection),
  [MetaCode.UpdateBegin]: async (request, connection) =>
    request.reply(await updatesOf(connection).begin(connection, request.fields())),
  // Awaited: the next chunk is read only once this one is written (backpressure to the client's window).
  [MetaCode.UpdateData]: async (request, connection) =>
    request.reply(await updatesOf(connection).data(connection, request.payload)),
  // Applying takes a while: the connection reads on (heartbeats) and the reply goes when it is done.
  [MetaCode.UpdateCommit]: (request, connection) =>
    request.later(updatesOf(connection).commit(connection, request.fields()), () => connection.updates?.answered()),
  [MetaCode.UpdateAbort]: async (request, connection) => {
    await updatesOf(connection).abort(connection, request.fields());
    return request.reply({});
  },
};

/** The connection's update receiver; an agent without one (LocalAgent) cannot be updated this way. */
function updatesOf(connection: ClientConnection): UpdateReceiver {
  if (connection.updates) return connection.updates;
  throw new ServiceError("update-unavailable", "this agent cannot apply updates: it takes none over its connections");
}

/** What the agent tells clients about itself (meta Info), the same however they connected. */
function agentInfo(startedAt: number): AgentInfo {
  return {
    version: VERSION,
    protocol: { ...PROTOCOL_VERSIONS, current: PROTOCOL_VERSIONS.max },
    os: process.platform,
    arch: process.arch,
    hostname: os.hostname(),
    uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    runtime: runtimeInfo(),
  };
}
