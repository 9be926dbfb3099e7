/**
 * Starts programs with pipes on stdin, stdout and stderr, each in its own
 * process group. Through libc's `posix_spawn` where the FFI is available:
 * measured in a host-sized process, a start and exit costs about an eighth of
 * `child_process.spawn`'s time, because glibc starts the child with a vfork-style
 * clone and Node pays for a full event-loop process handle (docs/operations.md
 * "Process start"). Elsewhere, `child_process.spawn` with the same behaviour.
 *
 * The child gets: the program found on the PATH of its own environment,
 * the given working directory, every signal at its default disposition and
 * none blocked (the runtime ignores SIGPIPE; a child must not inherit that),
 * and no file descriptor but 0, 1 and 2.
 *
 * @example
 * ```ts
 * const child = await startProcess("echo", ["hi"], { environment: { PATH: "/usr/bin:/bin" } });
 * child.stdin.end();
 * child.stdout.on("data", (chunk) => console.log(String(chunk)));
 * console.log(await child.exit); // { code: 0, signal: null }
 * ```
 * @module
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { loadOnFirstUse } from "./lazy.ts";
import { bindC, type CStrings, cStrings, libcName } from "./native.ts";
import type { ExitStatus } from "../core/session/contract.ts";

/** A started process. */
export interface StartedProcess {
  pid: number;
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Settles once the process has ended and been reaped (not waiting for its output to drain). */
  exit: Promise<ExitStatus>;
  /** This side's descriptors of the three pipes, where posix_spawn made them: what a hand-over passes on. */
  fds?: { stdin: number; stdout: number; stderr: number };
}

/** How {@link startProcess} starts a program. */
export interface SpawnOptions {
  /** The child's whole environment (nothing is inherited). */
  environment: Record<string, string>;
  cwd?: string;
  /** The mechanism; by default {@link startBackend}'s choice. */
  via?: StartBackend;
}

/** A start that failed before the program ran, as Node reports it: `code` is the errno name (ENOENT, EACCES, …). */
function startError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Which mechanism {@link startProcess} uses in this process. */
export type StartBackend = "posix_spawn" | "child_process";

let posix: PosixSpawn | null | undefined;

/** libc's posix_spawn through this runtime's FFI, or null where there is none (or not Linux). */
function loadPosixSpawn(): PosixSpawn | null {
  if (posix === undefined) {
    posix = null;
    if (process.platform === "linux") {
      try {
        posix = libcPosixSpawn();
      } catch { /* no FFI here */ }
    }
  }
  return posix;
}

/** The mechanism {@link startProcess} uses here by default; `AGENT_SPAWN=child_process` forces the fallback. */
export function startBackend(): StartBackend {
  return process.env.AGENT_SPAWN !== "child_process" && loadPosixSpawn() ? "posix_spawn" : "child_process";
}

/** Starts `program` with `args`; rejects with an error whose `code` is the errno name (ENOENT, EACCES, …) if it cannot run. */
export async function startProcess(
  program: string,
  args: readonly string[],
  options: SpawnOptions,
): Promise<StartedProcess> {
  if ((options.via ?? startBackend()) === "child_process") return await startWithChildProcess(program, args, options);
  const libc = loadPosixSpawn();
  if (!libc) throw startError("ENOSYS", "posix_spawn is not available in this process");
  return startWithPosixSpawn(libc, program, args, options);
}

// ---- child_process ------------------------------------------------------

// Loaded only when this path is taken: a host that starts its processes with posix_spawn never
// carries it (runtime/lazy.ts).
const childProcess = loadOnFirstUse(() => import("node:child_process"));

async function startWithChildProcess(
  program: string,
  args: readonly string[],
  options: SpawnOptions,
): Promise<StartedProcess> {
  const child = (await childProcess()).spawn(program, args, {
    cwd: options.cwd,
    env: options.environment,
    stdio: ["pipe", "pipe", "pipe"],
    detached: true, // its own process group
  });
  const exit = new Promise<ExitStatus>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    child.once("spawn", () => {
      child.on("error", () => {}); // later errors (EPIPE on stdin) surface through the calls that caused them
      child.stdin!.on("error", () => {});
      resolve({ pid: child.pid!, stdin: child.stdin!, stdout: child.stdout!, stderr: child.stderr!, exit });
    });
    child.once("error", (e: NodeJS.ErrnoException) => reject(e));
  });
}

// ---- posix_spawn --------------------------------------------------------

/** The libc calls the posix_spawn path needs, the same shape on both FFIs. */
interface PosixSpawn {
  /** Creates a close-on-exec pipe: [read end, write end]. */
  pipe(): [number, number];
  close(fd: number): void;
  /** A close-on-exec copy of `fd`, numbered 3 or above. */
  duplicate(fd: number): number;
  /**
   * Returns the child's pid, or throws an error with the errno posix_spawn returned. The child keeps
   * the descriptors `dup2` places and, with `inherit`, those listed there (same numbers); every other
   * descriptor from 3 up is closed.
   */
  spawn(
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    dup2: Array<[number, number]>,
    cwd: string | undefined,
    searchPath: boolean,
    inherit?: readonly number[],
  ): number;
  /** waitpid(pid, WNOHANG): the raw status once the child has ended, else null. */
  reap(pid: number): number | null;
}

const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const WNOHANG = 1;
const POSIX_SPAWN_SETPGROUP = 0x02, POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08;
/** Larger than glibc's posix_spawnattr_t (336 bytes), posix_spawn_file_actions_t (80) and sigset_t (128). */
const OPAQUE_BYTES = 1024;

/** errno's name (ENOENT, EACCES, …), as Node puts it in an error's `code`. */
export function errnoName(errno: number): string {
  const names = os.constants.errno as Record<string, number>;
  return Object.keys(names).find((k) => names[k] === errno) ?? `errno ${errno}`;
}

function signalName(signo: number): string {
  const names = os.constants.signals as Record<string, number>;
  return Object.keys(names).find((k) => names[k] === signo) ?? `SIG${signo}`;
}

/** Decodes a waitpid status the way WIFEXITED / WTERMSIG do. */
export function exitStatus(status: number): ExitStatus {
  const signo = status & 0x7f;
  return signo === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: signalName(signo) };
}

/** `load()`, or undefined where this libc lacks the symbol (closefrom is glibc 2.34 and later). */
function optional<T>(load: () => T): T | undefined {
  try {
    return load();
  } catch {
    return undefined;
  }
}

/** The attributes every child gets: its own process group, default signal dispositions, an empty mask. */
function spawnAttributes(call: (name: string, ...a: unknown[]) => number): Uint8Array {
  const attr = new Uint8Array(OPAQUE_BYTES), all = new Uint8Array(OPAQUE_BYTES), none = new Uint8Array(OPAQUE_BYTES);
  call("sigfillset", all);
  call("sigemptyset", none);
  call("posix_spawnattr_init", attr);
  call("posix_spawnattr_setflags", attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  call("posix_spawnattr_setpgroup", attr, 0);
  call("posix_spawnattr_setsigdefault", attr, all);
  call("posix_spawnattr_setsigmask", attr, none);
  return attr; // kept for the life of the process and reused by every start
}

/** The PosixSpawn calls over one FFI's bound libc functions. */
function posixSpawnOver(f: Record<string, (...a: unknown[]) => number>, marshal: CStrings): PosixSpawn {
  const attr = spawnAttributes((name, ...a) => f[name](...a));
  return {
    pipe() {
      const fds = new Int32Array(2);
      if (f.pipe2(fds, O_CLOEXEC) !== 0) throw startError("EMFILE", "cannot create a pipe for the process");
      return [fds[0], fds[1]];
    },
    close: (fd) => void f.close(fd),
    duplicate(fd) {
      const copy = f.fcntl(fd, F_DUPFD_CLOEXEC, 3);
      if (copy < 0) throw startError("EMFILE", `cannot duplicate descriptor ${fd}`);
      return copy;
    },
    spawn(file, argv, envp, dup2, cwd, searchPath, inherit) {
      const actions = new Uint8Array(OPAQUE_BYTES);
      f.posix_spawn_file_actions_init(actions);
      try {
        for (const [from, to] of dup2) f.posix_spawn_file_actions_adddup2(actions, from, to);
        // dup2 onto itself clears close-on-exec (glibc 2.29 and later); the rest keep it and close at exec.
        for (const fd of inherit ?? []) f.posix_spawn_file_actions_adddup2(actions, fd, fd);
        if (cwd !== undefined) f.posix_spawn_file_actions_addchdir_np(actions, marshal.string(cwd));
        if (!inherit) f.posix_spawn_file_actions_addclosefrom_np?.(actions, 3);
        const pid = new Int32Array(1);
        const rc = (searchPath ? f.posix_spawnp : f.posix_spawn)(
          pid,
          marshal.string(file),
          actions,
          attr,
          marshal.strings(argv),
          marshal.strings(envp),
        );
        if (rc !== 0) throw startError(errnoName(rc), `posix_spawn: ${errnoName(rc)}`);
        return pid[0];
      } finally {
        f.posix_spawn_file_actions_destroy(actions);
      }
    },
    reap(pid) {
      const status = new Int32Array(1);
      return f.waitpid(pid, status, WNOHANG) === pid ? status[0] : null;
    },
  };
}

/** The libc functions, by name and C signature (runtime/native.ts `bindC`). */
const SIGNATURES: Record<string, string> = {
  pipe2: "int pipe2(void *fds, int flags)",
  close: "int close(int fd)",
  fcntl: "int fcntl(int fd, int cmd, int arg)",
  posix_spawn:
    "int posix_spawn(void *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)",
  posix_spawnp:
    "int posix_spawnp(void *pid, const char *file, void *fa, void *attr, const char **argv, const char **envp)",
  posix_spawn_file_actions_init: "int posix_spawn_file_actions_init(void *fa)",
  posix_spawn_file_actions_destroy: "int posix_spawn_file_actions_destroy(void *fa)",
  posix_spawn_file_actions_adddup2: "int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)",
  posix_spawn_file_actions_addchdir_np: "int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)",
  posix_spawnattr_init: "int posix_spawnattr_init(void *attr)",
  posix_spawnattr_setflags: "int posix_spawnattr_setflags(void *attr, short flags)",
  posix_spawnattr_setpgroup: "int posix_spawnattr_setpgroup(void *attr, int pgroup)",
  posix_spawnattr_setsigdefault: "int posix_spawnattr_setsigdefault(void *attr, void *set)",
  posix_spawnattr_setsigmask: "int posix_spawnattr_setsigmask(void *attr, void *set)",
  sigfillset: "int sigfillset(void *set)",
  sigemptyset: "int sigemptyset(void *set)",
  waitpid: "int waitpid(int pid, void *status, int options)",
};
/** glibc 2.34 and later; without it, the runtime's close-on-exec flags are all that keeps descriptors from the child. */
const CLOSEFROM = "int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)";

/** libc's posix_spawn and the calls around it, through this runtime's FFI. */
function libcPosixSpawn(): PosixSpawn {
  const f = bindC(libcName(), SIGNATURES) as Record<string, (...a: unknown[]) => number>;
  const closefrom = optional(() => bindC(libcName(), { posix_spawn_file_actions_addclosefrom_np: CLOSEFROM }));
  if (closefrom) Object.assign(f, closefrom);
  return posixSpawnOver(f, cStrings());
}

/**
 * `program` as posix_spawn needs it when the child's PATH is not this process's (posix_spawnp
 * searches this process's): a path, found on the child's PATH as a shell would.
 */
function resolveProgram(program: string, env: Record<string, string>, cwd: string | undefined): string {
  if (program.includes("/")) return program;
  const searchPath = env.PATH ?? process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
  let denied = false;
  for (const dir of searchPath.split(":")) {
    const candidate = path.resolve(cwd ?? process.cwd(), dir || ".", program);
    // stat without throwing first: most PATH entries miss, and an exception per miss costs more than the start
    if (!fs.statSync(candidate, { throwIfNoEntry: false })?.isFile()) continue;
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      denied = true;
    }
  }
  throw startError(denied ? "EACCES" : "ENOENT", `${program}: not found on PATH`);
}

function startWithPosixSpawn(
  libc: PosixSpawn,
  program: string,
  args: readonly string[],
  options: SpawnOptions,
): StartedProcess {
  // Searching in the child costs this process nothing; it needs the child's PATH to be ours.
  const searchPath = !program.includes("/") && options.environment.PATH === process.env.PATH;
  const file = searchPath ? program : resolveProgram(program, options.environment, options.cwd);
  const envp = Object.entries(options.environment).map(([k, v]) => `${k}=${v}`);
  const pipes: Array<[number, number]> = [];
  let pid: number;
  reaper.listen(); // before the child exists, so its SIGCHLD is never missed
  try {
    for (let k = 0; k < 3; k++) pipes.push(libc.pipe());
    const [stdin, stdout, stderr] = pipes;
    pid = libc.spawn(
      file,
      [program, ...args],
      envp,
      [[stdin[0], 0], [stdout[1], 1], [stderr[1], 2]],
      options.cwd,
      searchPath,
    );
  } catch (e) {
    for (const [r, w] of pipes) libc.close(r), libc.close(w);
    reaper.unlistenIfIdle();
    throw e;
  }
  const [stdin, stdout, stderr] = pipes;
  for (const fd of [stdin[0], stdout[1], stderr[1]]) libc.close(fd); // the child's ends
  const started: StartedProcess = {
    pid,
    stdin: new net.Socket({ fd: stdin[1], readable: false, writable: true }),
    stdout: new net.Socket({ fd: stdout[0], readable: true, writable: false }),
    stderr: new net.Socket({ fd: stderr[0], readable: true, writable: false }),
    exit: reaper.watch(pid),
    fds: { stdin: stdin[1], stdout: stdout[0], stderr: stderr[0] },
  };
  started.stdin.on("error", () => {}); // EPIPE surfaces through the write that caused it
  return started;
}

/**
 * Starts `program` sharing this process's standard input, output and error, and keeping the
 * descriptors in `inherit` under the same numbers: how a running agent starts the version that
 * takes over from it (agent/upgrade.ts). Needs posix_spawn. The child gets its own process group.
 */
export function startInheriting(
  program: string,
  args: readonly string[],
  environment: Record<string, string>,
  inherit: readonly number[],
): { pid: number; exit: Promise<ExitStatus> } {
  const libc = loadPosixSpawn();
  if (!libc) throw startError("ENOSYS", "posix_spawn is not available in this process");
  const envp = Object.entries(environment).map(([k, v]) => `${k}=${v}`);
  reaper.listen();
  try {
    // The runtime marks 0, 1 and 2 close-on-exec too: they are passed on the same way.
    const pid = libc.spawn(program, [program, ...args], envp, [], undefined, false, [0, 1, 2, ...inherit]);
    return { pid, exit: reaper.watch(pid) };
  } catch (e) {
    reaper.unlistenIfIdle();
    throw e;
  }
}

/** A close-on-exec copy of `fd` (3 or above), which outlives the runtime's own handle on it. Needs the FFI. */
export function duplicateFd(fd: number): number {
  const libc = loadPosixSpawn();
  if (!libc) throw startError("ENOSYS", "the C library is not reachable in this process");
  return libc.duplicate(fd);
}

/** Closes a descriptor this process holds outside the runtime's handles. */
export function closeFd(fd: number): void {
  loadPosixSpawn()?.close(fd);
}

/** A pipe whose two ends are close-on-exec descriptors: [read, write]. */
export function rawPipe(): [number, number] {
  const libc = loadPosixSpawn();
  if (!libc) throw startError("ENOSYS", "the C library is not reachable in this process");
  return libc.pipe();
}

/**
 * Resolves with the exit of `pid`, a child of this process started through libc (a pty's program, say), reaped
 * with the children posix_spawn started here.
 */
export function watchExit(pid: number): Promise<ExitStatus> {
  if (!loadPosixSpawn()) throw startError("ENOSYS", "waitpid is not available in this process");
  reaper.listen();
  return reaper.watch(pid);
}

const BACKSTOP_MS = 1000;

/**
 * Reaps the children started here: on every SIGCHLD, a non-blocking waitpid
 * for each one still running (signals merge, so one may stand for several).
 * The listener is attached only while a child runs, so it costs nothing idle.
 */
const reaper = new (class Reaper {
  #waiting = new Map<number, (status: ExitStatus) => void>();
  #listening = false;
  #onSignal = () => this.#reapAll();
  /** Keeps the event loop alive while a child runs, as child_process does, and backs up the signal. */
  #backstop: ReturnType<typeof setInterval> | null = null;

  listen() {
    if (this.#listening) return;
    process.on("SIGCHLD", this.#onSignal);
    this.#backstop = setInterval(this.#onSignal, BACKSTOP_MS);
    this.#listening = true;
  }

  unlistenIfIdle() {
    if (!this.#listening || this.#waiting.size > 0) return;
    process.off("SIGCHLD", this.#onSignal);
    clearInterval(this.#backstop!);
    this.#listening = false;
  }

  watch(pid: number): Promise<ExitStatus> {
    const exit = new Promise<ExitStatus>((resolve) => this.#waiting.set(pid, resolve));
    this.#reapAll(); // it may already have ended
    return exit;
  }

  #reapAll() {
    for (const [pid, resolve] of this.#waiting) {
      const status = posix!.reap(pid); // only children posix_spawn started are waited for here
      if (status === null) continue;
      this.#waiting.delete(pid);
      resolve(exitStatus(status));
    }
    this.unlistenIfIdle();
  }
})();
