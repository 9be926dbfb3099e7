/**
 * The agent's log: one line per event on standard error, each with a level.
 * Three formats:
 *
 * - `text` (default): `<time> agent[<pid>] <level>: <text>`
 * - `journal` (under systemd, chosen when standard error is the journal
 *   stream named by `JOURNAL_STREAM`): `<priority>` prefixes journald filters on
 *   (`<3>` error, `<4>` warn, `<6>` info), no time (journald keeps its own)
 * - `json`: `{"time":…,"level":…,"pid":…,"msg":…}` for log collectors
 *
 * A message that spans lines (a stack trace) is folded onto one, and every
 * other control character is escaped (core/text.ts). Keys never
 * reach this module; callers pass key ids only. Logging never throws and
 * never loops: once standard error is gone (a closed pipe, a restarted
 * journal), every later line is dropped and counted instead of written.
 *
 * @example
 * ```ts
 * log.info("listening on 0.0.0.0:46336");
 * log.warn("connection 10.0.0.9:51234 rejected: bad-key");
 * ```
 * @module
 */
import fs from "node:fs";
import { escapeControls } from "../core/text.ts";

/** How bad an event is. */
export type Level = "error" | "warn" | "info";

/** Where log lines go, by level. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
}

/** The line layouts {@link log} can write. */
export const LOG_FORMATS = ["text", "journal", "json"] as const;
export type LogFormat = typeof LOG_FORMATS[number];

const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6 };

let format: LogFormat = journalIsStderr() ? "journal" : "text";
let broken = false;
let dropped = 0;
process.stderr.on?.("error", () => {
  broken = true; // reported through droppedLogLines(); writing about it would fail the same way
});

/** True when standard error is the journal stream systemd connected (JOURNAL_STREAM is "<dev>:<inode>"). */
function journalIsStderr(): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const st = fs.fstatSync(2);
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** Chooses the format (the `--log-format` flag); the default is `journal` under systemd, else `text`. */
export function setLogFormat(f: LogFormat): void {
  format = f;
}

/** The format in use. */
export function logFormat(): LogFormat {
  return format;
}

/** One log line, without its newline, in the format in use (or `layout`). */
export function formatLine(level: Level, message: string, layout: LogFormat = format): string {
  // Line breaks are ours to fold (a stack trace); every other control character is escaped, as messages
  // carry text outsiders chose (certificate subjects, proxy replies, host output).
  const safe = message.split("\n").map(escapeControls).join("\n");
  if (layout === "json") {
    return JSON.stringify({ time: new Date().toISOString(), level, pid: process.pid, msg: safe });
  }
  const folded = safe.replace(/\s*(\\x0d)?\n\s*/g, " | ");
  if (layout === "journal") return `<${PRIORITY[level]}>${folded}`;
  return `${new Date().toISOString()} agent[${process.pid}] ${level}: ${folded}`;
}

function write(level: Level, message: string): void {
  if (broken) {
    dropped++;
    return;
  }
  try {
    process.stderr.write(`${formatLine(level, message)}\n`, (e) => {
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

/** The agent's logger. */
export const log: Logger = {
  error: (m) => write("error", m),
  warn: (m) => write("warn", m),
  info: (m) => write("info", m),
};

/** A logger that writes nothing (the in-process LocalAgent). */
export const silent: Logger = { error() {}, warn() {}, info() {} };

/** Log lines dropped because standard error could not take them. */
export function droppedLogLines(): number {
  return dropped;
}
