/**
 * One-line log records on standard error: time, the word `agent`, the text.
 * Keys never reach this module; callers pass key ids only.
 *
 * @example
 * ```ts
 * log("listening on 0.0.0.0:46336");
 * ```
 * @module
 */

/** Writes one log line to standard error. */
export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} agent[${process.pid}] ${message}\n`);
}
