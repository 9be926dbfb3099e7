/**
 * One-line log records on standard error: time, the word `agent`, the text.
 * Keys never reach this module; callers pass key ids only.
 *
 * Logging never throws and never loops: once standard error is gone (a
 * closed pipe, a restarted journal), every later line is dropped and
 * counted instead of written.
 *
 * @example
 * ```ts
 * log("listening on 0.0.0.0:46336");
 * ```
 * @module
 */

let broken = false;
let dropped = 0;
process.stderr.on?.("error", () => {
  broken = true; // reported through droppedLogLines(); writing about it would fail the same way
});

/** Writes one log line to standard error, or counts it as dropped if that is no longer possible. */
export function log(message: string): void {
  if (broken) {
    dropped++;
    return;
  }
  try {
    process.stderr.write(`${new Date().toISOString()} agent[${process.pid}] ${message}\n`, (e) => {
      if (e) {
        broken = true;
        dropped++;
      }
    });
  } catch {
    broken = true;
    dropped++;
  }
}

/** Log lines dropped because standard error could not take them. */
export function droppedLogLines(): number {
  return dropped;
}
