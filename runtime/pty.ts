/**
 * Starts a program on a pseudo-terminal, for `agent run -t`: the program leads a new session
 * whose controlling terminal is the pty's slave side (its stdin, stdout and stderr), so job
 * control, Ctrl-C and Ctrl-Z work as on a login. This process keeps the master side: what it
 * writes there is typed, what it reads is the screen, and {@link PtyProcess.resize} sets the
 * window size (TIOCSWINSZ, which sends the program SIGWINCH). Through libc (posix_openpt,
 * grantpt, unlockpt, ptsname_r, ioctl, posix_spawnp with POSIX_SPAWN_SETSID) over this runtime's
 * FFI (runtime/native.ts), on Linux.
 *
 * @example
 * ```ts
 * const child = startInPty("sh", ["-c", "stty size"], { environment: { PATH: "/usr/bin:/bin" }, rows: 30, cols: 100 });
 * child.stdout.on("data", (chunk) => console.log(String(chunk).trim())); // 30 100
 * console.log(await child.exit); // { code: 0, signal: null }
 * ```
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import { Readable, Writable } from "node:stream";
import { bindC, cStrings, denoFfi, isDeno, libcName } from "./native.ts";
import { errnoName, type StartedProcess, watchExit } from "./spawn.ts";

/** A program on a pty: stdout carries everything it shows (there is no separate stderr). */
export interface PtyProcess extends StartedProcess {
  /** Sets the terminal's size; the program gets SIGWINCH. */
  resize(rows: number, cols: number): void;
}

/** How {@link startInPty} starts a program. */
export interface PtyOptions {
  /** The program's whole environment. */
  environment: Record<string, string>;
  cwd?: string;
  rows: number;
  cols: number;
}

const O_RDWR = 0o2, O_NOCTTY = 0o400, O_CLOEXEC = 0o2000000;
const POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;
const TIOCSWINSZ = 0x5414;
/** Larger than glibc's posix_spawnattr_t (336 bytes), posix_spawn_file_actions_t (80) and sigset_t (128). */
const OPAQUE_BYTES = 1024;

const SIGNATURES = {
  posix_openpt: "int posix_openpt(int flags)",
  grantpt: "int grantpt(int fd)",
  unlockpt: "int unlockpt(int fd)",
  ptsname_r: "int ptsname_r(int fd, char *buf, size_t len)",
  ioctl: "int ioctl(int fd, size_t request, void *arg)",
  close: "int close(int fd)",
  posix_spawnp:
    "int posix_spawnp(void *pid, const char *file, void *fa, void *attr, const char **argv, const char **envp)",
  posix_spawn_file_actions_init: "int posix_spawn_file_actions_init(void *fa)",
  posix_spawn_file_actions_destroy: "int posix_spawn_file_actions_destroy(void *fa)",
  posix_spawn_file_actions_addopen:
    "int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, int mode)",
  posix_spawn_file_actions_adddup2: "int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)",
  posix_spawn_file_actions_addchdir_np: "int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)",
  posix_spawnattr_init: "int posix_spawnattr_init(void *attr)",
  posix_spawnattr_setflags: "int posix_spawnattr_setflags(void *attr, short flags)",
  posix_spawnattr_setsigdefault: "int posix_spawnattr_setsigdefault(void *attr, void *set)",
  posix_spawnattr_setsigmask: "int posix_spawnattr_setsigmask(void *attr, void *set)",
  sigfillset: "int sigfillset(void *set)",
  sigemptyset: "int sigemptyset(void *set)",
};

type Libc = Record<keyof typeof SIGNATURES, (...a: unknown[]) => number>;
let bound: Libc | undefined;
const libc = (): Libc => (bound ??= bindC(libcName(), SIGNATURES) as Libc);

function errnoError(errno: number, what: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${what}: ${code}`), { code });
}

/** A new pty: the master's descriptor (close-on-exec) and the slave's path. */
function openPty(): { master: number; slave: string } {
  const f = libc();
  const master = f.posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) throw errnoError(os.constants.errno.EMFILE, "cannot open a pseudo-terminal");
  const name = new Uint8Array(128);
  if (f.grantpt(master) !== 0 || f.unlockpt(master) !== 0 || f.ptsname_r(master, name, name.length) !== 0) {
    f.close(master);
    throw errnoError(os.constants.errno.EIO, "cannot set up a pseudo-terminal");
  }
  return { master, slave: new TextDecoder().decode(name.subarray(0, name.indexOf(0))) };
}

/** Sets the window size of the pty whose master is `fd`. */
function setSize(fd: number, rows: number, cols: number): void {
  const size = new Uint16Array([rows, cols, 0, 0]);
  libc().ioctl(fd, TIOCSWINSZ, size);
}

/** Spawns `program` in a new session, the slave opened as its stdin (its controlling terminal), stdout and stderr. */
function spawnOnSlave(slave: string, program: string, args: readonly string[], options: PtyOptions): number {
  const f = libc(), { string, strings } = cStrings();
  const attr = new Uint8Array(OPAQUE_BYTES), all = new Uint8Array(OPAQUE_BYTES), none = new Uint8Array(OPAQUE_BYTES);
  const actions = new Uint8Array(OPAQUE_BYTES);
  f.sigfillset(all);
  f.sigemptyset(none);
  f.posix_spawnattr_init(attr);
  f.posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  f.posix_spawnattr_setsigdefault(attr, all);
  f.posix_spawnattr_setsigmask(attr, none);
  f.posix_spawn_file_actions_init(actions);
  try {
    if (options.cwd !== undefined) f.posix_spawn_file_actions_addchdir_np(actions, string(options.cwd));
    // Opened after setsid and without O_NOCTTY: the session leader's first terminal becomes its controlling one.
    f.posix_spawn_file_actions_addopen(actions, 0, string(slave), O_RDWR, 0);
    f.posix_spawn_file_actions_adddup2(actions, 0, 1);
    f.posix_spawn_file_actions_adddup2(actions, 0, 2);
    const envp = Object.entries(options.environment).map(([k, v]) => `${k}=${v}`);
    const pid = new Int32Array(1);
    const rc = f.posix_spawnp(pid, string(program), actions, attr, strings([program, ...args]), strings(envp));
    if (rc !== 0) throw errnoError(rc, `cannot start ${program}`);
    return pid[0];
  } finally {
    f.posix_spawn_file_actions_destroy(actions);
  }
}

/** Reads into and writes from a descriptor without holding up the event loop; a read of 0 is the end. */
interface FdIo {
  read(fd: number, buffer: Uint8Array): Promise<number>;
  write(fd: number, data: Uint8Array): Promise<number>;
}

/** Node's fs calls, on its thread pool. Deno's take only descriptors Deno opened: there, libc's on FFI threads. */
function fdIo(): FdIo {
  if (!isDeno()) {
    return {
      read: (fd, buffer) =>
        new Promise((resolve) => fs.read(fd, buffer, 0, buffer.length, null, (e, n) => resolve(e ? 0 : n))),
      write: (fd, data) => new Promise((resolve, reject) => fs.write(fd, data, (e, n) => (e ? reject(e) : resolve(n)))),
    };
  }
  const lib = (denoFfi() as unknown as {
    dlopen(l: string, s: Record<string, unknown>): { symbols: Record<string, (...a: unknown[]) => Promise<unknown>> };
  }).dlopen(libcName(), {
    read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  }).symbols;
  return {
    read: async (fd, buffer) => Math.max(0, Number(await lib.read(fd, buffer, BigInt(buffer.length)))),
    write: async (fd, data) => {
      const n = Number(await lib.write(fd, data, BigInt(data.length)));
      if (n < 0) throw errnoError(os.constants.errno.EIO, "cannot write to the terminal");
      return n;
    },
  };
}

/** The master side as streams: reads end when the program and all it started have closed the terminal (EIO). */
function masterStreams(master: number): { input: Writable; output: Readable } {
  const io = fdIo();
  const output = new Readable({
    read() {
      const buffer = new Uint8Array(64 * 1024);
      io.read(master, buffer).then((n) => this.push(n === 0 ? null : buffer.subarray(0, n)));
    },
  });
  const input = new Writable({
    write(chunk: Uint8Array, _encoding, done) {
      const all = async () => {
        for (let sent = 0; sent < chunk.length;) sent += await io.write(master, chunk.subarray(sent));
      };
      all().then(() => done(), done);
    },
  });
  input.on("error", () => {}); // a write after the end fails that write's caller; nothing else is listening
  return { input, output };
}

/** Starts `program` with `args` on a new pty of `options.rows` × `options.cols`. */
export function startInPty(program: string, args: readonly string[], options: PtyOptions): PtyProcess {
  const { master, slave } = openPty();
  let pid: number;
  try {
    setSize(master, options.rows, options.cols);
    pid = spawnOnSlave(slave, program, args, options);
  } catch (e) {
    libc().close(master);
    throw e;
  }
  const { input, output } = masterStreams(master);
  let closed = false;
  output.once("close", () => {
    closed = true;
    libc().close(master);
  });
  const stderr = new Readable({ read() {} });
  stderr.push(null);
  return {
    pid,
    stdin: input,
    stdout: output,
    stderr,
    exit: watchExit(pid),
    resize: (rows, cols) => closed || setSize(master, rows, cols),
  };
}
