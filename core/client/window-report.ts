/**
 * What one session attachment's transfers keep in flight, summed over those running, told to the
 * agent so `agent status` and /metrics can show it (meta event WindowReport, docs/protocol.md §5).
 * The agent sees only what reached it; an upload's window is mostly on the wire.
 *
 * A report goes when the sum changes, at most one per {@link REPORT_EVERY_MS} (the latest value
 * follows once that has passed), and 0 at once when the last transfer ends.
 *
 * @example
 * ```ts
 * const sent: number[] = [];
 * const reports = new WindowReports((bytes) => sent.push(bytes));
 * const window = { bytes: 2 * 1024 * 1024 };
 * const untrack = reports.track(window);
 * untrack();
 * console.log(sent); // [2097152, 0]
 * ```
 * @module
 */

/** The least time between two reports while transfers run. */
export const REPORT_EVERY_MS = 100;

/** A window whose size may be read at any time: a transfer's {@link TransferWindow}. */
export interface SizedWindow {
  readonly bytes: number;
}

/** The reports of one attachment: `send` puts one on the wire. */
export class WindowReports {
  readonly #live = new Set<SizedWindow>();
  #sent = 0;
  #sentAt = -Infinity;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly send: (bytes: number) => void, readonly now: () => number = () => performance.now()) {}

  /** Counts `window` in from now; the function returned counts it out (call it when the transfer ends). */
  track(window: SizedWindow): () => void {
    this.#live.add(window);
    this.changed();
    return () => {
      if (this.#live.delete(window)) this.changed();
    };
  }

  /** A window may have changed size: reports the sum if it differs from the last one sent. */
  changed(): void {
    if (this.#live.size === 0 && this.#timer) {
      clearTimeout(this.#timer); // the last transfer ended: 0 goes now, not after the wait
      this.#timer = null;
    }
    if (this.#timer) return; // a report is due anyway, with the value as it is then
    const wait = this.#live.size === 0 ? 0 : this.#sentAt + REPORT_EVERY_MS - this.now();
    if (wait <= 0) return this.#report();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#report();
    }, wait);
    (this.#timer as { unref?: () => void }).unref?.(); // a pending report keeps no process alive
  }

  /** Sends the sum again whatever was sent before (a resumed connection: the agent forgot it). */
  resend(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#sent = this.#live.size === 0 ? 0 : -1; // the agent starts a resumed attachment at 0
    this.#report(); // now, not after the wait: it goes ahead of what the resume sends again
  }

  #report() {
    let bytes = 0;
    for (const w of this.#live) bytes += w.bytes;
    if (bytes === this.#sent) return;
    this.#sent = bytes;
    this.#sentAt = this.now();
    this.send(bytes);
  }
}
