/**
 * How many requests a whole-file transfer keeps in flight, sized to the link's measured
 * bandwidth-delay product the way TCP's window auto-tuning and BBR size theirs, and kept from
 * queueing more than a short delay ({@link queueBudgetMs}) beyond the link's own round trip, the
 * way LEDBAT and HyStart judge a queue: in time, not in requests.
 *
 * A round is a window's worth of replies. Each reply gives a round trip and a delivery rate (bytes
 * that came back while it was out, over the time it was out). What a round shows queued is its
 * shortest round trip less the shortest seen: the shortest, because one late reply is a busy
 * scheduler, not a queue, and a queue every request waits in shows in all of them.
 *
 * Startup: the window is 2/ln 2 times the best recent rate times the shortest round trip, so it
 * doubles each round trip, as slow start does. It ends when eight replies in a row, or a round, queued past
 * the budget (the window then cut to what it moved, with half the budget queued), or after two rounds
 * in which the best rate grew by less than a quarter. Steady, once per round, the window moves half
 * way to what the round's rate needs with half the budget queued: it grows while nothing queues and
 * shrinks when the round trip grows. A small request in the same session so waits about the budget
 * more than alone.
 *
 * A transfer may start from what an earlier one on the same session learned ({@link LinkMemory}):
 * the window it ended with, so a second transfer does not ramp from 2 MiB again.
 *
 * @example
 * ```ts
 * const window = new TransferWindow(512 * 1024, 15 * 1024 * 1024);
 * const sent = window.sent();
 * // … the request comes back …
 * window.done(sent, 512 * 1024);
 * console.log(window.requests >= 4); // true
 * ```
 * @module
 */

/** The fewest requests a transfer keeps in flight: what a short link needs, as before auto-tuning. */
export const MIN_WINDOW_REQUESTS = 4;
/**
 * Headroom while the rate still grows: BBR's startup gain, 2/ln 2, the least that still doubles the
 * window every round trip while each rate sample lags a round trip behind (with 2 it grew about
 * 1.5x a round trip on a 50 ms link, measured).
 */
const STARTUP_GAIN = 2 / Math.LN2;
/** Startup rounds in a row without a quarter more rate before it ends (BBR waits three). */
const PLATEAU_ROUNDS = 2;
/** Startup replies in a row that queued past the budget before startup ends (as HyStart's samples). */
const HYSTART_REPLIES = 8;
/** Rate samples the max filter remembers (a few round trips' worth at any window). */
const RATE_SAMPLES = 48;

/**
 * The queueing delay a transfer may add to its link: a quarter of the round trip, between 2 and
 * 15 ms, so a small request behind a transfer waits about that much more (docs/protocol.md §6).
 */
export function queueBudgetMs(minRttMs: number): number {
  return Math.min(15, Math.max(2, minRttMs / 4));
}

const NO_RUN = { replies: 0, minRtt: Infinity };

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
  /** Called when the window changes size (core/client/window-report.ts reports it to the agent). */
  onResize?: () => void;
}

/** The window of one transfer, in requests of `chunkBytes`, never above `maxBytes`. */
export class TransferWindow {
  #requests = MIN_WINDOW_REQUESTS;
  #minRttMs = Infinity;
  #rates: number[] = [];
  #delivered = 0;
  #deliveredTime: number;
  #startup = true;
  /** The best rate when the last startup round grew it by a quarter, and rounds since. */
  #plateauBest = 0;
  #plateauRounds = 0;
  /** Where the current round ends (bytes delivered), and the shortest round trip in it. */
  #roundEnd = 0;
  #roundMinRtt = Infinity;
  /** Startup replies in a row that queued past the budget, and the shortest round trip among them. */
  #queuedRun = NO_RUN;
  readonly #maxRequests: number;
  readonly #memory: LinkMemory;
  readonly #now: () => number;
  readonly #onResize?: () => void;

  constructor(readonly chunkBytes: number, maxBytes: number, options: WindowOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#onResize = options.onResize;
    this.#memory = options.memory ?? {};
    this.#deliveredTime = this.#now();
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
    if (this.#delivered === 0) this.#deliveredTime = at; // the first measures from its own start
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
    if (!this.#startup) {
      if (this.#delivered >= this.#roundEnd) this.#endRound(() => this.#endSteadyRound());
      return;
    }
    const best = this.#bestRate(request, rtt, now);
    if (this.#startupReply(rtt, best) || this.#delivered < this.#roundEnd) return;
    this.#endRound(() => this.#endStartupRound(best));
  }

  /** Notes the reply's delivery rate; the best of the recent ones. Only startup sizes by rate. */
  #bestRate(request: SentRequest, rtt: number, now: number): number {
    // As BBR does: over the longer of the request's own flight and the time since the delivery before it.
    const interval = Math.max(rtt, now - request.deliveredTimeAtSend);
    this.#rates.push((this.#delivered - request.deliveredAtSend) / interval);
    if (this.#rates.length > RATE_SAMPLES) this.#rates.shift();
    return Math.max(...this.#rates);
  }

  /** Grows the window with the rate; true when replies queued past the budget, several in a row (as HyStart). */
  #startupReply(rtt: number, best: number): boolean {
    // At most one more per reply, as slow start grows: a burst would queue behind itself and look like a full link.
    const wanted = this.#forRate(best * STARTUP_GAIN, this.#minRttMs);
    this.#set(Math.max(this.#requests, Math.min(wanted, this.#requests + 1)));
    const queued = rtt - this.#minRttMs > queueBudgetMs(this.#minRttMs);
    this.#queuedRun = queued
      ? { replies: this.#queuedRun.replies + 1, minRtt: Math.min(this.#queuedRun.minRtt, rtt) }
      : NO_RUN;
    if (this.#queuedRun.replies < HYSTART_REPLIES) return false;
    this.#endRound(() => this.#drainTo(this.#queuedRun.minRtt));
    return true;
  }

  #endRound(size: () => void) {
    size();
    // Only what a finished startup found: a transfer that ended mid-ramp knows too little to skip one.
    if (!this.#startup) this.#memory.requests = this.#requests;
    this.#roundMinRtt = Infinity;
    this.#roundEnd = this.#delivered + this.bytes;
  }

  /** Requests that keep `rate` (bytes per ms) going over `ms`. */
  #forRate(rate: number, ms: number): number {
    return Math.ceil((rate * ms) / this.chunkBytes);
  }

  #set(requests: number) {
    const before = this.#requests;
    this.#requests = Math.min(this.#maxRequests, Math.max(MIN_WINDOW_REQUESTS, requests));
    if (this.#requests !== before) this.#onResize?.();
  }

  /** The round trip with half the budget queued: where a steady window settles, jitter kept within the budget. */
  #targetRttMs(): number {
    return this.#minRttMs + queueBudgetMs(this.#minRttMs) / 2;
  }

  /** How long the round's requests queued beyond the link's own round trip. */
  #queuedMs(): number {
    return this.#roundMinRtt - this.#minRttMs;
  }

  /** Startup ends after a round that queued past the budget, or after rounds of no growth. */
  #endStartupRound(best: number) {
    if (this.#queuedMs() > queueBudgetMs(this.#minRttMs)) return this.#drainTo(this.#roundMinRtt);
    if (best >= this.#plateauBest * 1.25) {
      this.#plateauBest = best;
      this.#plateauRounds = 0;
    } else if (++this.#plateauRounds >= PLATEAU_ROUNDS) {
      // The rate stopped growing: what it needs at the target round trip.
      this.#startup = false;
      this.#set(this.#forRate(best, this.#targetRttMs()));
    }
  }

  /** Leaves startup with what the window moved over `rttMs`, at the target round trip: drains its queue. */
  #drainTo(rttMs: number) {
    this.#startup = false;
    this.#set(Math.round((this.#requests * this.#targetRttMs()) / rttMs));
  }

  /**
   * Moves the window half way to what its round's rate needs at the target round trip: a round
   * that queued more than half the budget shrinks it, one that queued less grows it, so the queue
   * settles there, as LEDBAT's does at its target delay.
   */
  #endSteadyRound() {
    const target = this.#targetRttMs();
    // Half way there each round: a change shows in the queue only a round later.
    const change = (this.#requests * (target / this.#roundMinRtt - 1)) / 2;
    this.#set(this.#requests + (change > 0 ? Math.ceil(change) : Math.floor(change)));
  }
}
