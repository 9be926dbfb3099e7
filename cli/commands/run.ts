/**
 * `agent run HOST[:PORT] -- program args…`: a program on a server, through
 * its agent, the way `ssh host cmd` is used. Output streams as it comes,
 * piped standard input goes to the program, Ctrl-C reaches it, and the exit
 * code is the program's. Built on the client library only.
 * @module
 */
import os from "node:os";
import { type Flags, str } from "../flags.ts";
import type { ExitStatus, RemoteProcess } from "../../core/client/processes.ts";
import { CommandFailure, type Failure } from "../errors.ts";
import { errorCode, fail, openRemote, parseAddress } from "./remote.ts";

/**
 * Exit codes: the program's own (0–255), 128 + n when signal n ended it, and
 * for the agent's part codes a program rarely uses, as ssh uses 255.
 */
export const RUN_EXIT: Record<Failure, number> = {
  "remote-not-found": 127, // as a shell says "command not found"
  "permission-denied": 126, // as a shell says "not executable"
  "unresolved": 243,
  "refused": 244,
  "timeout": 245,
  "not-an-agent": 246,
  "wrong-key": 247,
  "incompatible": 248,
  "unknown-product": 249,
  "connection-lost": 250,
  "usage": 254,
  "failed": 255,
  "remote-is-directory": 126,
  "remote-not-directory": 127,
  "invalid-argument": 254,
  "local-not-found": 255,
  "local-is-directory": 255,
  "local-disk-full": 251, // the program's output could not be written here
  "checksum-mismatch": 255,
  "unsafe-listing": 255,
  "skipped": 255,
};

/** Waits until `stream` has room again, when a write says it is full. */
function writeOut(stream: NodeJS.WriteStream, chunk: Uint8Array): Promise<void> | void {
  if (stream.write(chunk)) return;
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("error", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done).on("error", done).on("close", done);
  });
}

/** What to run where, read from the command line. */
interface RunRequest {
  address: { host: string; port: number };
  program: string;
  args: string[];
  cwd: string | undefined;
  env: Record<string, string>;
  json: boolean;
  /** -t: on a pseudo-terminal on the server, this terminal in raw mode. */
  tty: boolean;
}

function parseRequest(target: string | undefined, flags: Flags): RunRequest {
  const command = ((flags["--"] as string[] | undefined) ?? []).map(String);
  if (!target || command.length === 0) {
    throw new CommandFailure(
      "usage",
      "run needs a server and a program: agent run HOST[:PORT] [options] -- program [args...]",
      RUN_EXIT,
    );
  }
  const address = parseAddress(target, RUN_EXIT.usage);
  const env: Record<string, string> = {};
  for (const pair of ([] as unknown[]).concat(flags.env ?? []).map(String)) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new CommandFailure("usage", `--env takes NAME=VALUE, not "${pair}"`, RUN_EXIT);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const [program, args] = flags.shell ? ["/bin/sh", ["-c", command.join(" ")]] : [command[0], command.slice(1)];
  const tty = Boolean(flags.tty);
  if (tty && process.env.TERM && env.TERM === undefined) env.TERM = process.env.TERM;
  return { address, program, args, cwd: str(flags.cwd), env, json: Boolean(flags.json), tty };
}

/**
 * Ctrl-C: the first one reaches the program as SIGINT (so it can clean up); a second ends it and
 * its children; a third stops waiting (the returned promise resolves), should the agent not answer.
 */
function forwardSignals(proc: RemoteProcess, cleanups: Array<() => void>): Promise<void> {
  let interrupts = 0;
  return new Promise((giveUp) => {
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      const handler = () => {
        if (signal !== "SIGINT") return void proc.signal(signal).catch(() => {});
        interrupts++;
        if (interrupts === 1) return void proc.signal("SIGINT").catch(() => {});
        if (interrupts === 2) process.stderr.write("agent: interrupted again; ending the remote program\n");
        if (interrupts >= 3) giveUp();
        void proc.signal("SIGKILL").catch(() => {});
      };
      process.on(signal, handler);
      cleanups.push(() => process.off(signal, handler));
    }
  });
}

/** Our stdout and stderr: the first error writing them (a full disk, a reader gone) ends the program. */
class LocalOutput {
  error: NodeJS.ErrnoException | null = null;
  readonly collected = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };

  constructor(readonly proc: RemoteProcess, readonly json: boolean, cleanups: Array<() => void>) {
    for (const name of ["stdout", "stderr"] as const) {
      process[name].on("error", this.failed);
      cleanups.push(() => process[name].off("error", this.failed));
    }
  }

  /** The program's output has nowhere to go: end it. */
  readonly failed = (e: NodeJS.ErrnoException) => {
    if (this.error) return;
    this.error = e;
    void this.proc.signal("SIGTERM").catch(() => {});
  };

  /** Copies the program's stdout and stderr to ours (or collects them, with --json) until they end. */
  pump(): Promise<unknown> {
    return Promise.all([this.#pump("stdout"), this.#pump("stderr")]);
  }

  async #pump(name: "stdout" | "stderr") {
    for await (const chunk of this.proc[name]) {
      if (this.json) this.collected[name].push(chunk);
      else if (!this.error) {
        try {
          await writeOut(process[name], chunk);
        } catch (e) {
          this.failed(e as NodeJS.ErrnoException); // Deno throws here where Node emits "error"
        }
      }
    }
  }
}

/**
 * Sends our standard input to the program when it is piped or a file; a terminal is left alone
 * and the program's input closed. Returns whether it is sent.
 */
async function feedStdin(proc: RemoteProcess, flags: Flags): Promise<boolean> {
  if (flags.noStdin || flags.stdin === false || (process.stdin.isTTY && !flags.tty)) {
    await proc.closeStdin().catch(() => {});
    return false;
  }
  void (async () => {
    try {
      for await (const chunk of process.stdin as AsyncIterable<Uint8Array>) await proc.write(chunk);
      await proc.closeStdin();
    } catch {
      // The program closed its input or ended: the rest of ours has nowhere to go.
    } finally {
      process.stdin.destroy();
    }
  })();
  return true;
}

/** The exit code: the program's, 128 + N for signal N, or a failure when its output could not be written here. */
function finish(request: RunRequest, status: ExitStatus, output: LocalOutput): number {
  const failedCode = errorCode(output.error);
  if (failedCode === "EPIPE") return 128 + 13; // the reader went away: end quietly, as a shell pipeline would (SIGPIPE)
  if (output.error) {
    const full = failedCode === "ENOSPC" || failedCode === "EDQUOT";
    throw new CommandFailure(
      full ? "local-disk-full" : "failed",
      `cannot write ${request.program}'s output here${
        full ? ": no space left on the local disk" : `: ${output.error.message}`
      }; the program was ended`,
      RUN_EXIT,
    );
  }
  const signalNumber = status.signal ? (os.constants.signals as Record<string, number>)[status.signal] ?? 0 : 0;
  const code = status.code ?? 128 + signalNumber;
  if (request.json) {
    const text = (parts: Uint8Array[]) => Buffer.concat(parts).toString("utf8");
    process.stdout.write(
      JSON.stringify({
        code: status.code,
        signal: status.signal,
        exitCode: code,
        stdout: text(output.collected.stdout),
        stderr: text(output.collected.stderr),
      }) + "\n",
    );
  } else if (status.signal) {
    process.stderr.write(`agent: ${request.program} was ended by ${status.signal}\n`);
  }
  return code;
}

/** This terminal's size, or the usual 24 × 80 when it has none. */
function terminalSize(): { rows: number; cols: number } {
  return { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 };
}

/**
 * -t: puts this terminal in raw mode (every key, Ctrl-C and Ctrl-Z too, goes to the remote
 * program, whose pty interprets them) and passes on window-size changes. The cleanup restores the
 * terminal; so does this process's exit, whatever ends it.
 */
function useTerminal(proc: RemoteProcess, cleanups: Array<() => void>): void {
  const onResize = () => void proc.resize(terminalSize().rows, terminalSize().cols).catch(() => {});
  process.on("SIGWINCH", onResize);
  cleanups.push(() => process.off("SIGWINCH", onResize));
  if (!process.stdin.isTTY) return;
  const restore = () => process.stdin.isTTY && process.stdin.setRawMode(false);
  process.stdin.setRawMode(true);
  process.once("exit", restore);
  cleanups.push(() => {
    restore();
    process.off("exit", restore);
  });
}

export async function runCommand(target: string | undefined, flags: Flags): Promise<number> {
  const request = parseRequest(target, flags);
  const { program, args, cwd, env } = request;
  const { agent, session } = await openRemote(request.address, flags, RUN_EXIT);
  const cleanups: Array<() => void> = [];
  try {
    let proc;
    try {
      proc = await session.processes.start({ program, args, cwd, env, tty: request.tty ? terminalSize() : undefined });
    } catch (e) {
      fail(e, RUN_EXIT, `cannot run ${program}`);
    }
    const gaveUp = forwardSignals(proc, cleanups).then(() => null);
    if (request.tty) useTerminal(proc, cleanups);
    const output = new LocalOutput(proc, request.json, cleanups);
    const pumped = output.pump();
    const stdinSent = await feedStdin(proc, flags);
    let status;
    try {
      status = await Promise.race([proc.wait().then(async (s) => (await pumped, s)), gaveUp]);
    } catch (e) {
      fail(e, RUN_EXIT, `running ${program}`);
    }
    if (status === null) {
      throw new CommandFailure("failed", "interrupted three times; not waiting for the agent", RUN_EXIT);
    }
    if (stdinSent) process.stdin.destroy(); // stop reading input the program can no longer take
    return finish(request, status, output);
  } finally {
    for (const cleanup of cleanups) cleanup();
    await session.close().catch(() => {});
    agent.close();
  }
}
