/**
 * The running agent's side of an upgrade: check the new program, install it (keeping the
 * previous one), hand everything over to it (agent/handover.ts), and take everything back if it
 * does not report itself prepared within `upgradeTimeoutSeconds`.
 *
 * Why a new process and not re-executing in place: the running version keeps every session until
 * the new one is prepared, so a new program that exits at start, hangs, or cannot read the state
 * costs nothing but the wait; an exec in place would have nothing left to go back to. The price is
 * that the new agent is not the hosts' parent: it sees a host end as its pipe closing, and systemd
 * is told the new main pid (`MAINPID=`) before the old process exits.
 *
 * @example
 * ```ts
 * const upgrader = new AgentUpgrader(context);
 * const outcome = await upgrader.upgrade("/tmp/agent-1.2.0", "agent upgrade"); // then this process exits
 * ```
 * @module
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { VERSION } from "../core/version.ts";
import { fileSha256 as sha256OfFile } from "../runtime/file-sha256.ts";
import { log } from "../runtime/log.ts";
import { programCommand, programFile } from "../runtime/self.ts";
import { closeFd, rawPipe, startInheriting } from "../runtime/spawn.ts";
import type { SystemdNotifier } from "../runtime/sd-notify.ts";
import { escapeControls } from "../core/text.ts";
import type { Daemon, HandedOver } from "./daemon.ts";
import { UpgradeError } from "./errors.ts";
import { HANDOVER_ENV, type ProgramHistory, readReport, writeHandoverState } from "./handover.ts";
import type { UpgradeOutcome, Upgrader } from "./upgrade-types.ts";

/** What an upgrade needs of the running agent. */
export interface UpgradeContext {
  daemon: Daemon;
  runDir: string;
  timeoutMs: number;
  /** The arguments this agent was started with (`start` and its flags): the new version gets the same. */
  startArgs: readonly string[];
  /** This agent's environment as it started, systemd's variables included. */
  environment: Record<string, string>;
  history: ProgramHistory;
  systemd: SystemdNotifier;
  /** Ends this process once the new version has taken over and whoever asked has the answer. */
  exit(): void;
}

/** How long the old agent lingers after a hand-over for its answer to reach whoever asked. */
const LINGER_MS = 200;
/** Longest `start --check` of a new program may take. */
const CHECK_TIMEOUT_MS = 30_000;

export class AgentUpgrader implements Upgrader {
  #busy = false;
  #leaving: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly context: UpgradeContext) {}

  /**
   * Hands over to the program in `file` (installed in place of this one first, the current one
   * kept as `<program>.previous`), or to the installed program when `file` is undefined. Resolves
   * once the new version is prepared; this process then exits ({@link leaveNow} makes it sooner).
   * Throws {@link UpgradeError} with the reason, everything as it was, when it does not happen.
   * `keep` is a connection to keep open for the answer.
   */
  async upgrade(file: string | undefined, requestedBy: string, keep?: object): Promise<UpgradeOutcome> {
    if (this.#busy || this.#leaving) throw new UpgradeError("an upgrade is already under way");
    this.#busy = true;
    const started = performance.now();
    try {
      const program = programFile();
      const source = file === undefined ? program : path.resolve(file);
      log.info(`upgrade to ${escapeControls(source)} requested by ${escapeControls(requestedBy)}`);
      // A private copy first: what is checked is what gets installed, whoever can write `source`.
      const candidate = source === program ? null : stageCopy(source, program);
      const checked = candidate ?? program;
      let build: string, version: string;
      try {
        // Both run while this version still serves: only the hand-over itself pauses the clients.
        [build] = await Promise.all([fileSha256(checked), checkProgram(checked, this.context)]);
      } catch (e) {
        if (candidate) fs.rmSync(candidate, { force: true });
        throw e;
      }
      const checkedAt = performance.now();
      const installed = candidate ? install(candidate, program) : null;
      const pausedAt = performance.now();
      try {
        version = await this.#handOver(program, build, keep);
      } catch (e) {
        installed?.undo();
        throw e;
      }
      const outcome = { version, build, previousBuild: this.context.history.build, tookMs: 0 };
      const done = performance.now();
      outcome.tookMs = Math.round(done - started);
      const checkedIn = checkedAt - started;
      log.info(
        `handed over to build ${build.slice(0, 12)} in ${outcome.tookMs} ms (check ${ms(checkedIn)}, ` +
          `install ${ms(pausedAt - checkedAt)}, paused until prepared ${ms(done - pausedAt)}); this process exits`,
      );
      this.#leaving = setTimeout(() => this.context.exit(), LINGER_MS);
      return outcome;
    } catch (e) {
      const error = e instanceof UpgradeError ? e : new UpgradeError((e as Error).message, { cause: e });
      log.warn(`upgrade failed, this version carries on: ${error.message}`);
      throw error;
    } finally {
      this.#busy = false;
    }
  }

  /** Exits now rather than after the linger: the answer has been written. */
  leaveNow(): void {
    if (!this.#leaving) return;
    clearTimeout(this.#leaving);
    this.context.exit();
  }

  /** Hands over to `program`; resolves with the version the new agent reports. Takes everything back on failure. */
  async #handOver(program: string, build: string, keep?: object): Promise<string> {
    const { daemon } = this.context;
    checkHeldOutput(daemon);
    const report = rawPipe(), go = rawPipe();
    const ours = new Set([...report, ...go]); // descriptors this process still holds, closed on failure
    const close = (fd: number) => ours.delete(fd) && closeFd(fd);
    let handed: HandedOver | null = null, state: string | null = null;
    let child: { pid: number; exit: Promise<unknown> } | null = null;
    try {
      handed = await daemon.handOver(keep).catch((e) => {
        throw new UpgradeError(`the sessions could not be paused: ${(e as Error).message}`, { cause: e });
      });
      state = writeHandoverState(this.context.runDir, {
        from: { pid: process.pid, version: VERSION },
        startedAt: daemon.server.startedAt,
        history: { build, previousBuild: this.context.history.build, previousVersion: VERSION, changedAt: Date.now() },
        listenFd: handed.listenFd,
        sessions: handed.sessions,
      });
      child = this.#spawn(program, handed, state, report[1], go[0]);
      close(report[1]);
      close(go[0]);
      ours.delete(report[0]); // the report reader owns it now
      const version = await this.#prepared(report[0], child);
      this.context.systemd.notify(`MAINPID=${child.pid}`);
      return version; // the go pipe's write end closes when this process exits: the new version's signal
    } catch (e) {
      if (child) await stop(child);
      if (state) fs.rmSync(state, { force: true });
      for (const fd of [...ours]) close(fd);
      if (handed) await daemon.takeBack(handed);
      throw e;
    }
  }

  #spawn(program: string, handed: HandedOver, state: string, reportFd: number, goFd: number) {
    const hostFds = handed.sessions.sessions.flatMap((s) => [s.host.fds.stdin, s.host.fds.stdout, s.host.fds.stderr]);
    const inherit = [...(handed.listenFd === null ? [] : [handed.listenFd]), ...hostFds, reportFd, goFd];
    const environment = { ...this.context.environment };
    delete environment.WATCHDOG_PID; // it named this process; the new one is systemd's main process once this exits
    environment[HANDOVER_ENV.state] = state;
    environment[HANDOVER_ENV.report] = String(reportFd);
    environment[HANDOVER_ENV.go] = String(goFd);
    const [command, ...prefix] = programCommand(program);
    try {
      return startInheriting(command, [...prefix, ...this.context.startArgs], environment, inherit);
    } catch (e) {
      throw new UpgradeError(`the new program could not be started: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Waits for the new version's report: prepared (resolves with its version), or why not, its exit, or the timeout. */
  async #prepared(reportFd: number, child: { exit: Promise<unknown> }): Promise<string> {
    const reader = readReport(reportFd);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const seconds = this.context.timeoutMs / 1000;
    try {
      const report = await Promise.race([
        reader.line,
        child.exit.then(() => null),
        new Promise<"late">((r) => (timer = setTimeout(() => r("late"), this.context.timeoutMs))),
      ]);
      if (report === "late") {
        throw new UpgradeError(`the new version did not report itself prepared within ${seconds} s`);
      }
      if (report === null) throw new UpgradeError("the new version exited before it was prepared");
      if (!report.ok) throw new UpgradeError(`the new version cannot take over: ${report.error}`);
      return report.version;
    } finally {
      clearTimeout(timer);
      reader.stop();
    }
  }
}

/** Most unacknowledged output a hand-over carries in its state file; past it, clients must catch up first. */
const MAX_HELD_OUTPUT_BYTES = 1024 * 1024 * 1024;

/** Refuses a hand-over whose state would be too large to write and read back in one piece. */
function checkHeldOutput(daemon: Daemon): void {
  let held = 0;
  for (const s of daemon.sessions.sessions.values()) for (const a of s.attachments.values()) held += a.link.keptBytes;
  if (held > MAX_HELD_OUTPUT_BYTES) {
    throw new UpgradeError(
      `clients have not acknowledged ${Math.round(held / 1048576)} MiB of output; a hand-over carries at most ` +
        `${MAX_HELD_OUTPUT_BYTES / 1048576} MiB: try again once they have caught up, or restart instead`,
    );
  }
}

const ms = (t: number) => `${Math.round(t)} ms`;

/** Kills a new version that did not take over, and waits for it to go. */
async function stop(child: { pid: number; exit: Promise<unknown> }): Promise<void> {
  try {
    process.kill(child.pid, "SIGKILL");
  } catch { /* already gone */ }
  await child.exit;
}

/** Hex SHA-256 of a file; one that cannot be read fails the upgrade, naming it. */
export function fileSha256(file: string): Promise<string> {
  return sha256OfFile(file).catch((e) => {
    throw new UpgradeError(`cannot read ${escapeControls(file)}: ${(e as Error).message}`);
  });
}

/** Runs `start --check` of the new program with this agent's arguments; throws with what it said. */
function checkProgram(file: string, context: UpgradeContext): Promise<void> {
  const [command, ...prefix] = programCommand(file);
  if (command === file) checkExecutable(file);
  const args = [...prefix, ...context.startArgs, "--check"];
  const env = { ...context.environment };
  for (const name of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete env[name];
  return new Promise((resolve, reject) => {
    // From "/": whatever the program does at its check, it does not do it in the agent's directory.
    execFile(command, args, { env, cwd: "/", timeout: CHECK_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const said = escapeControls(String(stderr).trim().split("\n").slice(-3).join(" / "));
      const how = error.killed
        ? `did not finish within ${CHECK_TIMEOUT_MS / 1000} s`
        : `failed (${error.message.split("\n")[0]})`;
      reject(new UpgradeError(`the new program's check \`start --check\` ${how}${said ? `: ${said}` : ""}`));
    });
  });
}

/**
 * Refuses a file that is neither an ELF executable nor a `#!` script: the C library runs any other
 * file it cannot execute through /bin/sh, so bytes that are no program would run as shell commands.
 */
function checkExecutable(file: string): void {
  const head = new Uint8Array(4);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, head, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  const elf = head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
  const script = head[0] === 0x23 && head[1] === 0x21;
  if (!elf && !script) {
    throw new UpgradeError("the new program is not an executable (it starts with neither an ELF header nor #!)");
  }
}

/**
 * A private copy of `source` beside `program` (created exclusively, the program's mode), named with
 * the program's extension so a runtime that goes by it (Deno) runs it the same way.
 */
function stageCopy(source: string, program: string): string {
  const copy = path.join(path.dirname(program), `.next-${process.pid}-${path.basename(program)}`);
  fs.rmSync(copy, { force: true });
  try {
    fs.copyFileSync(source, copy, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(copy, fs.statSync(program).mode & 0o755);
  } catch (e) {
    fs.rmSync(copy, { force: true });
    throw new UpgradeError(`cannot place the new program beside ${escapeControls(program)}: ${(e as Error).message}`);
  }
  return copy;
}

/**
 * Puts the checked `candidate` in place of `program` atomically, the current one kept as
 * `<program>.previous` (replacing an older one). Bundles beside it that only the old version used
 * go to `.previous` too.
 */
function install(candidate: string, program: string): { undo(): void } {
  const previous = `${program}.previous`;
  fs.rmSync(previous, { force: true });
  fs.linkSync(program, previous);
  fs.renameSync(candidate, program);
  const hostOnly = path.join(path.dirname(program), `host${path.extname(program)}`);
  const movedHost = /^agent\.[cm]js$/.test(path.basename(program)) && fs.existsSync(hostOnly);
  if (movedHost) fs.renameSync(hostOnly, `${hostOnly}.previous`);
  return {
    undo() {
      fs.renameSync(previous, program);
      if (movedHost) fs.renameSync(`${hostOnly}.previous`, hostOnly);
    },
  };
}
