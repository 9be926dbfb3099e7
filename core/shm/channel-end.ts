/**
 * One end of a shared-memory channel: sends and receives whole records
 * through the two rings, sleeping on a doorbell instead of polling.
 *
 * The doorbell is a byte stream to the other process (a pipe); it carries
 * wake-ups only, never data. Producers ring only when the consumer said it
 * sleeps (event suppression), so a busy stream rings rarely. The flags are
 * atomic, so no wake-up is missed; a slow backstop timer (doubling from 10 ms
 * to 1 s while idle) stays as a safety net: docs/protocol.md §7.
 *
 * A consumer that expects a record shortly (the reply to a small request it
 * just sent, {@link ChannelEnd.expectRecord}) looks at its ring once per
 * event-loop turn until it comes, instead of sleeping: then the peer does not
 * ring, and neither pays for a wake-up ("Waiting for a reply", §7).
 *
 * @example
 * ```ts
 * const end = new ChannelEnd(region, Direction.AgentToHost, Direction.HostToAgent, doorbell);
 * await end.send(record);
 * const reply = await end.receive();
 * ```
 * @module
 */
import { ChannelCorruptError } from "../errors.ts";
import { type Direction, RingReader, RingWriter } from "./ring.ts";

/** Wake-ups to and from the peer process. */
export interface Doorbell {
  /** Wakes the peer. */
  ring(): void;
  /** Called with every wake-up from the peer, and once with `closed` when the peer is gone. */
  onRing(listener: (closed: boolean) => void): void;
}

const BACKSTOP_MIN_MS = 10;
const BACKSTOP_MAX_MS = 1000;

/** How this end waits apart from its doorbell. */
export interface ChannelEndOptions {
  /**
   * Resolves at this process's next event-loop turn, after pending I/O has had its go (Node's and
   * Deno's `setImmediate`). Without it {@link ChannelEnd.expectRecord} does nothing.
   */
  nextTurn?: () => Promise<void>;
}

export class ChannelEnd {
  readonly writer: RingWriter;
  readonly reader: RingReader;
  /** Who sleeps, each resolved with whether the backstop timer (not a doorbell) woke it. */
  #waiters: Array<(timedOut: boolean) => void> = [];
  /**
   * One backstop timer for every sleeper, and when it fires. A doorbell leaves it running: it then
   * fires with nobody or a later sleeper to wake (who looks again and sleeps on), so a busy end arms
   * one timer per backstop period rather than a timer per sleep.
   */
  #backstopTimer: ReturnType<typeof setTimeout> | undefined;
  #backstopAt = Infinity;
  #closed = false;
  /** Set before the region is unmapped: from then on nothing here may touch it. */
  #detached = false;
  #backstop = BACKSTOP_MIN_MS;
  readonly #nextTurn: (() => Promise<void>) | undefined;
  /** Until when (performance.now()) receive polls rather than sleeps; 0 when it does not. */
  #pollUntil = 0;

  constructor(
    region: Uint8Array,
    send: Direction,
    receive: Direction,
    readonly doorbell: Doorbell,
    options: ChannelEndOptions = {},
  ) {
    this.#nextTurn = options.nextTurn;
    this.writer = new RingWriter(region, send);
    this.reader = new RingReader(region, receive);
    doorbell.onRing((closed) => {
      if (closed) this.#closed = true;
      this.#wakeAll();
    });
  }

  /** True once the peer's doorbell closed (the peer process ended). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Largest record this end can send. */
  get maxRecord(): number {
    return this.writer.maxPayload;
  }

  /** Appends a record, waiting while the ring is full (backpressure). */
  async send(record: Uint8Array | readonly Uint8Array[]): Promise<void> {
    for (;;) {
      if (this.#detached) throw new ChannelCorruptError("the channel was closed");
      if (this.writer.tryWrite(record)) break;
      if (this.#closed) throw new ChannelCorruptError("the peer closed the channel");
      await this.#sleep();
    }
    if (this.writer.takeConsumerWaiting()) this.doorbell.ring();
  }

  /**
   * The next record; null once the peer is gone and the ring is drained. `allocate`, if given,
   * provides the memory each record is copied into (see {@link RingReader.tryRead}).
   */
  async receive(allocate?: (length: number) => Uint8Array): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#detached) return null;
      const record = this.#tryRead(allocate);
      if (record) return record;
      if (this.#closed) return this.#tryRead(allocate); // whatever the peer wrote before it went
      if (this.#pollUntil !== 0) {
        if (performance.now() < this.#pollUntil) {
          await this.#nextTurn!(); // the consumer-waiting flag stays clear: the peer need not ring
          continue;
        }
        this.#pollUntil = 0;
      }
      this.reader.setWaiting();
      const again = this.#tryRead(allocate); // re-check after announcing sleep
      if (again) {
        this.reader.clearWaiting();
        return again;
      }
      await this.#sleep();
      if (this.#detached) return null;
      this.reader.clearWaiting();
    }
  }

  /**
   * Says a record should arrive within about `ms` (a reply to a small request just sent): until one
   * arrives or that time passes, {@link receive} looks at the ring at every event-loop turn instead
   * of sleeping, so the peer does not ring. Polling yields to I/O at each turn and ends with the
   * first record, so it costs at most `ms` of this process's time per call and nothing while idle.
   */
  expectRecord(ms: number): void {
    if (!this.#nextTurn || this.#detached) return;
    this.#pollUntil = Math.max(this.#pollUntil, performance.now() + ms);
    // Awake from now: the peer need not ring, and a receive asleep on the doorbell polls instead.
    this.reader.clearWaiting();
    this.#wakeAll();
  }

  /** Resolves at the peer's next doorbell, or after `maxMs` (a backstop, like every sleep here). */
  async rung(maxMs: number): Promise<void> {
    await this.#wait(maxMs);
  }

  /** Wakes any waiter so it notices `closed`. */
  close(): void {
    this.#closed = true;
    this.#wakeAll();
    clearTimeout(this.#backstopTimer); // nothing left for it to wake; it must not keep the process up
    this.#backstopTimer = undefined;
    this.#backstopAt = Infinity;
  }

  /**
   * Call before unmapping the region: pending and later calls return or throw
   * without reading or writing it (touching an unmapped region would crash
   * the process).
   */
  detach(): void {
    this.#detached = true;
    this.close();
  }

  #tryRead(allocate?: (length: number) => Uint8Array): Uint8Array | null {
    // A record that fails its checks throws: with atomic publication it is damage, not a record in flight.
    const record = this.reader.tryRead(allocate);
    if (record) {
      this.#pollUntil = 0;
      this.#backstop = BACKSTOP_MIN_MS;
      if (this.reader.takeProducerWaiting()) this.doorbell.ring();
    }
    return record;
  }

  async #sleep(): Promise<void> {
    if (await this.#wait(this.#backstop)) this.#backstop = Math.min(BACKSTOP_MAX_MS, this.#backstop * 2);
  }

  /** Waits for a doorbell or about `ms` (no longer); true when the time ran out. */
  #wait(ms: number): Promise<boolean> {
    const at = performance.now() + ms;
    if (at < this.#backstopAt) {
      clearTimeout(this.#backstopTimer);
      this.#backstopAt = at;
      this.#backstopTimer = setTimeout(this.#backstopFired, ms);
    }
    return new Promise<boolean>((resolve) => this.#waiters.push(resolve));
  }

  readonly #backstopFired = () => {
    this.#backstopTimer = undefined;
    this.#backstopAt = Infinity;
    for (const w of this.#waiters.splice(0)) w(true);
  };

  #wakeAll() {
    for (const w of this.#waiters.splice(0)) w(false);
  }
}
