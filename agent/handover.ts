/**
 * What passes between two agent versions in a hand-over (docs/operations.md "Upgrades"):
 *
 *   old agent                                      new agent (started by the old, same state directory)
 *   stops accepting, closes connections,
 *   stops reading the rings, writes the state ─▶   reads and deletes the state; checks the format
 *   file (0600, created exclusively)               and channel layout it was given
 *                                                  maps every channel, wraps every inherited pipe
 *                                             ◀─   "prepared" on the report pipe (or the reason it cannot)
 *   answers whoever asked, hands systemd the
 *   main pid, exits                           ─▶   its go pipe ends: it listens on the inherited
 *                                                  socket and reads the rings
 *
 * Until "prepared" nothing has changed for the hosts, so the old agent can take everything back;
 * the new one touches the rings only once the old one has gone.
 * @module
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { decodeFields, encodeFields } from "../core/wire/messages.ts";
import { CHANNEL_LAYOUT_VERSION } from "../core/shm/ring.ts";
import type { SessionsSnapshot } from "./session-records.ts";

/** Bumped whenever {@link HandoverState} changes shape; a new agent refuses a format it does not know. */
export const HANDOVER_FORMAT = 1;

/** The environment variables that tell a starting agent it takes over. */
export const HANDOVER_ENV = { state: "AGENT_HANDOVER_STATE", report: "AGENT_HANDOVER_REPORT", go: "AGENT_HANDOVER_GO" };

/** Which build runs, and when that last changed: what `agent status` shows. */
export interface ProgramHistory {
  /** Hex SHA-256 of the program file. */
  build: string;
  /** The build before the last hand-over, if there was one. */
  previousBuild: string | null;
  previousVersion: string | null;
  /** When the running build took over (ms since the epoch), or null since the first start. */
  changedAt: number | null;
}

/** Everything the new agent takes over besides the inherited descriptors' contents. */
export interface HandoverState {
  format: number;
  channelLayout: number;
  from: { pid: number; version: string };
  /** When the first agent of this line started: status counts uptime from it. */
  startedAt: number;
  history: ProgramHistory;
  listenFd: number | null;
  sessions: SessionsSnapshot;
}

/** Writes `state` for the next version: a new file in the run directory, mode 0600, never through a link. */
export function writeHandoverState(runDir: string, state: Omit<HandoverState, "format" | "channelLayout">): string {
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const file = path.join(runDir, `handover-${process.pid}-${Date.now()}.state`);
  const full: HandoverState = { format: HANDOVER_FORMAT, channelLayout: CHANNEL_LAYOUT_VERSION, ...state };
  fs.writeFileSync(file, encodeFields(full), { mode: 0o600, flag: "wx" });
  return file;
}

/**
 * Reads and removes the state an earlier version wrote; throws with the reason when this build
 * cannot carry it on (another format, another channel layout).
 */
export function readHandoverState(file: string): HandoverState {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } finally {
    fs.rmSync(file, { force: true });
  }
  const state = decodeFields<HandoverState>(bytes);
  if (state.format !== HANDOVER_FORMAT) {
    throw new Error(`the running agent hands over in format ${state.format}; this build reads ${HANDOVER_FORMAT}`);
  }
  if (state.channelLayout !== CHANNEL_LAYOUT_VERSION) {
    throw new Error(
      `the running sessions' channels use layout ${state.channelLayout}; this build speaks layout ` +
        `${CHANNEL_LAYOUT_VERSION}, so it cannot serve them (let them end, or restart instead)`,
    );
  }
  return state;
}

/** The new agent's report line. */
export type HandoverReport = { ok: true; pid: number; version: string } | { ok: false; error: string };

/** Writes the report line to the descriptor the old agent reads (a socket wrapper: Deno's fs takes no raw descriptors). */
export function sendReport(fd: number, report: HandoverReport): Promise<void> {
  return new Promise((resolve) => {
    const pipe = new net.Socket({ fd, readable: false, writable: true });
    pipe.on("error", () => resolve()); // the old agent has gone: nobody to tell
    pipe.end(JSON.stringify(report) + "\n", () => resolve());
  });
}

/** Resolves when the old agent lets go: the go pipe ends (it exited, or closed it). */
export function waitForGo(fd: number): Promise<void> {
  return new Promise((resolve) => {
    const pipe = new net.Socket({ fd, readable: true, writable: false });
    pipe.on("error", () => resolve());
    pipe.on("data", () => {});
    pipe.once("end", () => resolve()).once("close", () => resolve());
  });
}

/** Reads the new agent's report line from `fd`; null if the pipe ends first. */
export function readReport(fd: number): { line: Promise<HandoverReport | null>; stop(): void } {
  const pipe = new net.Socket({ fd, readable: true, writable: false });
  let text = "";
  const line = new Promise<HandoverReport | null>((resolve) => {
    pipe.setEncoding("utf8");
    pipe.on("error", () => resolve(null));
    pipe.on("data", (chunk: string) => {
      text += chunk;
      const nl = text.indexOf("\n");
      if (nl < 0) return;
      try {
        resolve(JSON.parse(text.slice(0, nl)) as HandoverReport);
      } catch {
        resolve({ ok: false, error: "the new agent sent an unreadable report" });
      }
    });
    pipe.once("end", () => resolve(null));
  });
  return { line, stop: () => pipe.destroy() };
}
