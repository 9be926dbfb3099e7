/**
 * The shared-memory channel's layout and its two single-producer,
 * single-consumer rings of whole records, over any byte region (a real
 * mapping in production, a plain Uint8Array in unit tests).
 * docs/protocol.md §7 gives the layout and the publication argument.
 *
 * @example
 * ```ts
 * const region = new Uint8Array(channelSize(1 << 20));
 * initChannel(region, 1 << 20);
 * const toHost = new RingWriter(region, Direction.AgentToHost);
 * const fromAgent = new RingReader(region, Direction.AgentToHost);
 * toHost.tryWrite(bytes); // true when it fitted
 * fromAgent.tryRead();    // the record, or null when empty
 * ```
 * @module
 */
import { crc32 } from "./crc32.ts";
import { allocateUninitialized } from "../bytes.ts";
import { ChannelCorruptError } from "../errors.ts";

/** "AGMM" little-endian. */
export const CHANNEL_MAGIC = 0x4d4d4741;
export const CHANNEL_LAYOUT_VERSION = 3;
/** Bytes before the first ring. */
export const CHANNEL_HEADER_SIZE = 256;
/** Per-record header: length, sequence, CRC-32 of those two, reserved. */
export const RECORD_HEADER_SIZE = 16;

/** Which ring. */
export enum Direction {
  AgentToHost = 0,
  HostToAgent = 1,
}

// Header fields (uint32 LE offsets).
const H_MAGIC = 0, H_VERSION = 4, H_HEADER_SIZE = 8, H_CAPACITY = 12, H_FLAGS = 16, H_HOST_PID = 20, H_AGENT_PID = 24;
/** 16-byte launch nonce at 32: the agent writes it and passes it to the host it starts. */
const H_NONCE = 32, NONCE_SIZE = 16;
// Ring descriptors, 32 bytes each, at 64 and 96.
const RING_DESC = 64;
/** Held attachments at 128: 32 uint32 slots, 0 = free (docs/protocol.md §7 "Held attachments"). */
const H_HELD = 128;
export const HELD_SLOTS = 32;
const R_HEAD = 0, R_TAIL = 4, R_CONSUMER_WAITING = 8, R_PRODUCER_WAITING = 12, R_RECORDS = 16;

/** Channel flags. */
export const FLAG_AGENT_CLOSED = 1, FLAG_HOST_CLOSED = 2;

/** Total file size for rings of `capacity` bytes each. */
export function channelSize(capacity: number): number {
  return CHANNEL_HEADER_SIZE + 2 * capacity;
}

/** Largest record payload a ring of `capacity` bytes carries. */
export function maxRecordPayload(capacity: number): number {
  return capacity / 2 - RECORD_HEADER_SIZE;
}

function view(region: Uint8Array): DataView {
  return new DataView(region.buffer, region.byteOffset, region.byteLength);
}

/** Writes a fresh header into `region` (the agent does this once, before the host starts). */
export function initChannel(region: Uint8Array, capacity: number): void {
  if (capacity < 4096 || (capacity & (capacity - 1)) !== 0 || capacity > 1 << 30) {
    throw new RangeError("ring capacity must be a power of two from 4 KiB to 1 GiB");
  }
  if (region.length < channelSize(capacity)) throw new RangeError("region smaller than the channel");
  region.fill(0, 0, CHANNEL_HEADER_SIZE);
  const v = view(region);
  v.setUint32(H_VERSION, CHANNEL_LAYOUT_VERSION, true);
  v.setUint32(H_HEADER_SIZE, CHANNEL_HEADER_SIZE, true);
  v.setUint32(H_CAPACITY, capacity, true);
  v.setUint32(H_MAGIC, CHANNEL_MAGIC, true); // last: a half-written header never looks valid
}

/** Checks the header and returns the ring capacity; throws {@link ChannelCorruptError}. */
export function checkChannel(region: Uint8Array): number {
  if (region.length < CHANNEL_HEADER_SIZE) throw new ChannelCorruptError("channel file is shorter than its header");
  const v = view(region);
  if (v.getUint32(H_MAGIC, true) !== CHANNEL_MAGIC) throw new ChannelCorruptError("not a channel file (bad magic)");
  const version = v.getUint32(H_VERSION, true);
  if (version !== CHANNEL_LAYOUT_VERSION) {
    throw new ChannelCorruptError(`channel layout version ${version}, expected ${CHANNEL_LAYOUT_VERSION}`);
  }
  const capacity = v.getUint32(H_CAPACITY, true);
  if (region.length < channelSize(capacity) || (capacity & (capacity - 1)) !== 0) {
    throw new ChannelCorruptError("channel sizes do not match the file");
  }
  return capacity;
}

/** Reads or sets channel flags and the host's pid. */
export class ChannelHeader {
  #v: DataView;
  constructor(region: Uint8Array) {
    this.#v = view(region);
  }
  get flags(): number {
    return this.#v.getUint32(H_FLAGS, true);
  }
  /** Sets a flag bit. Only the side that owns the bit writes it. */
  setFlag(bit: number): void {
    this.#v.setUint32(H_FLAGS, this.flags | bit, true);
  }
  get agentPid(): number {
    return this.#v.getUint32(H_AGENT_PID, true);
  }
  set agentPid(pid: number) {
    this.#v.setUint32(H_AGENT_PID, pid, true);
  }
  /** The launch nonce (a copy). */
  get nonce(): Uint8Array {
    return new Uint8Array(this.#v.buffer, this.#v.byteOffset + H_NONCE, NONCE_SIZE).slice();
  }
  set nonce(bytes: Uint8Array) {
    new Uint8Array(this.#v.buffer, this.#v.byteOffset + H_NONCE, NONCE_SIZE).set(bytes.subarray(0, NONCE_SIZE));
  }
  get hostPid(): number {
    return this.#v.getUint32(H_HOST_PID, true);
  }
  set hostPid(pid: number) {
    this.#v.setUint32(H_HOST_PID, pid, true);
  }

  /**
   * Asks the host to hold events for `attachment` (its client is not keeping up).
   * Only the agent writes the table. False when every slot is taken.
   */
  hold(attachment: number): boolean {
    if (this.isHeld(attachment)) return true;
    const free = this.#heldSlot(0);
    if (free < 0) return false;
    this.#v.setUint32(free, attachment, true);
    return true;
  }

  /** Lets the host send events for `attachment` again. */
  unhold(attachment: number): void {
    const slot = this.#heldSlot(attachment);
    if (slot >= 0) this.#v.setUint32(slot, 0, true);
  }

  /** True while the agent holds events for `attachment`. */
  isHeld(attachment: number): boolean {
    return this.#heldSlot(attachment) >= 0;
  }

  /** Offset of the held-table slot holding `value` (0: a free slot), or -1. */
  #heldSlot(value: number): number {
    for (let at = H_HELD; at < H_HELD + 4 * HELD_SLOTS; at += 4) if (this.#v.getUint32(at, true) === value) return at;
    return -1;
  }
}

abstract class RingSide {
  /** The descriptor's words, read and written with Atomics: each access is a full fence (§7). */
  #words: Int32Array;
  protected data: Uint8Array;
  protected desc: number;
  readonly capacity: number;
  protected mask: number;

  constructor(region: Uint8Array, direction: Direction) {
    this.capacity = checkChannel(region);
    this.desc = (RING_DESC + 32 * direction) / 4;
    this.#words = new Int32Array(region.buffer, region.byteOffset, CHANNEL_HEADER_SIZE / 4);
    const start = CHANNEL_HEADER_SIZE + direction * this.capacity;
    this.data = region.subarray(start, start + this.capacity);
    this.mask = this.capacity - 1;
  }

  protected get head(): number {
    return this.field(R_HEAD);
  }
  protected get tail(): number {
    return this.field(R_TAIL);
  }
  protected field(offset: number): number {
    return Atomics.load(this.#words, this.desc + offset / 4) >>> 0;
  }
  protected setField(offset: number, value: number): void {
    Atomics.store(this.#words, this.desc + offset / 4, value | 0);
  }

  /** Bytes written and not yet consumed. */
  get used(): number {
    return (this.head - this.tail) >>> 0;
  }

  protected copyIn(position: number, bytes: Uint8Array): void {
    const at = position & this.mask;
    const first = Math.min(bytes.length, this.capacity - at);
    this.data.set(first === bytes.length ? bytes : bytes.subarray(0, first), at);
    if (first < bytes.length) this.data.set(bytes.subarray(first), 0);
  }

  protected copyOut(
    position: number,
    length: number,
    allocate: (length: number) => Uint8Array = allocateUninitialized,
  ): Uint8Array {
    const at = position & this.mask;
    const out = allocate(length);
    const first = Math.min(length, this.capacity - at);
    out.set(this.data.subarray(at, at + first));
    if (first < length) out.set(this.data.subarray(0, length - first), first);
    return out;
  }
}

const align8 = (n: number) => (n + 7) & ~7;

/** The producing side of one ring. */
export class RingWriter extends RingSide {
  #seq: number;
  #header = new Uint8Array(RECORD_HEADER_SIZE);
  #hv = new DataView(this.#header.buffer);

  constructor(region: Uint8Array, direction: Direction) {
    super(region, direction);
    this.#seq = this.field(R_RECORDS);
  }

  /** Largest payload this ring takes. */
  get maxPayload(): number {
    return maxRecordPayload(this.capacity);
  }

  /**
   * Appends one record if it fits; returns false (and marks the producer as
   * waiting, so the consumer rings back once it frees space) when it does not.
   */
  tryWrite(record: Uint8Array | readonly Uint8Array[]): boolean {
    const parts = record instanceof Uint8Array ? [record] : record;
    let length = 0;
    for (const p of parts) length += p.length;
    if (length > this.maxPayload) {
      throw new RangeError(`record of ${length} bytes exceeds the ring's maximum of ${this.maxPayload}`);
    }
    const size = align8(RECORD_HEADER_SIZE + length);
    const head = this.head;
    if (this.capacity - ((head - this.tail) >>> 0) < size) {
      this.setField(R_PRODUCER_WAITING, 1);
      // Re-check after raising the flag: the consumer may have freed space meanwhile.
      if (this.capacity - ((this.head - this.tail) >>> 0) < size) return false;
      this.setField(R_PRODUCER_WAITING, 0);
    }
    const seq = (this.#seq + 1) >>> 0;
    this.#hv.setUint32(0, length, true);
    this.#hv.setUint32(4, seq, true);
    this.#hv.setUint32(8, crc32(this.#header.subarray(0, 8)), true);
    this.#hv.setUint32(12, 0, true);
    let at = head + RECORD_HEADER_SIZE;
    for (const p of parts) {
      this.copyIn(at, p);
      at += p.length;
    }
    this.copyIn(head, this.#header);
    // Publish: the head moves only after the record is complete (an atomic store, so a fence).
    this.setField(R_HEAD, head + size);
    this.setField(R_RECORDS, seq);
    this.#seq = seq;
    return true;
  }

  /** True if the consumer said it is asleep; clears the flag (the caller then rings its doorbell). */
  takeConsumerWaiting(): boolean {
    if (this.field(R_CONSUMER_WAITING) === 0) return false;
    this.setField(R_CONSUMER_WAITING, 0);
    return true;
  }
}

/** The consuming side of one ring. */
export class RingReader extends RingSide {
  #expectSeq: number;

  constructor(region: Uint8Array, direction: Direction) {
    super(region, direction);
    // Records already consumed: everything before the tail. The next expected sequence follows.
    this.#expectSeq = 0;
  }

  /**
   * The next record's payload, or null when the ring is empty. A record whose header fails its check
   * or whose sequence does not follow throws {@link ChannelCorruptError}: it is never delivered.
   * `allocate(length)` gives the memory the payload is copied into (by default a new array); the
   * consumer may hand in memory it reuses.
   */
  tryRead(allocate?: (length: number) => Uint8Array): Uint8Array | null {
    const tail = this.tail;
    const available = (this.head - tail) >>> 0;
    if (available === 0) return null;
    if (available < RECORD_HEADER_SIZE || available > this.capacity) {
      throw new ChannelCorruptError(`ring holds ${available} bytes, not a whole record`);
    }
    const header = this.copyOut(tail, RECORD_HEADER_SIZE);
    const hv = new DataView(header.buffer);
    const length = hv.getUint32(0, true);
    const seq = hv.getUint32(4, true);
    // The header is checked before its length is believed; the sequence shows it is this lap's.
    if (crc32(header.subarray(0, 8)) !== hv.getUint32(8, true)) {
      throw new ChannelCorruptError(`record header at ${tail} failed its checksum (torn or corrupt)`);
    }
    if (this.#expectSeq !== 0 && seq !== this.#expectSeq) {
      throw new ChannelCorruptError(`record ${seq} out of sequence (expected ${this.#expectSeq})`);
    }
    const size = align8(RECORD_HEADER_SIZE + length);
    if (size > available) throw new ChannelCorruptError(`record length ${length} runs past the published data`);
    const payload = this.copyOut(tail + RECORD_HEADER_SIZE, length, allocate);
    this.#expectSeq = (seq + 1) >>> 0 || 1;
    this.setField(R_TAIL, tail + size);
    return payload;
  }

  /** Marks the consumer as about to sleep. Call, then {@link tryRead} once more before waiting. */
  setWaiting(): void {
    this.setField(R_CONSUMER_WAITING, 1);
  }

  /** Clears the waiting mark (the consumer is awake). */
  clearWaiting(): void {
    this.setField(R_CONSUMER_WAITING, 0);
  }

  /** True if the producer was blocked on a full ring; clears the flag (the caller then rings back). */
  takeProducerWaiting(): boolean {
    if (this.field(R_PRODUCER_WAITING) === 0) return false;
    this.setField(R_PRODUCER_WAITING, 0);
    return true;
  }
}
