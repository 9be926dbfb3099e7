/**
 * Heartbeats for long-lived connections: send one every `intervalMs`, and
 * give up on the peer when nothing has arrived for `deadMs`, so a half-open
 * connection is noticed. Used by both ends of an outbound connection.
 *
 * @example
 * ```ts
 * const stop = startKeepalive({ intervalMs: 15_000, deadMs: 45_000, lastReceivedAt: () => seen, beat, dead });
 * ```
 * @module
 */

export interface KeepaliveOptions {
  intervalMs: number;
  deadMs: number;
  /** When the peer was last heard from (ms since the epoch). */
  lastReceivedAt(): number;
  /** Sends one heartbeat. */
  beat(): void;
  /** Called once when the peer has been silent for `deadMs`; the heartbeats stop. */
  dead(): void;
}

/** Starts heartbeats; returns a function that stops them. */
export function startKeepalive(options: KeepaliveOptions): () => void {
  const timer = setInterval(() => {
    if (Date.now() - options.lastReceivedAt() > options.deadMs) {
      clearInterval(timer);
      options.dead();
    } else options.beat();
  }, options.intervalMs);
  return () => clearInterval(timer);
}
