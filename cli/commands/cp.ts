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
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { RemoteSession } from "../../core/client/remote-session.ts";
import { eachLimited } from "../../core/concurrency.ts";
import { NotFoundError } from "../../core/errors.ts";
import type { Flags } from "../../agent/config.ts";
import { CommandFailure, type Failure } from "../errors.ts";
import { fail, openRemote, parseAddress } from "./remote.ts";

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
  "remote-not-directory": 22,
  "permission-denied": 23,
  "local-not-found": 24,
  "local-disk-full": 25,
  "checksum-mismatch": 26,
};

/** Files in flight at once when copying a tree. */
const DEFAULT_JOBS = 16;
/** Local reads and writes in pieces this large. */
const LOCAL_CHUNK = 1024 * 1024;
/** Files up to this size travel many to a request (files.writeFiles / readFiles). */
const SMALL_FILE = 64 * 1024;
/** Small files per batch: enough to fill a request, few enough that several batches overlap. */
const SMALL_BATCH = 256;

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

let temps = 0;
/** A name beside `file` that no other copy uses: ours by pid, then a counter. */
const tempName = (file: string) =>
  path.join(path.dirname(file), `.${path.basename(file)}.agent-cp-${process.pid}-${temps++}`);

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

async function upload(session: RemoteSession, job: CopyJob, progress: Progress): Promise<Copied> {
  const hash = crypto.createHash("sha256");
  let remoteDigest = "";
  const temp = tempName(job.remote);
  async function* chunks() {
    const stream = fs.createReadStream(job.local, { highWaterMark: LOCAL_CHUNK });
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      hash.update(chunk);
      progress.add(chunk.length);
      yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    }
  }
  let size: number;
  try {
    size = await session.files.writeFile(temp, chunks(), { onSha256: (hex) => (remoteDigest = hex) });
    const ours = hash.digest("hex");
    if (ours !== remoteDigest) throw mismatch(job.remote, remoteDigest, ours, "the remote file");
    await session.files.move(temp, job.remote);
  } catch (e) {
    await session.files.delete(temp).catch(() => {});
    throw e;
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
  const files = jobs.map((j) => ({ path: j.remote, data: new Uint8Array(fs.readFileSync(j.local)) })); // small: synchronous reads are cheaper
  const written = await session.files.writeFiles(files, {
    exclusive: jobs.every((j) => fresh.has(path.posix.dirname(j.remote))),
  });
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
      await fsp.writeFile(temp, r.data, { flag: "wx", mode: 0o644 });
      if (!direct) await fsp.rename(temp, local);
    } catch (e) {
      await fsp.rm(temp, { force: true });
      throw e;
    }
    progress.add(r.data.length, true);
    return { path: local, size: r.data.length, sha256: r.sha256 };
  }));
}

async function download(session: RemoteSession, job: CopyJob, progress: Progress): Promise<Copied> {
  const hash = crypto.createHash("sha256");
  let remoteDigest = "";
  const temp = tempName(job.local);
  const out = await fsp.open(temp, "wx", 0o644);
  let size = 0;
  try {
    try {
      // Each chunk is hashed and written before the next is asked for: its memory may carry a later one.
      for await (
        const chunk of session.files.readStream(job.remote, {
          onSha256: (hex) => (remoteDigest = hex),
          reuseChunks: true,
        })
      ) {
        hash.update(chunk);
        let written = 0;
        while (written < chunk.length) {
          written += (await out.write(chunk, written, chunk.length - written)).bytesWritten;
        }
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

/**
 * Every file and directory under a local directory, parents before children. Synchronous: a
 * thread-pool hop per stat costs ten times the stat.
 */
function localTree(root: string): { dirs: string[]; files: Array<{ rel: string; size: number }> } {
  const dirs: string[] = [], files: Array<{ rel: string; size: number }> = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = rel ? path.join(rel, entry.name) : entry.name;
      if (entry.isDirectory()) {
        dirs.push(child);
        walk(child);
      } else if (entry.isFile()) {
        files.push({ rel: child, size: fs.statSync(path.join(root, child)).size });
      }
    }
  };
  walk("");
  return { dirs, files };
}

export async function cpCommand(operands: string[], flags: Flags): Promise<number> {
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
  const addresses = new Set(uploading ? [remoteDest!.address] : remoteSources.map((r) => r!.address));
  if (addresses.size > 1) throw new CommandFailure("usage", "all remote operands must name the same server", CP_EXIT);
  const address = parseAddress([...addresses][0], CP_EXIT.usage);
  const recursive = Boolean(flags.recursive);
  const jobs = Math.max(1, Number(flags.jobs ?? DEFAULT_JOBS) | 0);
  const json = Boolean(flags.json);

  // Local checks first: a missing source should not cost a connection.
  const sourceStats = new Map<string, fs.Stats>();
  if (uploading) {
    for (const s of sources) {
      const st = await fsp.stat(s).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") {
          throw new CommandFailure("local-not-found", `${s}: no such file or directory`, CP_EXIT);
        }
        throw e;
      });
      if (st.isDirectory() && !recursive) {
        throw new CommandFailure("remote-is-directory", `${s} is a directory (add -r to copy directories)`, CP_EXIT);
      }
      if (!st.isDirectory() && !st.isFile()) {
        throw new CommandFailure("usage", `${s} is neither a file nor a directory`, CP_EXIT);
      }
      sourceStats.set(s, st);
    }
  }

  const { agent, session } = await openRemote(address, flags, CP_EXIT);
  const started = performance.now();
  const copied: Copied[] = [];
  try {
    /** `roots`: the top directory of each tree copied up, which may or may not exist yet. */
    const plan: { dirs: string[]; jobs: CopyJob[]; roots: string[] } = { dirs: [], jobs: [], roots: [] };
    const single = sources.length === 1;
    if (uploading) {
      const target = remoteDest!.path;
      const destType = await remoteType(session, target).catch((e) => fail(e, CP_EXIT, target));
      if (!single && destType !== "directory") {
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
        const base = path.basename(path.resolve(s));
        const into = destType === "directory" ? remoteJoin(target, base) : target;
        const st = sourceStats.get(s)!;
        if (st.isFile()) {
          plan.jobs.push({ local: s, remote: into, size: st.size });
        } else {
          const tree = localTree(s);
          plan.roots.push(into);
          plan.dirs.push(into, ...tree.dirs.map((d) => remoteJoin(into, ...d.split(path.sep))));
          for (const f of tree.files) {
            plan.jobs.push({
              local: path.join(s, f.rel),
              remote: remoteJoin(into, ...f.rel.split(path.sep)),
              size: f.size,
            });
          }
        }
      }
    } else {
      const destType = await localType(dest);
      if ((!single || dest.endsWith("/")) && destType !== "directory") {
        throw new CommandFailure(
          "local-not-found",
          `${dest}: not a directory here${single ? "" : " (needed for several sources)"}`,
          CP_EXIT,
        );
      }
      for (const r of remoteSources) {
        const remote = r!.path;
        let info;
        try {
          info = await session.files.stat(remote);
        } catch (e) {
          fail(e, CP_EXIT, remote);
        }
        const base = path.posix.basename(remote === "." ? "copy" : remote);
        const into = destType === "directory" ? path.join(dest, base) : dest;
        if (info.type === "file") {
          plan.jobs.push({ local: into, remote, size: info.size });
        } else if (info.type === "directory") {
          if (!recursive) {
            throw new CommandFailure(
              "remote-is-directory",
              `${remote} is a directory on the server (add -r to copy directories)`,
              CP_EXIT,
            );
          }
          plan.dirs.push(into);
          const listed = await session.files.list(remote, { recursive: true });
          for (const e of listed) {
            const local = path.join(into, ...e.path.split("/"));
            if (e.type === "directory") plan.dirs.push(local);
            else if (e.type === "file") plan.jobs.push({ local, remote: remoteJoin(remote, e.path), size: e.size });
          }
        } else {
          throw new CommandFailure("usage", `${remote} is neither a file nor a directory on the server`, CP_EXIT);
        }
      }
    }

    const progress = new Progress(
      { files: plan.jobs.length, bytes: plan.jobs.reduce((n, j) => n + j.size, 0) },
      !json && process.stderr.isTTY === true,
    );
    // Directories first (parents before children, several at once: mkdir -p is idempotent), then the files.
    // Directories this copy creates hold nothing to replace: their files need no temporary names.
    const fresh = new Set<string>();
    if (uploading) {
      for (const root of plan.roots) {
        if ((await remoteType(session, root)) === null) {
          plan.dirs.filter((d) => d === root || d.startsWith(`${root}/`)).forEach((d) => fresh.add(d));
        }
      }
      await eachLimited(plan.dirs, jobs, (d) => session.files.mkdir(d, { recursive: true }));
    } else {
      for (const d of plan.dirs) if ((await fsp.mkdir(d, { recursive: true })) !== undefined) fresh.add(d); // undefined: it was there
    }
    // Small files go many to a request (those for fresh directories apart); larger ones stream, several at once.
    const parent = (j: CopyJob) => (uploading ? path.posix.dirname(j.remote) : path.dirname(j.local));
    const small = plan.jobs.filter((j) => j.size <= SMALL_FILE);
    const large = plan.jobs.filter((j) => j.size > SMALL_FILE);
    const groups: CopyJob[][] = [];
    for (const part of [small.filter((j) => fresh.has(parent(j))), small.filter((j) => !fresh.has(parent(j)))]) {
      for (let i = 0; i < part.length; i += SMALL_BATCH) groups.push(part.slice(i, i + SMALL_BATCH));
    }
    await Promise.all([
      eachLimited(groups, Math.ceil(jobs / 4), async (group) => {
        copied.push(
          ...await (uploading
            ? uploadSmall(session, group, progress, fresh)
            : downloadSmall(session, group, progress, fresh)),
        );
      }),
      eachLimited(large, jobs, async (job) => {
        copied.push(await (uploading ? upload(session, job, progress) : download(session, job, progress)));
      }),
    ]);
    progress.end();
  } catch (e) {
    fail(e, CP_EXIT);
  } finally {
    await session.close().catch(() => {});
    agent.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = copied.reduce((n, c) => n + c.size, 0);
  if (json) {
    process.stdout.write(
      JSON.stringify({
        ok: true,
        direction: uploading ? "upload" : "download",
        files: copied.length,
        bytes,
        seconds: Number(seconds.toFixed(3)),
        copied,
      }) + "\n",
    );
  } else if (!process.stderr.isTTY) {
    // Quiet when no one watches, as cp and scp are.
  } else if (copied.length === 1 && !recursive) {
    process.stderr.write(
      `${copied[0].path}: ${copied[0].size} bytes, sha256 ${copied[0].sha256} (checked on both ends)\n`,
    );
  } else {
    process.stderr.write(
      `${copied.length} files, ${bytes} bytes in ${seconds.toFixed(2)} s, each checked by SHA-256 on both ends\n`,
    );
  }
  return 0;
}
