/**
 * `agent cp`: copies files and directory trees to and from a server through
 * its agent, as scp does. Every file is checked by SHA-256 end to end (the
 * agent hashes the bytes as they pass; we hash ours), lands under a temporary
 * name and is renamed only when complete, and many small files go out
 * several at a time so they do not each pay a round trip. Built on the
 * client library only.
 * @module
 */
import crypto from "node:crypto";
import { setMaxListeners } from "node:events";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { RemoteSession } from "../../core/client/remote-session.ts";
import type { ListEntry } from "../../core/session/contract.ts";
import { eachLimited } from "../../core/concurrency.ts";
import { throwIfAborted } from "../../core/client/abort.ts";
import { TRANSFER_CHUNK, TRANSFER_WINDOW_MAX_BYTES } from "../../core/client/files.ts";
import { AlreadyExistsError, NotFoundError } from "../../core/errors.ts";
import { escapeControls, safeJson } from "../../core/text.ts";
import type { Flags } from "../flags.ts";
import { CommandFailure, ExitError, type Failure } from "../errors.ts";
import { fail, openRemote, parseAddress } from "./remote.ts";
import { localTree, type TreeEntry } from "./cp-trees.ts";

/** Exit codes (docs/operations.md): the connection's match `agent probe`'s. */
export const CP_EXIT: Record<Failure, number> = {
  "failed": 1,
  "usage": 2,
  "invalid-argument": 2,
  "unresolved": 3,
  "refused": 4,
  "timeout": 5,
  "not-an-agent": 6,
  "wrong-key": 7,
  "incompatible": 8,
  "unknown-product": 9,
  "connection-lost": 10,
  "remote-not-found": 20,
  "remote-is-directory": 21,
  "local-is-directory": 21, // a directory where a file was expected, on either side: add -r
  "remote-not-directory": 22,
  "permission-denied": 23,
  "local-not-found": 24,
  "local-disk-full": 25,
  "checksum-mismatch": 26,
  "unsafe-listing": 27,
  "skipped": 28,
};

/** Files in flight at once when copying a tree. */
const DEFAULT_JOBS = 16;
/** Files up to this size travel many to a request (files.writeFiles / readFiles). */
const SMALL_FILE = 64 * 1024;
/** Small files per batch: enough to fill a request, few enough that several batches overlap. */
const SMALL_BATCH = 256;

/**
 * Where a name the server listed under a copied directory goes: `into` joined with it. A name that is
 * absolute, empty, or holds `.`, `..` or an empty part is refused before anything is written, as a
 * compromised server could otherwise have the copy write anywhere this user can (scp's CVE-2019-6111).
 */
export function localPathFor(into: string, listed: string): string {
  const parts = listed.split("/");
  if (parts.some((p) => p === "" || p === "." || p === ".." || p.includes("\0"))) {
    throw new CommandFailure(
      "unsafe-listing",
      `the server listed ${JSON.stringify(escapeControls(listed))}, which is not a plain name under the copied ` +
        "directory; nothing was copied (is the server compromised?)",
      CP_EXIT,
    );
  }
  return path.join(into, ...parts);
}

/** A remote operand: `HOST:PATH`, `HOST:PORT:PATH` or `[v6]:PORT:PATH`. Null for a local path. */
export function parseRemote(operand: string): { address: string; path: string } | null {
  const m = /^(\[[^\]]+\](?::\d+)?|[^:/[\]]+(?::\d+)?):(.*)$/.exec(operand);
  if (!m || m[1].length === 1) return null; // "C:" style or plain paths stay local
  return { address: m[1], path: m[2] === "" ? "." : m[2] };
}

interface CopyJob {
  /** Local file (upload source or download destination). */
  local: string;
  remote: string;
  size: number;
  /** The source's permission bits and modification time: kept (the mode less the umask; both exactly with -p). */
  mode: number;
  mtimeMs: number;
}

/** A symlink to make as it was: `local` and `remote` as for {@link CopyJob}. */
interface LinkJob {
  local: string;
  remote: string;
  target: string;
}

interface Copied {
  path: string;
  size: number;
  sha256: string;
}

/** A progress line on a terminal, redrawn at most 10 times a second. */
class Progress {
  #files = 0;
  #bytes = 0;
  #last = 0;
  readonly #started = performance.now();
  constructor(readonly total: { files: number; bytes: number }, readonly enabled: boolean) {}

  add(bytes: number, fileDone = false) {
    this.#bytes += bytes;
    if (fileDone) this.#files++;
    const now = performance.now();
    if (this.enabled && (now - this.#last > 100 || (fileDone && this.#files === this.total.files))) {
      this.#last = now;
      const mib = (n: number) => (n / 1048576).toFixed(1);
      const rate = this.#bytes / 1048576 / Math.max(0.001, (now - this.#started) / 1000);
      const pct = this.total.bytes > 0 ? Math.floor((100 * this.#bytes) / this.total.bytes) : 100;
      process.stderr.write(
        `\r\x1b[K${this.#files}/${this.total.files} files  ${mib(this.#bytes)}/${mib(this.total.bytes)} MiB  ${pct}%  ${
          rate.toFixed(1)
        } MiB/s`,
      );
    }
  }

  end() {
    if (this.enabled) process.stderr.write("\n");
  }
}

/**
 * A name beside `file` no one can guess (security finding 5: a predictable one let whoever could write
 * the directory plant a symlink there); it is always created exclusively, so a name taken fails.
 */
const tempName = (file: string) =>
  path.join(path.dirname(file), `.${path.basename(file)}.agent-cp-${crypto.randomBytes(8).toString("hex")}`);

/**
 * A file that could not be created on the server for want of its directory, said of that directory:
 * the agent's error names the temporary file, which the user never asked for.
 */
function missingParent(e: unknown, jobs: readonly CopyJob[]): unknown {
  const parents = new Set(jobs.map((j) => path.posix.dirname(j.remote)));
  if (!(e instanceof NotFoundError) || parents.size !== 1) return e;
  return new CommandFailure("remote-not-found", `${[...parents][0]}: no such directory on the server`, CP_EXIT);
}

/** Remote paths are '/'-separated whatever the local OS. */
const remoteJoin = (...parts: string[]) => path.posix.join(...parts);

async function remoteType(session: RemoteSession, p: string): Promise<"file" | "directory" | "other" | null> {
  try {
    const st = await session.files.stat(p);
    return st.type === "file" || st.type === "directory" ? st.type : "other";
  } catch (e) {
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}

async function localType(p: string): Promise<"file" | "directory" | "other" | null> {
  try {
    const st = await fsp.stat(p);
    return st.isFile() ? "file" : st.isDirectory() ? "directory" : "other";
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

const digest = (bytes: Uint8Array) => crypto.createHash("sha256").update(bytes).digest("hex");

function mismatch(name: string, theirs: string, ours: string, replaced: string): CommandFailure {
  return new CommandFailure(
    "checksum-mismatch",
    `${name}: the agent's SHA-256 is ${theirs}, ours ${ours}; ${replaced} was not replaced`,
    CP_EXIT,
  );
}

async function upload(session: RemoteSession, job: CopyJob, progress: Progress, signal: AbortSignal): Promise<Copied> {
  const hash = crypto.createHash("sha256");
  let remoteDigest = "";
  const temp = tempName(job.remote);
  // Read into the library's buffers, reused once written: no new memory per chunk.
  const local = await fsp.open(job.local, "r");
  const reader = {
    async readInto(into: Uint8Array) {
      const { bytesRead } = await local.read(into, 0, into.length, null);
      hash.update(into.subarray(0, bytesRead));
      progress.add(bytesRead);
      return bytesRead;
    },
  };
  let size: number;
  try {
    size = await session.files.writeFile(temp, reader, {
      exclusive: true,
      mode: job.mode & 0o777,
      onSha256: (hex) => (remoteDigest = hex),
      signal,
    });
    const ours = hash.digest("hex");
    if (ours !== remoteDigest) throw mismatch(job.remote, remoteDigest, ours, "the remote file");
    await session.files.move(temp, job.remote);
  } catch (e) {
    if (!(e instanceof AlreadyExistsError)) await session.files.delete(temp).catch(() => {}); // not ours otherwise
    throw missingParent(e, [job]);
  } finally {
    await local.close();
  }
  progress.add(0, true);
  return { path: job.remote, size, sha256: remoteDigest };
}

/**
 * Small files, many to a request; each lands whole under its name on the agent. In a directory
 * this copy created (`fresh`) nothing can be replaced, so the agent creates them under their own
 * names (`exclusive`), a rename less per file.
 */
async function uploadSmall(
  session: RemoteSession,
  jobs: CopyJob[],
  progress: Progress,
  fresh: ReadonlySet<string>,
): Promise<Copied[]> {
  // Small: synchronous reads are cheaper.
  const files = jobs.map((j) => ({
    path: j.remote,
    data: new Uint8Array(fs.readFileSync(j.local)),
    mode: j.mode & 0o777,
  }));
  const written = await session.files.writeFiles(files, {
    exclusive: jobs.every((j) => fresh.has(path.posix.dirname(j.remote))),
  }).catch((e) => Promise.reject(missingParent(e, jobs)));
  return written.map((w, i) => {
    const ours = digest(files[i].data);
    if (w.sha256 !== ours) throw mismatch(w.path, w.sha256, ours, "the remote file");
    progress.add(w.size, true);
    return { path: w.path, size: w.size, sha256: w.sha256 };
  });
}

/**
 * Small files, many to a reply. Each is written under a temporary name and renamed, except in a
 * directory this copy created (`fresh`): there is nothing there to replace, so the file is created
 * under its own name (exclusively), saving a rename per file, and removed if writing it fails.
 */
async function downloadSmall(
  session: RemoteSession,
  jobs: CopyJob[],
  progress: Progress,
  fresh: ReadonlySet<string>,
): Promise<Copied[]> {
  const read = await session.files.readFiles(jobs.map((j) => j.remote));
  return await Promise.all(read.map(async (r, i) => {
    const local = jobs[i].local;
    const ours = digest(r.data);
    if (r.sha256 !== ours) throw mismatch(r.path, r.sha256, ours, local);
    const direct = fresh.has(path.dirname(local));
    const temp = direct ? local : tempName(local);
    try {
      // Asynchronous, side by side: creating a file is the slow part, and the thread pool overlaps them.
      await fsp.writeFile(temp, r.data, { flag: "wx", mode: jobs[i].mode & 0o777 });
      if (!direct) await fsp.rename(temp, local);
    } catch (e) {
      await fsp.rm(temp, { force: true });
      throw e;
    }
    progress.add(r.data.length, true);
    return { path: local, size: r.data.length, sha256: r.sha256 };
  }));
}

/** Writes all of `chunk` at the file's position. */
async function writeAll(out: fsp.FileHandle, chunk: Uint8Array): Promise<void> {
  let written = 0;
  while (written < chunk.length) written += (await out.write(chunk, written, chunk.length - written)).bytesWritten;
}

async function download(
  session: RemoteSession,
  job: CopyJob,
  progress: Progress,
  signal: AbortSignal,
): Promise<Copied> {
  const hash = crypto.createHash("sha256");
  let remoteDigest = "";
  const temp = tempName(job.local);
  const out = await fsp.open(temp, "wx", job.mode & 0o777);
  let size = 0;
  try {
    try {
      // Each chunk is hashed and written before the next is asked for: its memory may carry a later one.
      for await (
        const chunk of session.files.readStream(job.remote, {
          onSha256: (hex) => (remoteDigest = hex),
          reuseChunks: true,
          signal,
        })
      ) {
        // The write runs on the thread pool while this thread hashes the same bytes.
        const writing = writeAll(out, chunk);
        hash.update(chunk);
        await writing;
        size += chunk.length;
        progress.add(chunk.length);
      }
    } finally {
      await out.close();
    }
    const ours = hash.digest("hex");
    if (ours !== remoteDigest) throw mismatch(job.remote, remoteDigest, ours, job.local);
    await fsp.rename(temp, job.local);
  } catch (e) {
    await fsp.rm(temp, { force: true });
    throw e;
  }
  progress.add(0, true);
  return { path: job.local, size, sha256: remoteDigest };
}

/** Adds one entry of a local tree to an upload's plan, bound for `remote`. */
function addUpload(plan: CopyPlan, e: TreeEntry, local: string, remote: string): void {
  const { size, mode, mtimeMs } = e;
  if (e.kind === "directory") {
    plan.dirs.push(remote);
    plan.dirModes.push({ path: remote, mode, mtimeMs });
  } else if (e.kind === "file") plan.jobs.push({ local, remote, size, mode, mtimeMs });
  else if (e.kind === "symlink") plan.links.push({ local, remote, target: e.target! });
  else plan.skipped.push({ path: local, why: e.why! });
}

/**
 * Adds the entries a server listed under `remote` to a download's plan, bound for `into`. Each must be
 * a plain name (see {@link localPathFor}) under a directory listed before it: a server that lists a
 * symlink `a` and then `a/passwd` could otherwise have the copy write through the link it just made.
 */
function addDownloads(plan: CopyPlan, entries: ListEntry[], remote: string, into: string, follow: boolean): void {
  const directories = new Set(["."]);
  for (const e of entries) {
    const local = localPathFor(into, e.path);
    const parent = path.posix.dirname(e.path);
    if (!directories.has(parent)) {
      throw new CommandFailure(
        "unsafe-listing",
        `the server listed ${JSON.stringify(escapeControls(e.path))} under ${
          JSON.stringify(escapeControls(parent))
        }, which it did not list as a directory; nothing was copied (is the server compromised?)`,
        CP_EXIT,
      );
    }
    const { size, mtimeMs } = e, mode = e.mode ?? 0o644, from = remoteJoin(remote, e.path);
    if (e.type === "directory") {
      directories.add(e.path);
      plan.dirs.push(local);
      plan.dirModes.push({ path: local, mode, mtimeMs });
    } else if (e.type === "file" || (e.type === "symlink" && follow)) {
      plan.jobs.push({ local, remote: from, size, mode, mtimeMs });
    } else if (e.type === "symlink" && e.target !== undefined) {
      plan.links.push({ local, remote: from, target: e.target });
    } else plan.skipped.push({ path: from, why: "not a file, directory or symlink" });
  }
}

/** What the operands ask for, checked before any connection. */
interface CopyRequest {
  uploading: boolean;
  address: { host: string; port: number };
  /** The sources' paths: local ones for an upload, remote ones for a download. */
  sources: string[];
  /** The destination's path: remote for an upload, local for a download. */
  dest: string;
  recursive: boolean;
  /** -L: copy what symlinks point to, not the links. */
  follow: boolean;
  /** -p: set modes exactly (no umask) and keep modification times. */
  preserve: boolean;
  /** Files in flight at once. */
  jobs: number;
  json: boolean;
}

/**
 * What to copy: directories to make (parents first, with their sources' modes and times in
 * `dirModes`), files, symlinks, and what cannot be copied (`skipped`, with why); `roots` is the top of
 * each tree copied up.
 */
interface CopyPlan {
  dirs: string[];
  dirModes: Array<{ path: string; mode: number; mtimeMs: number }>;
  jobs: CopyJob[];
  links: LinkJob[];
  skipped: Array<{ path: string; why: string }>;
  roots: string[];
}

const emptyPlan = (): CopyPlan => ({ dirs: [], dirModes: [], jobs: [], links: [], skipped: [], roots: [] });

/** Reads the operands: every source local and DEST remote (an upload), or the other way round, on one server. */
function parseOperands(operands: string[], flags: Flags): CopyRequest {
  if (operands.length < 2) {
    throw new CommandFailure(
      "usage",
      "cp needs a source and a destination: agent cp SOURCE... DEST (one of them HOST[:PORT]:PATH)",
      CP_EXIT,
    );
  }
  const dest = operands[operands.length - 1];
  const sources = operands.slice(0, -1);
  const remoteDest = parseRemote(dest);
  const remoteSources = sources.map(parseRemote);
  const uploading = remoteDest !== null;
  if (uploading ? remoteSources.some((r) => r !== null) : remoteSources.some((r) => r === null)) {
    throw new CommandFailure(
      "usage",
      "cp copies between this machine and one server: either every source is local and DEST is HOST:PATH, or every source is HOST:PATH and DEST is local",
      CP_EXIT,
    );
  }
  const addresses = new Set(uploading ? [remoteDest.address] : remoteSources.map((r) => r!.address));
  if (addresses.size > 1) throw new CommandFailure("usage", "all remote operands must name the same server", CP_EXIT);
  return {
    uploading,
    address: parseAddress([...addresses][0], CP_EXIT.usage),
    sources: uploading ? sources : remoteSources.map((r) => r!.path),
    dest: uploading ? remoteDest.path : dest,
    recursive: Boolean(flags.recursive),
    follow: Boolean(flags.dereference),
    preserve: Boolean(flags.preserve),
    jobs: Math.max(1, Number(flags.jobs ?? DEFAULT_JOBS) | 0),
    json: Boolean(flags.json),
  };
}

/** Each local source of an upload, checked before connecting: a missing source should not cost a connection. */
async function statLocalSources(sources: string[], recursive: boolean): Promise<Map<string, fs.Stats>> {
  const stats = new Map<string, fs.Stats>();
  for (const s of sources) {
    const st = await fsp.stat(s).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") throw new CommandFailure("local-not-found", `${s}: no such file or directory`, CP_EXIT);
      throw e;
    });
    if (st.isDirectory() && !recursive) {
      throw new CommandFailure("local-is-directory", `${s} is a directory (add -r to copy directories)`, CP_EXIT);
    }
    if (!st.isDirectory() && !st.isFile()) {
      throw new CommandFailure("usage", `${s} is neither a file nor a directory`, CP_EXIT);
    }
    stats.set(s, st);
  }
  return stats;
}

/** One copy over an open session, step by step: plan, make the directories, transfer the files. */
class Copy {
  /** Aborted when the copy is interrupted: transfers stop, and each removes its temporary file. */
  constructor(readonly session: RemoteSession, readonly request: CopyRequest, readonly signal: AbortSignal) {}

  /** What to make and copy: found on the server for a download, here (`sourceStats`) for an upload. */
  plan(sourceStats: ReadonlyMap<string, fs.Stats>): Promise<CopyPlan> {
    return this.request.uploading ? this.#planUpload(sourceStats) : this.#planDownload();
  }

  async #planUpload(sourceStats: ReadonlyMap<string, fs.Stats>): Promise<CopyPlan> {
    const { dest: target, sources } = this.request;
    const plan = emptyPlan();
    const destType = await remoteType(this.session, target).catch((e) => fail(e, CP_EXIT, target));
    if (sources.length > 1 && destType !== "directory") {
      throw new CommandFailure(
        "remote-not-directory",
        `${target}: not a directory on the server (needed for several sources)`,
        CP_EXIT,
      );
    }
    if (target.endsWith("/") && destType !== "directory") {
      throw new CommandFailure(
        destType ? "remote-not-directory" : "remote-not-found",
        `${target}: no such directory on the server`,
        CP_EXIT,
      );
    }
    for (const s of sources) {
      const into = destType === "directory" ? remoteJoin(target, path.basename(path.resolve(s))) : target;
      const st = sourceStats.get(s)!;
      const { size, mtimeMs } = st, mode = st.mode & 0o7777;
      if (st.isFile()) {
        plan.jobs.push({ local: s, remote: into, size, mode, mtimeMs });
        continue;
      }
      plan.roots.push(into);
      plan.dirs.push(into);
      plan.dirModes.push({ path: into, mode, mtimeMs });
      for (const e of localTree(s, this.request.follow)) {
        addUpload(plan, e, path.join(s, e.rel), remoteJoin(into, ...e.rel.split(path.sep)));
      }
    }
    return plan;
  }

  async #planDownload(): Promise<CopyPlan> {
    const { dest, sources } = this.request;
    const plan = emptyPlan();
    const single = sources.length === 1;
    const destType = await localType(dest);
    if ((!single || dest.endsWith("/")) && destType !== "directory") {
      throw new CommandFailure(
        "local-not-found",
        `${dest}: not a directory here${single ? "" : " (needed for several sources)"}`,
        CP_EXIT,
      );
    }
    for (const remote of sources) {
      const base = path.posix.basename(remote === "." ? "copy" : remote);
      await this.#planRemoteSource(plan, remote, destType === "directory" ? path.join(dest, base) : dest);
    }
    return plan;
  }

  /** Adds the remote file `remote`, or the tree under it with -r, copied down to `into`. */
  async #planRemoteSource(plan: CopyPlan, remote: string, into: string): Promise<void> {
    let info;
    try {
      info = await this.session.files.stat(remote);
    } catch (e) {
      fail(e, CP_EXIT, (e as Error).message?.includes(remote) ? undefined : remote); // name it once
    }
    const { size, mode, mtimeMs } = info;
    if (info.type === "file" || info.type === "symlink") {
      plan.jobs.push({ local: into, remote, size, mode, mtimeMs }); // a link named on the command line is followed
    } else if (info.type === "directory") {
      if (!this.request.recursive) {
        throw new CommandFailure(
          "remote-is-directory",
          `${remote} is a directory on the server (add -r to copy directories)`,
          CP_EXIT,
        );
      }
      plan.roots.push(into);
      plan.dirs.push(into);
      plan.dirModes.push({ path: into, mode, mtimeMs });
      addDownloads(plan, await this.session.files.list(remote, { recursive: true }), remote, into, this.request.follow);
    } else {
      throw new CommandFailure("usage", `${remote} is neither a file nor a directory on the server`, CP_EXIT);
    }
  }

  /**
   * Makes the plan's directories, parents before children (several at once: mkdir -p is idempotent).
   * Returns those this copy created: they hold nothing to replace, so their files need no temporary names.
   */
  async makeDirectories(plan: CopyPlan): Promise<Set<string>> {
    const fresh = new Set<string>();
    if (this.request.uploading) {
      for (const root of plan.roots) {
        if ((await remoteType(this.session, root)) === null) {
          plan.dirs.filter((d) => d === root || d.startsWith(`${root}/`)).forEach((d) => fresh.add(d));
        }
      }
      await eachLimited(plan.dirs, this.request.jobs, (d) => this.session.files.mkdir(d, { recursive: true }));
    } else {
      const roots = new Set(plan.roots);
      for (const d of plan.dirs) {
        if ((await fsp.mkdir(d, { recursive: true })) !== undefined) fresh.add(d); // undefined: it was there
        else if (!roots.has(d) && fs.lstatSync(d).isSymbolicLink()) {
          // An earlier copy may have made this link; a file listed under it must not be written through it.
          throw new CommandFailure(
            "unsafe-listing",
            `${d} is a symlink here where the server has a directory; nothing under it was copied`,
            CP_EXIT,
          );
        }
      }
    }
    return fresh;
  }

  /** Makes the plan's symlinks, each under a temporary name renamed into place (directly in a fresh directory). */
  async makeLinks(plan: CopyPlan, fresh: ReadonlySet<string>): Promise<void> {
    const files = this.session.files;
    await eachLimited(plan.links, this.request.jobs, async ({ local, remote, target }) => {
      throwIfAborted(this.signal);
      if (this.request.uploading) {
        if (fresh.has(path.posix.dirname(remote))) return await files.symlink(target, remote);
        const temp = tempName(remote);
        await files.symlink(target, temp);
        await files.move(temp, remote).catch(async (e) => {
          await files.delete(temp).catch(() => {});
          throw e;
        });
      } else {
        if (fresh.has(path.dirname(local))) return await fsp.symlink(target, local);
        const temp = tempName(local);
        await fsp.symlink(target, temp);
        await fsp.rename(temp, local).catch(async (e) => {
          await fsp.rm(temp, { force: true });
          throw e;
        });
      }
    });
  }

  /** -p: sets each file's and directory's mode exactly and its modification time, once all are written. */
  async preserve(plan: CopyPlan): Promise<void> {
    const files = this.session.files;
    const set = async (p: string, mode: number, mtimeMs: number) => {
      if (this.request.uploading) {
        await files.setMode(p, mode);
        await files.setTimes(p, { mtime: mtimeMs });
      } else {
        await fsp.chmod(p, mode);
        await fsp.utimes(p, new Date(), new Date(mtimeMs));
      }
    };
    const where = (j: CopyJob) => (this.request.uploading ? j.remote : j.local);
    await eachLimited(plan.jobs, this.request.jobs, (j) => set(where(j), j.mode, j.mtimeMs));
    // A directory's time last: making the files and links in it changed it.
    await eachLimited(plan.dirModes, this.request.jobs, (d) => set(d.path, d.mode, d.mtimeMs));
  }

  /** Copies the plan's files: small ones many to a request, larger ones streamed, several at once. */
  async transfer(plan: CopyPlan, fresh: ReadonlySet<string>): Promise<Copied[]> {
    const { uploading, jobs, json } = this.request;
    const session = this.session;
    const progress = new Progress(
      { files: plan.jobs.length, bytes: plan.jobs.reduce((n, j) => n + j.size, 0) },
      !json && process.stderr.isTTY === true,
    );
    const copied: Copied[] = [];
    const signal = this.signal;
    // Settled, not raced: after a failure or an interrupt each running transfer still removes its temporary file.
    const settled = await Promise.allSettled([
      eachLimited(this.#smallBatches(plan, fresh), Math.ceil(jobs / 4), async (group) => {
        throwIfAborted(signal);
        copied.push(
          ...await (uploading
            ? uploadSmall(session, group, progress, fresh)
            : downloadSmall(session, group, progress, fresh)),
        );
      }),
      eachLimited(plan.jobs.filter((j) => j.size > SMALL_FILE), jobs, async (job) => {
        throwIfAborted(signal);
        copied.push(
          await (uploading ? upload(session, job, progress, signal) : download(session, job, progress, signal)),
        );
      }),
    ]);
    progress.end();
    for (const s of settled) if (s.status === "rejected") throw s.reason;
    return copied;
  }

  /** The small files in batches, those bound for fresh directories apart from the others. */
  #smallBatches(plan: CopyPlan, fresh: ReadonlySet<string>): CopyJob[][] {
    const parent = (j: CopyJob) => (this.request.uploading ? path.posix.dirname(j.remote) : path.dirname(j.local));
    const small = plan.jobs.filter((j) => j.size <= SMALL_FILE);
    const batches: CopyJob[][] = [];
    for (const part of [small.filter((j) => fresh.has(parent(j))), small.filter((j) => !fresh.has(parent(j)))]) {
      for (let i = 0; i < part.length; i += SMALL_BATCH) batches.push(part.slice(i, i + SMALL_BATCH));
    }
    return batches;
  }
}

/** Says what was copied: one JSON object with --json; else a line on a terminal, nothing when no one watches. */
function report(request: CopyRequest, plan: CopyPlan, copied: Copied[], seconds: number): void {
  const bytes = copied.reduce((n, c) => n + c.size, 0);
  if (request.json) {
    process.stdout.write(
      safeJson({
        ok: plan.skipped.length === 0,
        direction: request.uploading ? "upload" : "download",
        files: copied.length,
        symlinks: plan.links.length,
        bytes,
        seconds: Number(seconds.toFixed(3)),
        copied,
        skipped: plan.skipped.map((s) => s.path),
      }) + "\n",
    );
  } else if (!process.stderr.isTTY) {
    // Quiet when no one watches, as cp and scp are.
  } else if (copied.length === 1 && !request.recursive) {
    process.stderr.write(
      `${copied[0].path}: ${copied[0].size} bytes, sha256 ${copied[0].sha256} (checked on both ends)\n`,
    );
  } else {
    process.stderr.write(
      `${copied.length} files, ${bytes} bytes in ${seconds.toFixed(2)} s, each checked by SHA-256 on both ends\n`,
    );
  }
}

/**
 * Ctrl-C, SIGTERM and SIGHUP abort the copy instead of ending this process at once, so that it removes
 * its temporary files and ends its session. Returns the signal's name once one came, and the cleanup.
 */
function interruptible(controller: AbortController): { received: () => string | null; stop: () => void } {
  let received: string | null = null;
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((name) => {
    const handler = () => {
      received ??= name;
      controller.abort();
    };
    process.on(name, handler);
    return () => process.off(name, handler);
  });
  return { received: () => received, stop: () => handlers.forEach((off) => off()) };
}

export async function cpCommand(operands: string[], flags: Flags): Promise<number> {
  const request = parseOperands(operands, flags);
  const sourceStats = request.uploading ? await statLocalSources(request.sources, request.recursive) : new Map();
  const { agent, session } = await openRemote(request.address, flags, CP_EXIT);
  const started = performance.now();
  const controller = new AbortController();
  // Every request in flight listens on the signal: each of `jobs` transfers keeps up to a window of
  // them, more than Node's default of 10, past which Node prints a leak warning on stderr.
  setMaxListeners((request.jobs + 1) * (TRANSFER_WINDOW_MAX_BYTES / TRANSFER_CHUNK + 2), controller.signal);
  const interrupt = interruptible(controller);
  let copied: Copied[], plan: CopyPlan;
  try {
    const copy = new Copy(session, request, controller.signal);
    plan = await copy.plan(sourceStats);
    const fresh = await copy.makeDirectories(plan);
    copied = await copy.transfer(plan, fresh);
    await copy.makeLinks(plan, fresh);
    if (request.preserve) await copy.preserve(plan);
  } catch (e) {
    const signal = interrupt.received();
    if (signal) {
      const number = (os.constants.signals as Record<string, number>)[signal];
      throw new ExitError(128 + number, `interrupted by ${signal}; the unfinished files were removed`);
    }
    fail(e, CP_EXIT);
  } finally {
    await session.close().catch(() => {});
    agent.close();
    interrupt.stop();
  }
  report(request, plan, copied, (performance.now() - started) / 1000);
  if (plan.skipped.length === 0) return 0;
  // Said here, not thrown: --json has already printed its one object, with these in `skipped`.
  const list = plan.skipped.map((s) => `${s.path} (${s.why})`).join(", ");
  process.stderr.write(`agent: not copied, as cp cannot copy them: ${escapeControls(list)}\n`);
  return CP_EXIT.skipped;
}
