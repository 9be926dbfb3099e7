/**
 * Reliable delivery for one session attachment, the same on both ends
 * (docs/protocol.md §6). Each side numbers what it sends (1, 2, 3, …), keeps
 * every message until the peer acknowledges it, and acknowledges what it
 * received in the header of whatever it sends next. When nothing goes the
 * other way for a while it sends a bare acknowledgement instead. After a lost
 * connection the two sides exchange their last received numbers and each
 * sends again what the other missed: nothing is lost, nothing repeated.
 *
 * Within one connection frames arrive in order (TCP); a gap means frames
 * were lost and is an error, never papered over.
 *
 * @example
 * ```ts
 * const sent: Uint8Array[][] = [];
 * const link = new DeliveryLink({ transmit: (_code, _token, parts) => void sent.push([...parts]) });
 * link.send(0x100, 1, [new Uint8Array([1, 2])]); // numbered 1, kept until acknowledged
 * link.acknowledge(1); // the peer confirmed it: no longer kept
 * ```
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { ACK_CODE, decodeSessionHeader, encodeSessionHeader, SESSION_HEADER_SIZE } from "./protocol.ts";

/** Where a link's frames go: one attachment's target on one connection. Must not throw. */
export interface LinkTransport {
  /**
   * Sends a frame made of `parts`. A transport that reads the parts later (a queued seal) returns a
   * promise that settles once it no longer reads them, whatever the outcome.
   */
  transmit(code: number, token: number, parts: readonly Uint8Array[]): void | Promise<unknown>;
}

/** Options for {@link DeliveryLink}. */
export interface DeliveryOptions {
  /** The transport at start, if connected. */
  transmit?: LinkTransport["transmit"];
  /** Kept (unacknowledged) bytes at which {@link DeliveryLink.saturated} turns true; unbounded by default. */
  keepLimitBytes?: number;
  /**
   * Acknowledge at once after this many bytes received without sending anything (default 2 MiB:
   * above a transfer's 512 KiB requests, so their replies carry the acknowledgement instead,
   * and far below the 16 MiB the agent keeps per attachment).
   */
  ackEveryBytes?: number;
  /** Otherwise acknowledge within this long (default 20 ms). */
  ackDelayMs?: number;
  /** Called when acknowledgements bring kept bytes back under the limit. */
  onRoom?: () => void;
  /**
   * Called with a message's body once the peer acknowledged it and no transmission still reads it,
   * so its memory may be recycled. Messages dropped by {@link DeliveryLink.close} are not recycled.
   */
  recycle?: (body: readonly Uint8Array[]) => void;
  /** Called with each message's token as it is sent (the agent counts requests answered). */
  onSend?: (token: number) => void;
}

/**
 * A disconnected link's whole state, to carry it into another process (a hand-over between agent
 * versions): the numbers and every message the peer has not acknowledged.
 */
export interface LinkSnapshot {
  sent: number;
  received: number;
  kept: Array<{ seq: number; code: number; token: number; body: Uint8Array }>;
}

interface Kept {
  seq: number;
  code: number;
  token: number;
  body: readonly Uint8Array[];
  size: number;
  /** Transmissions that may still read the body. */
  reading: number;
  acknowledged: boolean;
}

/** Numbering, keeping, acknowledging and resending for one attachment. */
export class DeliveryLink {
  #sendSeq = 0;
  #recvSeq = 0;
  #kept: Kept[] = [];
  #keptBytes = 0;
  #transport: LinkTransport | null;
  #unackedIn = 0;
  /** True while something received has been acknowledged by nothing sent since. */
  #ackOwed = false;
  /**
   * Sends a bare acknowledgement when it fires, if one is still owed. Armed at most once per delay:
   * a reply that carries the acknowledgement leaves it to fire with nothing to do, rather than
   * clearing it and arming a new one for the next request (one timer per delay, not per message).
   */
  #ackTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #limit: number;
  readonly #ackEveryBytes: number;
  readonly #ackDelayMs: number;
  readonly #onRoom: () => void;
  readonly #recycle: ((body: readonly Uint8Array[]) => void) | undefined;
  readonly #onSend: ((token: number) => void) | undefined;

  constructor(options: DeliveryOptions = {}) {
    this.#transport = options.transmit ? { transmit: options.transmit } : null;
    this.#limit = options.keepLimitBytes ?? Infinity;
    this.#ackEveryBytes = options.ackEveryBytes ?? 2 * 1024 * 1024;
    this.#ackDelayMs = options.ackDelayMs ?? 20;
    this.#onRoom = options.onRoom ?? (() => {});
    this.#recycle = options.recycle;
    this.#onSend = options.onSend;
  }

  /** The highest number received in order: what this side acknowledges. */
  get lastReceived(): number {
    return this.#recvSeq;
  }

  /** Bytes sent and not yet acknowledged. */
  get keptBytes(): number {
    return this.#keptBytes;
  }

  /** True while kept bytes are at the limit: the producer should wait for {@link DeliveryOptions.onRoom}. */
  get saturated(): boolean {
    return this.#keptBytes >= this.#limit;
  }

  /** Numbers a message, keeps it until acknowledged, and transmits it if connected. Returns its number. */
  send(code: number, token: number, body: readonly Uint8Array[]): number {
    let size = 0;
    for (const b of body) size += b.length;
    const kept: Kept = { seq: ++this.#sendSeq, code, token, body, size, reading: 0, acknowledged: false };
    this.#kept.push(kept);
    this.#keptBytes += size;
    this.#onSend?.(token);
    this.#transmit(kept);
    return kept.seq;
  }

  /**
   * Takes one incoming session frame's payload. Returns the message body to
   * deliver, or null for a bare acknowledgement or a duplicate. Throws
   * {@link ProtocolError} when frames are missing before this one.
   */
  receive(code: number, payload: Uint8Array): Uint8Array | null {
    const { seq, ack } = decodeSessionHeader(payload);
    this.acknowledge(ack);
    if (code === ACK_CODE || seq === 0) return null;
    if (seq <= this.#recvSeq) return null; // sent again after a resume: already delivered
    if (seq !== this.#recvSeq + 1) {
      throw new ProtocolError(`session frame ${seq} arrived after ${this.#recvSeq}: frames were lost`);
    }
    this.#recvSeq = seq;
    this.#scheduleAck(payload.length);
    return payload.subarray(SESSION_HEADER_SIZE);
  }

  /** The highest number sent: more than this, no honest peer acknowledges. */
  get lastSent(): number {
    return this.#sendSeq;
  }

  /**
   * Forgets everything the peer confirmed up to `ack`. Throws {@link ProtocolError}, forgetting
   * nothing, when `ack` is beyond what was sent: a peer that claims it has what it never got.
   */
  acknowledge(ack: number): void {
    this.#checkAck(ack);
    const wasSaturated = this.saturated;
    while (this.#kept.length > 0 && this.#kept[0].seq <= ack) {
      const k = this.#kept.shift()!;
      this.#keptBytes -= k.size;
      k.acknowledged = true;
      if (k.reading === 0) this.#recycle?.(k.body);
    }
    if (wasSaturated && !this.saturated) this.#onRoom();
  }

  /** The connection is gone: keep everything, send nothing until {@link resume}. */
  disconnect(): void {
    this.#transport = null;
    this.#clearAckTimer();
  }

  /**
   * Continues over a new transport: drops what the peer says it has
   * (`peerLastReceived`) and sends the rest again, in order.
   */
  resume(transport: LinkTransport, peerLastReceived: number): void {
    this.#checkAck(peerLastReceived);
    this.#transport = transport;
    this.acknowledge(peerLastReceived);
    for (const k of this.#kept) this.#transmit(k);
  }

  /** The state to carry into another process; call while disconnected. */
  snapshot(): LinkSnapshot {
    const kept = this.#kept.map((k) => ({
      seq: k.seq,
      code: k.code,
      token: k.token,
      body: concatParts(k.body, k.size),
    }));
    return { sent: this.#sendSeq, received: this.#recvSeq, kept };
  }

  /** A disconnected link that carries on from `snapshot`; {@link resume} connects it. */
  static restore(snapshot: LinkSnapshot, options: DeliveryOptions = {}): DeliveryLink {
    const link = new DeliveryLink({ ...options, transmit: undefined });
    link.#sendSeq = snapshot.sent;
    link.#recvSeq = snapshot.received;
    for (const k of snapshot.kept) {
      link.#kept.push({ ...k, body: [k.body], size: k.body.length, reading: 0, acknowledged: false });
      link.#keptBytes += k.body.length;
    }
    return link;
  }

  /** Stops the acknowledgement timer; the link sends nothing more. */
  close(): void {
    this.disconnect();
    this.#kept = [];
    this.#keptBytes = 0;
  }

  #checkAck(ack: number) {
    if (ack > this.#sendSeq) {
      throw new ProtocolError(`the peer acknowledges ${ack} messages, but only ${this.#sendSeq} were sent`);
    }
  }

  #transmit(k: Kept) {
    if (!this.#transport) return; // kept; resume() sends it
    const reading = this.#transport.transmit(k.code, k.token, [encodeSessionHeader(k.seq, this.#recvSeq), ...k.body]);
    if (reading && this.#recycle) {
      k.reading++;
      const done = () => {
        if (--k.reading === 0 && k.acknowledged) this.#recycle!(k.body);
      };
      reading.then(done, done);
    }
    this.#unackedIn = 0; // the header carried the acknowledgement
    this.#ackOwed = false;
  }

  #scheduleAck(bytes: number) {
    this.#unackedIn += bytes;
    this.#ackOwed = true;
    if (this.#unackedIn >= this.#ackEveryBytes) return this.#sendAck();
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = null;
      if (this.#ackOwed) this.#sendAck();
    }, this.#ackDelayMs);
  }

  #sendAck() {
    this.#unackedIn = 0;
    this.#ackOwed = false;
    this.#transport?.transmit(ACK_CODE, 0, [encodeSessionHeader(0, this.#recvSeq)]);
  }

  #clearAckTimer() {
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
  }
}

function concatParts(parts: readonly Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0].slice();
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
}
