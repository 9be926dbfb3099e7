/**
 * `agent run HOST[:PORT] -- program args…`: a program on a server, through
 * its agent, the way `ssh host cmd` is used. Output streams as it comes,
 * piped standard input goes to the program, Ctrl-C reaches it, and the exit
 * code is the program's. Built on the client library only.
 * @module
 */
import os from "node:os";
import { type Flags, str } from "../../agent/config.ts";
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
  "local-disk-full": 251, // the program's output could not be written here
  "checksum-mismatch": 255,
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

export async function runCommand(target: string | undefined, flags: Flags): Promise<number> {
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
  const json = Boolean(flags.json);

  const { agent, session } = await openRemote(address, flags, RUN_EXIT);
  const cleanups: Array<() => void> = [];
  try {
    let proc;
    try {
      proc = await session.processes.start({ program, args, cwd: str(flags.cwd), env });
    } catch (e) {
      fail(e, RUN_EXIT, `cannot run ${program}`);
    }
    // Ctrl-C: the first one reaches the program as SIGINT (so it can clean up); a second ends it.
    let interrupts = 0;
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      const handler = () => {
        if (signal === "SIGINT" && ++interrupts > 1) {
          if (interrupts === 2) process.stderr.write("agent: interrupted again; ending the remote program\n");
          void proc.signal("SIGKILL").catch(() => {});
        } else {
          void proc.signal(signal).catch(() => {});
        }
      };
      process.on(signal, handler);
      cleanups.push(() => process.off(signal, handler));
    }

    // Our own output failing (a full disk, a reader that went away) ends the program: its output has nowhere to go.
    let localError: NodeJS.ErrnoException | null = null;
    const onLocalError = (e: NodeJS.ErrnoException) => {
      if (localError) return;
      localError = e;
      void proc.signal("SIGTERM").catch(() => {});
    };
    for (const name of ["stdout", "stderr"] as const) {
      process[name].on("error", onLocalError);
      cleanups.push(() => process[name].off("error", onLocalError));
    }

    const collected = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
    const pump = async (name: "stdout" | "stderr") => {
      for await (const chunk of proc[name]) {
        if (json) collected[name].push(chunk);
        else if (!localError) {
          try {
            await writeOut(process[name], chunk);
          } catch (e) {
            onLocalError(e as NodeJS.ErrnoException); // Deno throws here where Node emits "error"
          }
        }
      }
    };
    const output = Promise.all([pump("stdout"), pump("stderr")]);

    // Standard input goes to the program when it is piped or a file; a terminal is left alone.
    const feedStdin = !flags.noStdin && flags.stdin !== false && !process.stdin.isTTY;
    if (feedStdin) {
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
    } else {
      await proc.closeStdin().catch(() => {});
    }

    let status;
    try {
      status = await proc.wait();
      await output;
    } catch (e) {
      fail(e, RUN_EXIT, `running ${program}`);
    }
    if (feedStdin) process.stdin.destroy(); // stop reading input the program can no longer take
    const failed = localError as NodeJS.ErrnoException | null;
    const failedCode = errorCode(failed);
    if (failedCode === "EPIPE") return 128 + 13; // the reader went away: end quietly, as a shell pipeline would (SIGPIPE)
    if (failed) {
      const full = failedCode === "ENOSPC" || failedCode === "EDQUOT";
      throw new CommandFailure(
        full ? "local-disk-full" : "failed",
        `cannot write ${program}'s output here${
          full ? ": no space left on the local disk" : `: ${failed.message}`
        }; the program was ended`,
        RUN_EXIT,
      );
    }
    const signalNumber = status.signal ? (os.constants.signals as Record<string, number>)[status.signal] ?? 0 : 0;
    const code = status.code ?? 128 + signalNumber;
    if (json) {
      const text = (parts: Uint8Array[]) => Buffer.concat(parts).toString("utf8");
      process.stdout.write(
        JSON.stringify({
          code: status.code,
          signal: status.signal,
          exitCode: code,
          stdout: text(collected.stdout),
          stderr: text(collected.stderr),
        }) + "\n",
      );
    } else if (status.signal) {
      process.stderr.write(`agent: ${program} was ended by ${status.signal}\n`);
    }
    return code;
  } finally {
    for (const cleanup of cleanups) cleanup();
    await session.close().catch(() => {});
    agent.close();
  }
}
