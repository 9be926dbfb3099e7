/**
 * Who may run a handshake now. Caps concurrent handshakes; when the cap is
 * full and others wait, every handshake whose peer has kept it waiting past
 * a short grace is dropped at once, so a crowd of stalled peers cannot starve
 * quick legitimate ones (the agent's server and the outbound listener both use it). A handshake held up by this side's own work (a busy
 * CPU) is never dropped for it. Also counts authentication failures per address (an IPv6 peer per
 * /64, as it may own all of one) and turns an address away for a minute once it passes the limit; at
 * most MAX_TRACKED_ADDRESSES are remembered, the least recently failing forgotten first.
 *
 * @example
 * ```ts
 * const admission = new Admission({ maxConcurrent: 100, queueLimit: 1000, evictAfterMs: 1000, failuresPerMinute: 20 });
 * const slot = await admission.acquire(() => stream.close());
 * ```
 * @module
 */

/** Limits for {@link Admission}. */
export interface AdmissionLimits {
  maxConcurrent: number;
  /** Connections allowed to wait for a slot; more are turned away as busy. */
  queueLimit: number;
  /** A handshake running at least this long may be dropped for a waiting one. */
  evictAfterMs: number;
  failuresPerMinute: number;
}

/** A granted handshake slot. */
export interface Slot {
  release(): void;
  /** The handshake now waits for the peer (true), or no longer does (false). */
  waitingForPeer(waiting: boolean): void;
}

interface Active {
  /** Since when the peer has kept it waiting; null while the agent is the one working. */
  waitingSince: number | null;
  evict: () => void;
}

interface Waiting {
  grant: (slot: Slot | null) => void;
  evict: () => void;
}

const MINUTE = 60_000;

/** Addresses whose failures are remembered at once: about 2 MiB of heap when all are full. */
export const MAX_TRACKED_ADDRESSES = 10_000;

/**
 * What failures are counted under: an IPv4 address (also IPv4-mapped IPv6) as itself, an IPv6 address by its
 * /64, written in full so every spelling of one prefix is one key.
 */
export function failureKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!address.includes(":")) return address;
  const bare = address.replace(/%.*$/, "").toLowerCase();
  const [head, tail = ""] = bare.split("::");
  const left = head ? head.split(":") : [];
  const right = bare.includes("::") ? (tail ? tail.split(":") : []) : [];
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(":")}::/64`;
}

export class Admission {
  #active = new Set<Active>();
  #waiting: Waiting[] = [];
  #failures = new Map<string, number[]>();
  #ticker: ReturnType<typeof setInterval> | null = null;
  #tickMs = 0;
  #tickedAt = 0;

  constructor(readonly limits: AdmissionLimits) {}

  /** Handshakes in progress. */
  get active(): number {
    return this.#active.size;
  }

  /** Connections waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Addresses (IPv6 prefixes) whose recent failures are remembered. */
  get trackedAddresses(): number {
    return this.#failures.size;
  }

  /** True when `address` has failed authentication too often in the last minute. */
  isRateLimited(address: string): boolean {
    return this.#recentFailures(failureKey(address)).length >= this.limits.failuresPerMinute;
  }

  /** Counts one authentication failure from `address`. */
  recordFailure(address: string): void {
    const key = failureKey(address);
    const list = this.#recentFailures(key).slice(-this.limits.failuresPerMinute);
    list.push(Date.now());
    this.#failures.delete(key); // re-inserted last: the map's order is least recently failing first
    this.#failures.set(key, list);
    this.#forgetOldest();
  }

  /**
   * Resolves with a slot, or null when the queue is full or the waiter was
   * cancelled. `evict` is called if this handshake is later dropped for
   * running too long while others wait.
   */
  acquire(evict: () => void): { slot: Promise<Slot | null>; cancel: () => void } {
    if (this.#active.size < this.limits.maxConcurrent) {
      return { slot: Promise.resolve(this.#grant(evict)), cancel: () => {} };
    }
    if (this.#waiting.length >= this.limits.queueLimit) return { slot: Promise.resolve(null), cancel: () => {} };
    let waiter!: Waiting;
    const slot = new Promise<Slot | null>((grant) => (waiter = { grant, evict }));
    this.#waiting.push(waiter);
    this.#startTicker();
    const cancel = () => {
      const i = this.#waiting.indexOf(waiter);
      if (i >= 0) {
        this.#waiting.splice(i, 1);
        waiter.grant(null);
      }
      this.#stopTickerIfIdle();
    };
    return { slot, cancel };
  }

  /** Stops timers; pending waiters get null. */
  close(): void {
    for (const w of this.#waiting.splice(0)) w.grant(null);
    this.#stopTickerIfIdle();
  }

  #grant(evict: () => void): Slot {
    const entry: Active = { waitingSince: null, evict };
    this.#active.add(entry);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#active.delete(entry);
        this.#next();
      },
      waitingForPeer: (waiting) => {
        entry.waitingSince = waiting ? Date.now() : null;
      },
    };
  }

  #next() {
    while (this.#waiting.length > 0 && this.#active.size < this.limits.maxConcurrent) {
      const w = this.#waiting.shift()!;
      w.grant(this.#grant(w.evict));
    }
    this.#stopTickerIfIdle();
  }

  #startTicker() {
    if (this.#ticker) return;
    this.#tickMs = Math.max(50, this.limits.evictAfterMs / 4);
    this.#tickedAt = Date.now();
    this.#ticker = setInterval(() => this.#tick(), this.#tickMs);
  }

  /**
   * A tick that comes late means this side's event loop was held up (a burst of work, a long
   * collection): what the peers sent meanwhile is still unread, and timers run before reads. That
   * time is not held against them, and nobody is dropped until a tick on time has looked again.
   */
  #tick() {
    const now = Date.now();
    const heldUp = now - this.#tickedAt - this.#tickMs;
    this.#tickedAt = now;
    if (heldUp > this.#tickMs) {
      for (const a of this.#active) if (a.waitingSince !== null) a.waitingSince += heldUp;
      return;
    }
    this.#evictOverAge(now);
  }

  /** Drops every handshake whose peer has kept it waiting past the grace, while others wait or the cap is full. */
  #evictOverAge(now: number) {
    if (this.#waiting.length === 0 && this.#active.size < this.limits.maxConcurrent) return;
    for (const a of [...this.#active]) {
      if (a.waitingSince === null || now - a.waitingSince < this.limits.evictAfterMs) continue;
      this.#active.delete(a);
      a.evict();
    }
    this.#next();
  }

  #stopTickerIfIdle() {
    if (this.#waiting.length === 0 && this.#ticker) {
      clearInterval(this.#ticker);
      this.#ticker = null;
    }
  }

  #recentFailures(key: string): number[] {
    const list = this.#failures.get(key);
    if (!list) return [];
    const now = Date.now();
    const recent = list.filter((t) => now - t < MINUTE);
    if (recent.length === 0) this.#failures.delete(key);
    else if (recent.length < list.length) this.#failures.set(key, recent);
    return recent;
  }

  /** Past the bound, forgets the least recently failing: expired ones first, as they sit at the front. */
  #forgetOldest() {
    for (const key of this.#failures.keys()) {
      if (this.#failures.size <= MAX_TRACKED_ADDRESSES) return;
      this.#failures.delete(key);
    }
  }
}
