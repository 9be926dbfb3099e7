/**
 * Log lines for connections turned away before authentication, bounded: the first few in each
 * minute are logged one by one, the rest are counted by reason and summed up in one line when the
 * minute ends. A flood of bad connections cannot crowd the journal out; `agent status` still counts
 * every rejection (the server keeps those counts).
 *
 * @example
 * ```ts
 * const rejections = new RejectionLog(20, 60_000, (line) => log.warn(line));
 * rejections.note("bad-key", "connection 10.0.0.9:51234 rejected: bad-key");
 * ```
 * @module
 */

export class RejectionLog {
  #logged = 0;
  #unlogged = new Map<string, number>();
  #windowEnds: ReturnType<typeof setTimeout> | null = null;

  /** `linesPerWindow` lines are written one by one in each `windowMs`; `write` takes each line. */
  constructor(
    readonly linesPerWindow: number,
    readonly windowMs: number,
    readonly write: (line: string) => void,
  ) {}

  /** One rejection for `reason`: its `line` is written, or counted for the window's summary. */
  note(reason: string, line: string): void {
    this.#windowEnds ??= this.#startWindow();
    if (this.#logged < this.linesPerWindow) {
      this.#logged++;
      this.write(line);
      return;
    }
    this.#unlogged.set(reason, (this.#unlogged.get(reason) ?? 0) + 1);
  }

  /** Writes the pending summary, if any, and stops the timer. */
  close(): void {
    if (this.#windowEnds) clearTimeout(this.#windowEnds);
    this.#endWindow();
  }

  #startWindow(): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => this.#endWindow(), this.windowMs);
    (timer as { unref?: () => void }).unref?.();
    return timer;
  }

  #endWindow(): void {
    this.#windowEnds = null;
    this.#logged = 0;
    if (this.#unlogged.size === 0) return;
    const counts = [...this.#unlogged].sort((a, b) => b[1] - a[1]);
    const total = counts.reduce((sum, [, n]) => sum + n, 0);
    this.#unlogged.clear();
    this.write(
      `${total} more connection${total === 1 ? "" : "s"} rejected in the last ${
        this.windowMs / 1000
      } s, not logged one by one ` +
        `(${counts.map(([reason, n]) => `${reason} ${n}`).join(", ")}; \`agent status\` counts every one)`,
    );
  }
}
