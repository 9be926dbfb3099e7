/**
 * The built-in services' contract: one entry per service code naming its
 * request fields, its reply fields, and whether raw bytes travel with
 * either. Which error codes a call may answer with is not typed here: an
 * operating-system error can reach almost any of them (docs/protocol.md §5
 * tables the codes). The client library and the host
 * are both typed from this table, so a field renamed on one side and not
 * the other does not compile. docs/protocol.md §6 lists the same table.
 *
 * Agent↔host control messages ({@link HostControl}) are a separate enum: they
 * travel only on target 0 of the shared-memory channel, which no client can
 * address.
 *
 * @example
 * ```ts
 * const request: RequestOf<ServiceCode.FileStat> = { path: "/etc/hosts" };
 * type Info = ReplyOf<ServiceCode.FileStat>; // { path, type, size, mode, mtimeMs, atimeMs }
 * ```
 * @module
 */
/** Codes of the built-in services every host offers (product target). Products use 0x1000 and up. */
export enum ServiceCode {
  FileStat = 0x100,
  FileList = 0x101,
  FileMkdir = 0x102,
  FileDelete = 0x103,
  FileCopy = 0x104,
  FileMove = 0x105,
  FileSetTimes = 0x106,
  FileSetMode = 0x107,
  FileSha256 = 0x108,
  FileOpen = 0x109,
  FileRead = 0x10a,
  FileWrite = 0x10b,
  FileSeek = 0x10c,
  FileClose = 0x10d,
  FileWriteBatch = 0x10e,
  FileReadBatch = 0x10f,
  /** Creates a symbolic link (protocol version 3). */
  FileSymlink = 0x110,
  ProcessStart = 0x200,
  ProcessWrite = 0x201,
  ProcessCloseStdin = 0x202,
  ProcessSignal = 0x203,
  ProcessWait = 0x204,
  ProcessList = 0x205,
  /** Start, feed stdin (the request's bytes) and close it, wait: one message; output events come before the reply. */
  ProcessRun = 0x206,
  /** A terminal's new size, for a process started with `tty` (protocol version 3). */
  ProcessResize = 0x207,
  SystemInfo = 0x300,
  SystemEnv = 0x301,
  SystemProductRoot = 0x302,
}

/** Events (token 0) a host sends to one attachment. */
export enum ServiceEvent {
  /** `{ id, stream: "stdout" | "stderr" }` + the bytes. */
  ProcessOutput = 0x280,
  /** `{ id, code, signal }`, after the last output. */
  ProcessExit = 0x281,
}

/** Agent ↔ host control, on target 0 of the shared-memory channel only. */
export enum HostControl {
  /** Agent → host: end gracefully (close files, TERM then KILL processes), then exit. */
  Shutdown = 0xf00,
  /** Host → agent: `{ openFiles, runningProcesses }` after each change. */
  Stats = 0xf01,
  /** Host → agent: the host is up and serving: `{ pid, extensions }`. */
  Ready = 0xf02,
}

/** Most bytes of file data one batch request or reply carries (frames hold up to 1 MiB). */
export const BATCH_MAX_BYTES = 512 * 1024;
/** Most files in one batch. */
export const BATCH_MAX_FILES = 256;

/** First code a product's extensions may use; the last is {@link EXTENSION_CODE_MAX}. */
export const EXTENSION_CODE_MIN = 0x1000;
export const EXTENSION_CODE_MAX = 0xfff0;

/** Success reply to any product request; its envelope carries the result. */
export const REPLY_CODE = 0xfffe;

/**
 * What `files.stat` tells about a path.
 *
 * @example
 * ```ts
 * const info: FileInfo = { path: "/etc/hosts", type: "file", size: 220, mode: 0o644, mtimeMs: 0, atimeMs: 0 };
 * console.log(info.type === "file" && (info.mode & 0o200) !== 0); // true
 * ```
 */
export interface FileInfo {
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  mode: number;
  mtimeMs: number;
  atimeMs: number;
  /** A symlink's target, as stored in it (protocol version 3). */
  target?: string;
}

/**
 * One entry of `files.list`, its path relative to the listed directory.
 *
 * @example
 * ```ts
 * const entry: ListEntry = { path: "config/app.json", type: "file", size: 2, mtimeMs: Date.now() };
 * console.log(entry.path.split("/").length); // 2
 * ```
 */
export interface ListEntry {
  path: string;
  type: FileInfo["type"];
  size: number;
  mtimeMs: number;
  /** Permission bits (`st_mode & 0o7777`; protocol version 3). */
  mode?: number;
  /** A symlink's target, as stored in it (protocol version 3). */
  target?: string;
}

/**
 * How to start a process.
 *
 * @example
 * ```ts
 * const options: StartOptions = { program: "tar", args: ["-xzf", "release.tar.gz"], cwd: "/srv/app", env: { LANG: "C" } };
 * console.log(options.args?.length); // 2
 * ```
 */
export interface StartOptions {
  program: string;
  args?: string[];
  /** Working directory; the product's root by default, and a relative one is under it. */
  cwd?: string;
  /** Added to (or, with clearEnv, replacing) the agent's environment. */
  env?: Record<string, string>;
  clearEnv?: boolean;
  /**
   * Start it on a pseudo-terminal of this size (protocol version 3), as `ssh -t` does: a new session
   * whose controlling terminal that is; its stdout carries everything it shows, and it has no stderr.
   */
  tty?: { rows: number; cols: number };
}

/**
 * The outcome of a process: exit code, or the signal that ended it.
 *
 * @example
 * ```ts
 * const status: ExitStatus = { code: null, signal: "SIGTERM" };
 * console.log(status.code ?? 128 + 15); // 143
 * ```
 */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

/**
 * A launched process as `processes.list` shows it.
 *
 * @example
 * ```ts
 * const entry: ProcessEntry = { id: 1, pid: 4242, program: "sleep", args: ["5"], startedAt: Date.now(), running: true, code: null, signal: null };
 * console.log(entry.running); // true
 * ```
 */
export interface ProcessEntry extends ExitStatus {
  id: number;
  pid: number;
  program: string;
  args: string[];
  startedAt: number;
  running: boolean;
}

/**
 * What `system.info` tells about the agent's machine.
 *
 * @example
 * ```ts
 * const info: SystemInfo = { hostname: "web1", os: "linux", arch: "x64", cpus: 2, memory: { total: 2 ** 34, free: 2 ** 33 }, uptimeSeconds: 60, pid: 1, extensions: [] };
 * console.log(info.memory.free / info.memory.total); // 0.5
 * ```
 */
export interface SystemInfo {
  hostname: string;
  os: string;
  arch: string;
  cpus: number;
  memory: { total: number; free: number };
  uptimeSeconds: number;
  pid: number;
  extensions: unknown[];
}

/**
 * Open flags as in fopen.
 *
 * @example
 * ```ts
 * const flags: OpenFlags = "a";
 * console.log(flags); // a: append, creating the file if needed
 * ```
 */
export type OpenFlags = "r" | "r+" | "w" | "wx" | "w+" | "a" | "ax" | "a+";

type NoFields = Record<never, never>;

/**
 * One entry per service code. `data` marks codes whose request or reply
 * carries raw bytes after the fields.
 */
export interface ServiceContract {
  [ServiceCode.FileStat]: { request: { path: string }; reply: FileInfo };
  [ServiceCode.FileList]: {
    request: { path: string; recursive?: boolean; include?: string[]; exclude?: string[] };
    reply: { entries: ListEntry[] };
  };
  [ServiceCode.FileMkdir]: {
    request: { path: string; recursive?: boolean; mode?: number };
    reply: NoFields;
  };
  [ServiceCode.FileDelete]: {
    request: { path: string; recursive?: boolean };
    reply: NoFields;
  };
  [ServiceCode.FileCopy]: {
    request: { from: string; to: string; overwrite?: boolean };
    reply: NoFields;
  };
  [ServiceCode.FileMove]: { request: { from: string; to: string }; reply: NoFields };
  [ServiceCode.FileSetTimes]: {
    request: { path: string; atimeMs?: number; mtimeMs?: number };
    reply: NoFields;
  };
  [ServiceCode.FileSetMode]: { request: { path: string; mode: number }; reply: NoFields };
  [ServiceCode.FileSha256]: {
    request: { path: string };
    reply: { sha256: string; size: number };
  };
  [ServiceCode.FileOpen]: {
    /** `sha256`: the host keeps a SHA-256 of the bytes as they pass, in order from the start, and FileClose returns it. */
    request: { path: string; flags?: OpenFlags; mode?: number; sha256?: boolean };
    reply: { handle: number; size: number };
  };
  [ServiceCode.FileRead]: {
    request: { handle: number; length?: number; position?: number };
    reply: NoFields;
    replyData: true;
  };
  [ServiceCode.FileWrite]: {
    request: { handle: number; position?: number };
    requestData: true;
    reply: { written: number };
  };
  [ServiceCode.FileSeek]: {
    request: { handle: number; position: number; whence?: "start" | "current" | "end" };
    reply: { position: number };
  };
  /** `sha256`, `size`: for a handle opened with `sha256` and used in order from the start (reads from 0, or a fresh write). */
  [ServiceCode.FileClose]: {
    request: { handle: number };
    reply: { sha256?: string; size?: number };
  };
  /**
   * Many small files in one request: each `size` bytes of the data in turn, written under a
   * temporary name and renamed into place; the reply gives each one's SHA-256 as written.
   */
  [ServiceCode.FileWriteBatch]: {
    /** `exclusive`: create each file under its own name, failing with already-exists rather than replacing one. */
    request: { files: Array<{ path: string; size: number; mode?: number }>; exclusive?: boolean };
    requestData: true;
    reply: { sha256: string[] };
  };
  /**
   * Many small files in one reply: the data holds each file's bytes in turn. Files are read in
   * order until the next would pass {@link BATCH_MAX_BYTES}; `files` says which came (at least one,
   * unless the first alone is too large: then none, and the client streams it).
   */
  [ServiceCode.FileReadBatch]: {
    request: { paths: string[] };
    reply: { files: Array<{ path: string; size: number; sha256: string }> };
    replyData: true;
  };
  /** A symlink at `path` holding `target`; fails with already-exists when anything is at `path`. */
  [ServiceCode.FileSymlink]: { request: { path: string; target: string }; reply: NoFields };
  [ServiceCode.ProcessStart]: {
    request: StartOptions;
    reply: { id: number; pid: number };
  };
  [ServiceCode.ProcessWrite]: {
    request: { id: number };
    requestData: true;
    reply: NoFields;
  };
  [ServiceCode.ProcessCloseStdin]: { request: { id: number }; reply: NoFields };
  [ServiceCode.ProcessSignal]: {
    request: { id: number; signal?: string };
    reply: { delivered: boolean };
  };
  [ServiceCode.ProcessWait]: { request: { id: number }; reply: ExitStatus };
  [ServiceCode.ProcessResize]: { request: { id: number; rows: number; cols: number }; reply: NoFields };
  [ServiceCode.ProcessList]: { request: NoFields; reply: { processes: ProcessEntry[] } };
  [ServiceCode.ProcessRun]: {
    request: StartOptions;
    requestData: true;
    reply: { id: number; pid: number } & ExitStatus;
  };
  [ServiceCode.SystemInfo]: { request: NoFields; reply: SystemInfo };
  [ServiceCode.SystemEnv]: { request: NoFields; reply: { vars: Record<string, string> } };
  [ServiceCode.SystemProductRoot]: { request: NoFields; reply: { path: string } };
}

/** Event payload fields by event code. */
export interface EventContract {
  [ServiceEvent.ProcessOutput]: { id: number; stream: "stdout" | "stderr" };
  [ServiceEvent.ProcessExit]: { id: number } & ExitStatus;
}

/** Request fields of a service code. */
export type RequestOf<C extends ServiceCode> = ServiceContract[C]["request"];
/** Reply fields of a service code. */
export type ReplyOf<C extends ServiceCode> = ServiceContract[C]["reply"];
