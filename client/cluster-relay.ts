/**
 * The owning node's end of a proxied agent connection: frames another node's
 * product sends arrive over an {@link EngineStream} and go onto the agent's one
 * connection, and what the agent sends back for them returns the same way.
 * Meta requests get a token of the agent connection (many relays share it) and
 * their replies go back under the requester's token; session frames travel
 * as they are, on the attachments opened, attached or resumed through this relay.
 * @module
 */
import type { AgentClient, AttachmentRoute } from "../core/client/agent-client.ts";
import { FrameStream } from "../core/secure/frame-stream.ts";
import { type Frame, META_TARGET } from "../core/wire/frame.ts";
import { decodeFields, encodeFields, MetaCode } from "../core/wire/messages.ts";
import { StreamReader } from "../core/wire/stream.ts";
import type { EngineStream } from "./cluster-stream.ts";

/** Meta replies that hand the requester an attachment. */
const ATTACHING = new Set<number>([MetaCode.OpenReply, MetaCode.AttachReply, MetaCode.ResumeReply]);

export class Relay implements AttachmentRoute {
  readonly frames: FrameStream;
  readonly #attachments = new Set<number>();
  /** Attachments opened here that have ended: a frame the requester sent before it heard is dropped. */
  readonly #ended = new Set<number>();
  /** Bytes queued toward the requester, not yet taken by the engine stream. */
  #queued = 0;

  constructor(readonly client: AgentClient, readonly stream: EngineStream, readonly maxQueuedBytes: number) {
    this.frames = new FrameStream(new StreamReader(stream), null);
  }

  /** Relays until either side ends; then the attachments opened here stop being routed here. */
  async run(): Promise<void> {
    const agentGone = this.client.closed.then((e) => this.stream.fail(`the agent's connection ended: ${e.message}`));
    try {
      for (;;) {
        const frame = await this.frames.receive();
        if (frame === null) break;
        if (frame.target === META_TARGET) {
          if (frame.token !== 0) this.#meta(frame);
          else if (frame.code === MetaCode.WindowReport) this.#windowReport(frame);
          // other events (heartbeats) stay between the nodes
        } else if (this.#attachments.has(frame.target)) {
          await this.client.post(frame.target, frame.code, frame.token, [frame.payload]); // the agent's pace
        } else if (this.#ended.has(frame.target)) {
          // Sent before the requester heard the attachment ended (a delivery acknowledgement's timer,
          // typically): the agent would drop it too.
          continue;
        } else {
          throw new Error(`a frame for attachment ${frame.target}, which was not opened through this connection`);
        }
      }
    } catch (e) {
      this.stream.fail((e as Error).message);
    } finally {
      for (const a of this.#attachments) this.client.unroute(a);
      this.#attachments.clear();
      this.stream.close();
      void agentGone;
    }
  }
  /** A window report, passed on for an attachment opened through this connection only. */
  #windowReport(frame: Frame) {
    const { attachment } = decodeFields<{ attachment?: unknown }>(frame.payload) ?? {};
    if (!this.#attachments.has(Number(attachment))) return;
    this.client.post(META_TARGET, frame.code, 0, [frame.payload]).catch(() => {});
  }

  #meta(request: Frame) {
    this.client.relay(META_TARGET, request.code, request.payload, (reply) => {
      if (ATTACHING.has(reply.code) && !this.stream.isClosed) {
        const { attachment } = decodeFields<{ attachment: number }>(reply.payload);
        this.#attachments.add(attachment);
        this.client.route(attachment, this);
      }
      this.#toRequester({ ...reply, token: request.token });
    }).catch((e) => this.stream.fail(`the agent's connection ended: ${(e as Error).message}`));
  }

  #toRequester(frame: Frame) {
    if (this.stream.isClosed) return;
    const size = frame.payload.length;
    this.#queued += size;
    if (this.#queued > this.maxQueuedBytes) {
      this.stream.fail(`the requesting node fell ${this.#queued} bytes behind the agent; the connection is dropped`);
      return;
    }
    this.frames.send(frame).then(() => (this.#queued -= size), () => {});
  }

  // ---- AttachmentRoute: the agent's frames for the attachments opened here ----

  onFrame(frame: Frame): void {
    this.#toRequester(frame); // copied into engine messages as it is sent
  }

  onEnded(code: string, message: string, attachment: number): void {
    this.#attachments.delete(attachment);
    this.#ended.add(attachment);
    this.client.unroute(attachment);
    this.#toRequester({
      target: META_TARGET,
      code: MetaCode.Ended,
      token: 0,
      payload: encodeFields({ attachment, code, message }),
    });
  }

  onDisconnected(error: Error): void {
    this.stream.fail(`the agent's connection ended: ${error.message}`);
  }
}
