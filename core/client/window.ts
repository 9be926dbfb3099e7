/**
 * How many requests a whole-file transfer keeps in flight, sized to the link's measured
 * bandwidth-delay product the way TCP's window auto-tuning and BBR size theirs: each request
 * that comes back gives a round trip and a delivery rate (bytes that came back while it was out,
 * over the time it was out); the window is the fastest recent rate times the shortest round trip
 * seen, with some headroom. While that rate keeps growing the headroom is 2 (the window doubles
 * each round trip, as in slow start); once it stops growing, 1.25, so a small request in the same
 * session waits behind only a quarter of a round trip of queued bulk data.
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
/** Headroom while the rate still grows, and after. */
const STARTUP_GAIN = 2, STEADY_GAIN = 1.25;
/** Rate samples the max filter remembers (a few round trips' worth at any window). */
const RATE_SAMPLES = 48;

/** What {@link TransferWindow.sent} notes about a request as it goes out. */
export interface SentRequest {
  at: number;
  deliveredAtSend: number;
  /** When the last request before it came back: a burst after a stall is measured from before the stall. */
  deliveredTimeAtSend: number;
}

/** The window of one transfer, in requests of `chunkBytes`, never above `maxBytes`. */
export class TransferWindow {
  #requests = MIN_WINDOW_REQUESTS;
  #minRttMs = Infinity;
  #rates: number[] = [];
  #delivered = 0;
  #deliveredTime = performance.now();
  #startup = true;
  /** The best rate at the start of the current round, and where that round ends (bytes delivered). */
  #roundBest = 0;
  #roundEnd = 0;
  readonly #maxRequests: number;

  constructor(readonly chunkBytes: number, maxBytes: number) {
    this.#maxRequests = Math.max(1, Math.floor(maxBytes / chunkBytes));
    this.#requests = Math.min(this.#requests, this.#maxRequests);
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
    const at = performance.now();
    if (this.#delivered === 0) this.#deliveredTime = at; // nothing out yet: the first measures from its own start
    return { at, deliveredAtSend: this.#delivered, deliveredTimeAtSend: this.#deliveredTime };
  }

  /** Notes a request coming back with `bytes` moved, and sizes the window again. */
  done(request: SentRequest, bytes: number): void {
    const now = performance.now();
    const rtt = Math.max(0.05, now - request.at);
    this.#delivered += bytes;
    this.#deliveredTime = now;
    this.#minRttMs = Math.min(this.#minRttMs, rtt);
    // As BBR does: over the longer of the request's own flight and the time since the delivery before it.
    const interval = Math.max(rtt, now - request.deliveredTimeAtSend);
    this.#rates.push((this.#delivered - request.deliveredAtSend) / interval);
    if (this.#rates.length > RATE_SAMPLES) this.#rates.shift();
    const best = Math.max(...this.#rates);
    if (this.#startup && this.#delivered >= this.#roundEnd) this.#endRound(best);
    const gain = this.#startup ? STARTUP_GAIN : STEADY_GAIN;
    const wanted = Math.ceil((best * this.#minRttMs * gain) / this.chunkBytes);
    this.#requests = Math.min(this.#maxRequests, Math.max(MIN_WINDOW_REQUESTS, wanted));
  }

  /** Startup ends after a round in which the best rate grew by less than a quarter. */
  #endRound(best: number) {
    if (best >= this.#roundBest * 1.25) {
      this.#roundBest = best;
    } else this.#startup = false;
    this.#roundEnd = this.#delivered + this.bytes;
  }
}
