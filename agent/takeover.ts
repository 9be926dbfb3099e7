/**
 * The new agent's side of a hand-over (agent/handover.ts): read what the old version left, check
 * that every channel and pipe is there, report prepared, and wait for the old version to go.
 *
 * @example
 * ```ts
 * const pending = pendingTakeover(process.env); // null on an ordinary start
 * const takeover = pending && await prepareTakeover(pending);
 * ```
 * @module
 */
import fs from "node:fs";
import { VERSION } from "../core/version.ts";
import { HostProcess } from "./host-process.ts";
import type { Takeover } from "./daemon.ts";
import { HANDOVER_ENV, type HandoverState, readHandoverState, sendReport, waitForGo } from "./handover.ts";

/** A start that takes over: the state file and the two pipes to the old version. */
export interface PendingTakeover {
  stateFile: string;
  reportFd: number;
  goFd: number;
}

/** The hand-over this start was given, if any; removes its variables from `env` so nothing passes them on. */
export function pendingTakeover(env: Record<string, string | undefined>): PendingTakeover | null {
  const stateFile = env[HANDOVER_ENV.state];
  const reportFd = Number(env[HANDOVER_ENV.report]), goFd = Number(env[HANDOVER_ENV.go]);
  for (const name of Object.values(HANDOVER_ENV)) delete env[name];
  if (!stateFile) return null;
  if (!Number.isInteger(reportFd) || !Number.isInteger(goFd)) {
    throw new Error("a hand-over was started without its report and go descriptors");
  }
  return { stateFile, reportFd, goFd };
}

/**
 * Reads the state and checks everything in it; on success reports prepared and resolves once the
 * old version has let go. On failure reports why (the old version carries on) and throws.
 */
export async function prepareTakeover(
  pending: PendingTakeover,
  onLog: (sessionId: string, line: string) => void,
): Promise<Takeover & { state: HandoverState }> {
  let state: HandoverState;
  const hosts = new Map<string, HostProcess>();
  try {
    state = readHandoverState(pending.stateFile);
    if (state.listenFd !== null) checkOpen(state.listenFd);
    // Everything that can fail is done before "prepared": after it, the old version is gone.
    for (const s of state.sessions.sessions) {
      for (const fd of [s.host.fds.stdin, s.host.fds.stdout, s.host.fds.stderr]) checkOpen(fd);
      hosts.set(s.id, HostProcess.adopt(s.host, (line) => onLog(s.id, line)));
    }
  } catch (e) {
    await sendReport(pending.reportFd, { ok: false, error: (e as Error).message });
    throw e;
  }
  await sendReport(pending.reportFd, { ok: true, pid: process.pid, version: VERSION });
  await waitForGo(pending.goFd);
  const keepChannels = new Set(state.sessions.sessions.map((s) => s.host.file));
  return { state, listenFd: state.listenFd, sessions: state.sessions, hosts, keepChannels };
}

/** Throws unless this process has descriptor `fd` open (the runtime's own fstat does not take raw numbers on Deno). */
function checkOpen(fd: number): void {
  try {
    fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    throw new Error(`descriptor ${fd}, which the hand-over names, is not open in the new agent`);
  }
}
