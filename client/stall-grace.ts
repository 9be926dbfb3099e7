/**
 * How long a handshake may keep its slot waiting for the peer before it is
 * dropped for one in line. Fixed, it either lets stalled peers hold slots
 * (long) or throws away agents that are merely slow (short: a fleet coming
 * back at once, its agents busy). So it follows the handshakes that complete:
 * three times their median, between a floor and most of the handshake time.
 * Stalled peers never complete, so they cannot stretch it.
 * @module
 */

const SAMPLES = 32;
/** Completions needed before the median is trusted; until then, half the handshake time. */
const MIN_SAMPLES = 8;

export class StallGrace {
  #recent: number[] = [];
  #next = 0;

  constructor(readonly floorMs: number, readonly handshakeTimeoutMs: number) {}

  /** Records one completed handshake's time from admission. */
  completed(ms: number): void {
    if (this.#recent.length < SAMPLES) this.#recent.push(ms);
    else this.#recent[this.#next] = ms;
    this.#next = (this.#next + 1) % SAMPLES;
  }

  /** The grace now, ms. */
  get ms(): number {
    const ceiling = this.handshakeTimeoutMs * 0.8;
    if (this.#recent.length < MIN_SAMPLES) return Math.max(this.floorMs, this.handshakeTimeoutMs / 2);
    const sorted = [...this.#recent].sort((a, b) => a - b);
    return Math.min(ceiling, Math.max(this.floorMs, 3 * sorted[sorted.length >> 1]));
  }
}
