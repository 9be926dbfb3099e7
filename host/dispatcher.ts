/**
 * Runs a session's requests concurrently, in order only where order matters,
 * and no more at once than a cap (docs/protocol.md §6 "Concurrency").
 *
 * Requests that share an order key (one open file handle, one process's
 * stdin) run one after another in arrival order; requests without a key run
 * as soon as they are admitted. A request holds a slot and its bytes from
 * admission to reply; when either cap is reached {@link admit} waits, so the
 * host stops reading its ring and the agent's sends wait in turn
 * (backpressure), instead of memory growing with a flood.
 *
 * @example
 * ```ts
 * const dispatcher = new Dispatcher({ maxRequests: 64, maxBytes: 16 << 20 });
 * await dispatcher.admit("file:3", body.length, () => write(body)); // resolves once admitted, not when done
 * ```
 * @module
 */

/** Caps on what one session runs at once. */
export interface DispatchLimits {
  /** Requests admitted and not yet answered. */
  maxRequests: number;
  /** Their request bodies' bytes together. */
  maxBytes: number;
}

/** The documented default: 64 requests or 16 MiB of request bodies, whichever comes first. */
export const DEFAULT_DISPATCH_LIMITS: DispatchLimits = { maxRequests: 64, maxBytes: 16 * 1024 * 1024 };

export class Dispatcher {
  #running = 0;
  #bytes = 0;
  #room: (() => void) | null = null;
  /** The tail of each order key's chain; removed once the chain is idle. */
  readonly #tails = new Map<string, Promise<void>>();

  constructor(readonly limits: DispatchLimits = DEFAULT_DISPATCH_LIMITS) {}

  /**
   * Waits for room, then starts `work` (after earlier work with the same
   * `key`, if any). Resolves once admitted; `work`'s errors are its own to handle.
   */
  async admit(key: string | null, bytes: number, work: () => Promise<void>): Promise<void> {
    // A single request larger than the byte cap is admitted alone rather than never.
    while (
      this.#running >= this.limits.maxRequests || (this.#running > 0 && this.#bytes + bytes > this.limits.maxBytes)
    ) {
      await new Promise<void>((resolve) => (this.#room = resolve));
    }
    this.#running++;
    this.#bytes += bytes;
    const finish = () => {
      this.#running--;
      this.#bytes -= bytes;
      const room = this.#room;
      this.#room = null;
      room?.();
    };
    const previous = key === null ? undefined : this.#tails.get(key);
    const run = (previous ? previous.then(work) : work()).catch(() => {}).finally(finish);
    if (key === null) return;
    this.#tails.set(key, run);
    run.then(() => {
      if (this.#tails.get(key) === run) this.#tails.delete(key);
    });
  }
}
