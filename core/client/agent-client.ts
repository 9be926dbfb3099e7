/**
 * The product side of a connection: requests carry a token, replies are
 * matched back to them, and error replies become {@link RemoteError}s.
 * Runtime-free; the caller supplies the connected {@link ByteStream}.
 *
 * @example
 * ```ts
 * const client = await AgentClient.open(stream, { key, provider: webCryptoProvider });
 * const info = await client.info();
 * const rtt = await client.ping();
 * client.close();
 * ```
 * @module
 */
import type { LinkMemory } from "./window.ts";
import type { FrameStream } from "../secure/frame-stream.ts";
import { initiate, type InitiateOptions } from "../secure/opening.ts";
import { ConnectionClosedError, ProtocolError, remoteError } from "../errors.ts";
import { type Frame, META_TARGET } from "../wire/frame.ts";
import type { Reply } from "../wire/hello.ts";
import { type AgentInfo, decodeError, decodeFields, decodePong, ERROR_CODE, MetaCode } from "../wire/messages.ts";
import type { ByteStream } from "../wire/stream.ts";
import { startKeepalive } from "../wire/keepalive.ts";
import type { UpgradeOutcome } from "../wire/messages.ts";
import { pushUpdate, type UpdateOptions } from "./update.ts";

/** What a session attachment receives from the client connection. */
export interface AttachmentRoute {
  onFrame(frame: Frame): void;
  onEnded(code: string, message: string, attachment: number): void;
  onDisconnected(error: Error): void;
}

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (error: Error) => void;
  /** Error replies resolve too (a relay hands them on as they are). */
  raw?: boolean;
}

/** A connection to one agent, ready for requests. */
export class AgentClient {
  #pending = new Map<number, Pending>();
  #nextToken = 1;
  #closedError: Error | null = null;
  #routes = new Map<number, AttachmentRoute>();
  /** When the last frame arrived (ms since the epoch). */
  lastReceivedAt: number = Date.now();
  /** Resolves when the connection has ended, for whatever reason. */
  readonly closed: Promise<Error>;
  /**
   * What whole-file transfers over this connection learned of the link (the window the last one
   * held): a session's next transfer, either way, starts there instead of ramping from 2 MiB.
   */
  readonly transferMemory: LinkMemory = {};

  private constructor(readonly frames: FrameStream, readonly reply: Reply) {
    this.closed = this.#readLoop();
  }

  /** Runs the opening exchange on `stream` and returns a ready client. */
  static async open(stream: ByteStream, options: InitiateOptions): Promise<AgentClient> {
    try {
      const { frames, reply } = await initiate(stream, options);
      return new AgentClient(frames, reply);
    } catch (e) {
      stream.close();
      throw e;
    }
  }

  /** A client over a frame stream whose opening is already done (the outbound listener runs it itself). */
  static wrap(frames: FrameStream, reply: Reply): AgentClient {
    return new AgentClient(frames, reply);
  }

  /** The protocol version both sides settled on. */
  get version(): number {
    return this.reply.version;
  }

  /** Sends a request and resolves with the reply frame; an error reply rejects with {@link RemoteError}. */
  request(target: number, code: number, payload: Uint8Array = new Uint8Array(0)): Promise<Frame> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const token = this.#nextToken;
    this.#nextToken = this.#nextToken >= 0xffffffff ? 1 : this.#nextToken + 1;
    return new Promise<Frame>((resolve, reject) => {
      this.#pending.set(token, { resolve, reject });
      this.frames.send({ target, code, token, payload }).catch((e) => {
        this.#pending.delete(token);
        reject(e);
      });
    });
  }

  /**
   * Sends a request and hands its reply frame, an error reply included, to `onReply` as soon as it
   * is read, before the next frame is: a cluster node relaying another node's requests routes a new
   * attachment there, ahead of its first frame. Rejects only when the connection ends first.
   */
  relay(target: number, code: number, payload: Uint8Array, onReply: (frame: Frame) => void): Promise<void> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const token = this.#nextToken;
    this.#nextToken = this.#nextToken >= 0xffffffff ? 1 : this.#nextToken + 1;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(token, { resolve: (frame) => resolve(onReply(frame)), reject, raw: true });
      this.frames.send({ target, code, token, payload }).catch((e) => {
        this.#pending.delete(token);
        reject(e);
      });
    });
  }

  /** Round trip to the agent; resolves with the measured time in milliseconds and the agent's clock. */
  async ping(payload: Uint8Array = new Uint8Array(8)): Promise<{ rttMs: number; agentTimeMs: number }> {
    const t0 = performance.now();
    const reply = await this.request(META_TARGET, MetaCode.Ping, payload);
    const rttMs = performance.now() - t0;
    expectCode(reply, MetaCode.Pong);
    const { agentTimeMs, echo } = decodePong(reply.payload);
    if (echo.length !== payload.length) throw new ProtocolError("the agent echoed a different ping payload");
    return { rttMs, agentTimeMs };
  }

  /** What the agent says about itself. */
  async info(): Promise<AgentInfo> {
    const reply = await this.request(META_TARGET, MetaCode.Info);
    expectCode(reply, MetaCode.InfoReply);
    return decodeFields<AgentInfo>(reply.payload);
  }

  /**
   * Pushes `binary` as the agent's new program (the key needs the `update` right); resolves with
   * the outcome once it has taken over. The agent may then cut this connection: connect again.
   */
  update(binary: Uint8Array, options: UpdateOptions = {}): Promise<UpgradeOutcome> {
    return pushUpdate(this, binary, options);
  }

  close(): void {
    this.#fail(new ConnectionClosedError("the client closed the connection"));
    this.frames.close();
  }

  async #readLoop(): Promise<Error> {
    try {
      for (;;) {
        if (!(await this.frames.reader.readable())) break;
        const frame = await this.frames.receive();
        if (frame === null) break;
        this.lastReceivedAt = Date.now();
        if (frame.target !== META_TARGET) {
          this.#routes.get(frame.target)?.onFrame(frame);
          continue;
        }
        if (frame.token === 0) {
          this.#onMetaEvent(frame);
          continue;
        }
        const pending = this.#pending.get(frame.token);
        if (!pending) continue; // an event or a late reply: nothing waits for it here
        this.#pending.delete(frame.token);
        if (frame.code === ERROR_CODE && !pending.raw) {
          const e = decodeError(frame.payload);
          pending.reject(remoteError(e));
        } else pending.resolve(frame);
      }
      this.#fail(new ConnectionClosedError("the agent closed the connection"));
    } catch (e) {
      this.#fail(e as Error);
    }
    this.frames.close();
    return this.#closedError!;
  }

  /**
   * Sends a heartbeat every `intervalMs` and closes the connection when
   * nothing has arrived for `deadMs`, so a half-open connection is noticed.
   */
  keepalive(intervalMs: number, deadMs: number): void {
    const stop = startKeepalive({
      intervalMs,
      deadMs,
      lastReceivedAt: () => this.lastReceivedAt,
      beat: () =>
        void this.frames.send({ target: META_TARGET, code: MetaCode.Heartbeat, token: 0, payload: new Uint8Array(0) })
          .catch(() => {}),
      dead: () => {
        this.#fail(
          new ConnectionClosedError(
            `no traffic from the agent for ${Math.round(deadMs / 1000)} s; the connection is gone`,
          ),
        );
        this.frames.close();
      },
    });
    this.closed.then(stop);
  }

  /** Routes frames for an attachment's target to `route` (the session layer uses this). */
  route(target: number, route: AttachmentRoute): void {
    this.#routes.set(target, route);
  }

  /** Stops routing a target. */
  unroute(target: number): void {
    this.#routes.delete(target);
  }

  /** Sends a frame that expects no reply; its payload is the concatenation of `parts`. */
  post(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    return this.frames.sendParts(target, code, token, parts);
  }

  /** True once the connection has ended. */
  get isClosed(): boolean {
    return this.#closedError !== null;
  }

  #onMetaEvent(frame: Frame) {
    if (frame.code !== MetaCode.Ended) return;
    const e = decodeFields<{ attachment: number; code: string; message: string }>(frame.payload);
    this.#routes.get(e.attachment)?.onEnded(e.code, e.message, e.attachment);
  }

  #fail(error: Error) {
    const first = this.#closedError === null;
    this.#closedError ??= error;
    if (first) { for (const l of [...this.#routes.values()]) l.onDisconnected(this.#closedError); }
    for (const p of this.#pending.values()) p.reject(this.#closedError);
    this.#pending.clear();
  }
}

function expectCode(frame: Frame, code: number) {
  if (frame.code !== code) throw new ProtocolError(`expected reply code ${code}, got ${frame.code}`);
}
