/**
 * One authenticated client connection: answers meta messages (including the
 * session ones) and forwards session frames to their host, in order, with
 * backpressure: while a host's ring is full this connection is not read.
 * @module
 */
import type { FrameStream } from "../core/secure/frame-stream.ts";
import { AgentError, type ErrorCode, ProtocolError, ServiceError } from "../core/errors.ts";
import { type Frame, META_TARGET } from "../core/wire/frame.ts";
import { decodeFields, encodeError, encodeFields, ERROR_CODE, MetaCode } from "../core/wire/messages.ts";
import { answerMeta, type MetaContext } from "../core/wire/meta.ts";
import { startKeepalive } from "../core/wire/keepalive.ts";
import { SessionMeta } from "../core/session/protocol.ts";
import type { Attachment, SessionManager, SessionPeer } from "./sessions.ts";
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
    readonly meta: MetaContext,
  ) {}

  send(frame: Frame): Promise<void> {
    return this.frames.send(frame);
  }

  sendParts(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void> {
    return this.frames.sendParts(target, code, token, parts);
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
        this.lastReceivedAt = Date.now();
        if (frame.target === META_TARGET && frame.code === MetaCode.Heartbeat) continue;
        idle.activity();
        if (frame.target === META_TARGET) await this.#meta(frame);
        else await this.#session(frame);
      }
    } catch (e) {
      return e instanceof AgentError ? `${e.code}: ${e.message}` : (e as Error).message;
    } finally {
      this.sessions.disconnected(this);
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
      dead: () => {
        this.deadReason = `no traffic for ${Math.round(deadMs / 1000)} s (half-open connection)`;
        this.frames.close();
      },
    });
  }

  /** Set when {@link keepalive} gave up on the peer. */
  deadReason: string | null = null;

  #reply(request: Frame, code: number, fields: unknown) {
    return this.send({ target: request.target, code, token: request.token, payload: encodeFields(fields) });
  }

  #error(request: Frame, code: string, message: string) {
    return this.send({
      target: request.target,
      code: ERROR_CODE,
      token: request.token,
      payload: encodeError({ code, message }),
    });
  }

  async #meta(frame: Frame) {
    const fields = () => decodeFields<Record<string, unknown>>(frame.payload) ?? {};
    try {
      switch (frame.code) {
        case SessionMeta.Open:
          return await this.#reply(frame, SessionMeta.OpenReply, await this.sessions.open(fields().product, this));
        case SessionMeta.Attach:
          return await this.#reply(frame, SessionMeta.AttachReply, this.sessions.attach(fields().sessionId, this));
        case SessionMeta.Resume:
          return await this.sessions.resume(
            fields(),
            this,
            (info) => this.#reply(frame, SessionMeta.ResumeReply, info),
          );
        case SessionMeta.Detach:
          this.sessions.detach(fields().attachment, this);
          return await this.#reply(frame, SessionMeta.DetachReply, {});
        case SessionMeta.Close:
          await this.sessions.close(fields().sessionId, this);
          return await this.#reply(frame, SessionMeta.CloseReply, {});
        case SessionMeta.List:
          return await this.#reply(frame, SessionMeta.ListReply, { sessions: this.sessions.list() });
        default:
          return await this.send(answerMeta(frame, this.meta));
      }
    } catch (e) {
      if (e instanceof ServiceError) return await this.#error(frame, e.code, e.message);
      if (e instanceof ProtocolError) return await this.#error(frame, "invalid-argument", e.message);
      return await this.#error(frame, "failed", (e as Error).message);
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
    const body = att.link.receive(frame.code, frame.payload);
    if (body === null) return; // a bare acknowledgement, or sent again after a resume
    if (att.session.ending) return this.#failRequest(att, frame, "session-ended", "the session has ended");
    // A full ring holds this connection (backpressure), but must not hide that the client left.
    // A host that dies meanwhile fails this request and its session, never the connection.
    try {
      const copied = await Promise.race([
        att.session.host.send({ target: att.id, code: frame.code, token: frame.token, payload: body }).then(() => true),
        this.frames.stream.closed.then(() => false),
      ]);
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
