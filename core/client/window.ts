/**
 * How many requests a whole-file transfer keeps in flight, sized to the link's measured
 * bandwidth-delay product the way TCP's window auto-tuning and BBR size theirs, and kept from
 * queueing more than {@link QUEUE_REQUESTS} beyond it, the way TCP Vegas keeps its queue.
 *
 * Startup: each request that comes back gives a round trip and a delivery rate (bytes that came
 * back while it was out, over the time it was out); the window is three times the fastest recent rate
 * times the shortest round trip seen, so it triples each round trip (slow start doubles). Startup ends
 * after a round in which the best rate grew by less than a quarter, or whose shortest round trip
 * shows a queue of more than {@link QUEUE_REQUESTS}. After it, once per round (a window's worth of
 * replies): the window is the round's delivery rate times the shortest round trip, plus
 * {@link QUEUE_REQUESTS}. When the window limits the transfer it so grows by that many each round;
 * when requests queue (the round trip grew), it shrinks by what queued. A small request in the same
 * session so waits behind about two requests of bulk data, not a quarter of a round trip.
 *
 * A transfer may start from what an earlier one on the same session learned ({@link LinkMemory}):
 * the window it ended with, so a second transfer does not ramp from 2 MiB again.
 *
 * @example
 * ```ts
 * const window = new TransferWindow(512 * 1024, 12 * 1024 * 1024);
 * const sent = window.sent();
 * // … the request comes back …
 * window.done(sent, 512 * 1024);
 * console.log(window.requests >= 4); // true
 * ```
 * @module
 */

/** The fewest requests a transfer keeps in flight: what a short link needs, as before auto-tuning. */
export const MIN_WINDOW_REQUESTS = 4;
/** Requests a steady window keeps beyond the measured bandwidth-delay product (a short queue). */
export const QUEUE_REQUESTS = 2;
/** Headroom while the rate still grows. */
const STARTUP_GAIN = 3;
/** How much a steady window grows after two rounds in which nothing queued. */
const STEADY_PROBE = 1.25;
/** Rate samples the startup max filter remembers (a few round trips' worth at any window). */
const RATE_SAMPLES = 48;

/** What {@link TransferWindow.sent} notes about a request as it goes out. */
export interface SentRequest {
  at: number;
  deliveredAtSend: number;
  /** When the last request before it came back: a burst after a stall is measured from before the stall. */
  deliveredTimeAtSend: number;
}

/** What transfers on one session learned about its link, one direction: the window the last one held. */
export interface LinkMemory {
  requests?: number;
}

/** For {@link TransferWindow}: an earlier transfer's {@link LinkMemory} (read and updated), and the clock. */
export interface WindowOptions {
  memory?: LinkMemory;
  now?: () => number;
}

/** The window of one transfer, in requests of `chunkBytes`, never above `maxBytes`. */
export class TransferWindow {
  #requests = MIN_WINDOW_REQUESTS;
  #minRttMs = Infinity;
  #rates: number[] = [];
  #delivered = 0;
  #deliveredTime: number;
  #startup = true;
  /** The best rate at the start of the current round, and where that round ends (bytes delivered). */
  #roundBest = 0;
  #roundEnd = 0;
  /** Delivered bytes and time when the round began, and the shortest round trip in it. */
  #roundStart = 0;
  #roundStartTime: number;
  #roundMinRtt = Infinity;
  #lastRoundRate = 0;
  /** Steady rounds in a row in which nothing queued. */
  #idleRounds = 0;
  readonly #maxRequests: number;
  readonly #memory: LinkMemory;
  readonly #now: () => number;

  constructor(readonly chunkBytes: number, maxBytes: number, options: WindowOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#memory = options.memory ?? {};
    this.#deliveredTime = this.#roundStartTime = this.#now();
    this.#maxRequests = Math.max(1, Math.floor(maxBytes / chunkBytes));
    const learned = this.#memory.requests;
    if (learned !== undefined && learned > MIN_WINDOW_REQUESTS) {
      this.#requests = learned;
      this.#startup = false; // the link is known: steady from the first round
    }
    this.#requests = Math.min(this.#requests, this.#maxRequests);
    this.#roundEnd = this.bytes;
  }

  /** Requests to keep in flight now. */
  get requests(): number {
    return this.#requests;
  }

  /** Bytes the window allows in flight now. */
  get bytes(): number {
    return this.#requests * this.chunkBytes;
  }

  /** Notes a request going out. */
  sent(): SentRequest {
    const at = this.#now();
    if (this.#delivered === 0) this.#deliveredTime = this.#roundStartTime = at; // the first measures from its own start
    return { at, deliveredAtSend: this.#delivered, deliveredTimeAtSend: this.#deliveredTime };
  }

  /** Notes a request coming back with `bytes` moved, and sizes the window again. */
  done(request: SentRequest, bytes: number): void {
    const now = this.#now();
    const rtt = Math.max(0.05, now - request.at);
    this.#delivered += bytes;
    this.#deliveredTime = now;
    this.#minRttMs = Math.min(this.#minRttMs, rtt);
    this.#roundMinRtt = Math.min(this.#roundMinRtt, rtt);
    // As BBR does: over the longer of the request's own flight and the time since the delivery before it.
    const interval = Math.max(rtt, now - request.deliveredTimeAtSend);
    this.#rates.push((this.#delivered - request.deliveredAtSend) / interval);
    if (this.#rates.length > RATE_SAMPLES) this.#rates.shift();
    if (this.#startup) {
      const best = Math.max(...this.#rates);
      if (best * (rtt - this.#minRttMs) > (QUEUE_REQUESTS + 2) * this.chunkBytes) {
        // Requests queue already (bytes ahead of this one, at the best rate): size to the link, steady.
        this.#startup = false;
        this.#set(Math.ceil((best * this.#minRttMs) / this.chunkBytes) + QUEUE_REQUESTS);
        this.#memory.requests = this.#requests;
        this.#newRound(now);
        return;
      }
      this.#set(Math.ceil((best * this.#minRttMs * STARTUP_GAIN) / this.chunkBytes));
      if (this.#delivered >= this.#roundEnd) this.#endStartupRound(best, now);
    } else if (this.#delivered >= this.#roundEnd) this.#endSteadyRound(now);
  }

  #set(requests: number) {
    this.#requests = Math.min(this.#maxRequests, Math.max(MIN_WINDOW_REQUESTS, requests));
  }

  /** Requests the round's shortest round trip shows queued beyond the link's own. */
  #queued(): number {
    return this.#requests * (1 - this.#minRttMs / this.#roundMinRtt);
  }

  /** Startup ends after a round in which the best rate grew by less than a quarter, or that queued. */
  #endStartupRound(best: number, now: number) {
    if (best >= this.#roundBest * 1.25 && this.#queued() <= QUEUE_REQUESTS) {
      this.#roundBest = best;
      this.#newRound(now);
    } else {
      this.#startup = false;
      this.#endSteadyRound(now);
    }
  }

  /** The round's delivery rate times the shortest round trip, plus a short queue. */
  #endSteadyRound(now: number) {
    // A window's worth takes a round trip at least: replies that came in a clump after a stall
    // measure the clump, not the link. The better of two rounds: one stall does not halve the window.
    const rate = (this.#delivered - this.#roundStart) / Math.max(this.#minRttMs, now - this.#roundStartTime);
    const best = Math.max(rate, this.#lastRoundRate);
    this.#lastRoundRate = rate;
    const sized = Math.ceil((best * this.#minRttMs) / this.chunkBytes) + QUEUE_REQUESTS;
    // Nothing queued for two rounds (one may just have drained a queue): the window limited the
    // transfer, so probe for more by a quarter.
    this.#idleRounds = this.#queued() < 1 ? this.#idleRounds + 1 : 0;
    this.#set(this.#idleRounds >= 2 ? Math.max(sized, Math.ceil(this.#requests * STEADY_PROBE)) : sized);
    this.#memory.requests = this.#requests;
    this.#newRound(now);
  }

  #newRound(now: number) {
    this.#roundStart = this.#delivered;
    this.#roundStartTime = now;
    this.#roundMinRtt = Infinity;
    this.#roundEnd = this.#delivered + this.bytes;
  }
}
