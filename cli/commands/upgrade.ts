/**
 * `agent upgrade [FILE]`: hand the running agent over to a new program without dropping anything
 * (agent/upgrade.ts), through its local control socket. Without FILE, to the installed program
 * (after a package manager replaced it). Waits for the new version to answer `status`.
 * @module
 */
import path from "node:path";
import { controlPath, requestControl } from "../../agent/control.ts";
import { NotRunningError } from "../../agent/errors.ts";
import type { AgentStatus } from "../../agent/server.ts";
import type { UpgradeOutcome } from "../../agent/upgrade-types.ts";
import { resolveConfig } from "../../agent/config.ts";
import type { Flags } from "../flags.ts";
import { ExitError } from "../errors.ts";
import { escapeLines, safeJson } from "../../core/text.ts";
import { EXIT_NOT_RUNNING } from "./status.ts";

/** Exit code when the new version did not take over (the running one carries on). */
export const EXIT_ROLLED_BACK = 4;
/** How long the command waits for the whole upgrade: the check, the hand-over, and the new version answering. */
const UPGRADE_WAIT_MS = 180_000;
const SERVING_WAIT_MS = 30_000;

export async function upgradeCommand(file: string | undefined, flags: Flags): Promise<void> {
  const config = resolveConfig(flags, process.env);
  const socket = controlPath(config.stateDir);
  const t0 = performance.now();
  let outcome: UpgradeOutcome;
  try {
    const fields = file === undefined ? {} : { file: path.resolve(file) };
    outcome = await requestControl(socket, "upgrade", UPGRADE_WAIT_MS, fields) as UpgradeOutcome;
  } catch (e) {
    if (e instanceof NotRunningError) throw new ExitError(EXIT_NOT_RUNNING, `${e.message}. Nothing was upgraded.`);
    throw new ExitError(EXIT_ROLLED_BACK, `upgrade failed; the running agent carries on: ${(e as Error).message}`);
  }
  const serving = await newVersionServing(socket, outcome.build);
  const ms = Math.round(performance.now() - t0);
  if (flags.json) {
    process.stdout.write(safeJson({ ok: true, ...outcome, pid: serving.pid, servingAfterMs: ms }) + "\n");
    return;
  }
  process.stdout.write(escapeLines(
    `upgraded: build ${outcome.previousBuild.slice(0, 12) || "(unknown)"} -> ${outcome.build.slice(0, 12)} ` +
      `(version ${serving.version}, pid ${serving.pid}); serving after ${ms} ms\n`,
  ));
}

/** Asks the control socket until the new build answers. */
async function newVersionServing(socket: string, build: string): Promise<AgentStatus> {
  const deadline = Date.now() + SERVING_WAIT_MS;
  for (;;) {
    const status = await requestControl(socket, "status", 2000).then((s) => s as AgentStatus, () => null);
    if (status?.program.build === build) return status;
    if (Date.now() > deadline) {
      throw new ExitError(1, `the new version was prepared but does not answer on ${socket} yet; see \`agent status\``);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
