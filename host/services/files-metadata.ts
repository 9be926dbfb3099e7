/**
 * The files service's requests on paths: metadata, listing with masks,
 * whole-tree operations and SHA-256. Each takes a path the session's product
 * root resolves.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { type RequestOf, ServiceCode } from "../../core/session/contract.ts";
import { ServiceError } from "../../core/errors.ts";
import { optionalFinite, optionalMode, requireString } from "../errors.ts";
import { loadOnFirstUse } from "../../runtime/lazy.ts";
import type { ServiceHandlers, Unchecked } from "./types.ts";

// node:crypto is loaded when a request first needs a digest, and fs.promises (Node loads it on
// first use) when one first needs a file: an idle host carries neither (runtime/lazy.ts).
export const nodeCrypto = loadOnFirstUse(() => import("node:crypto"));

/** A request path as an absolute one (relative paths are under the product root). */
export type Resolve = (p: string) => string;

type EntryType = "file" | "directory" | "symlink" | "other";
type ListEntry = { path: string; type: EntryType; size: number; mtimeMs: number; mode: number; target?: string };

/** A symlink's target, when `st` (of `p`) is one. */
function linkTarget(p: string, st: fs.Stats): { target?: string } {
  if (!st.isSymbolicLink()) return {};
  try {
    return { target: fs.readlinkSync(p) };
  } catch {
    return {}; // replaced while listing
  }
}

function typeOf(st: fs.Stats): EntryType {
  return st.isFile() ? "file" : st.isDirectory() ? "directory" : st.isSymbolicLink() ? "symlink" : "other";
}

/** Most masks a listing takes in each of include and exclude, and the longest mask. */
export const MAX_MASKS = 256;
export const MAX_MASK_LENGTH = 1024;

/** One step of a compiled glob: a character, `?`, `*`, `**`, or `**\/` (nothing, or anything ending in '/'). */
type GlobStep = string | "?" | "*" | "**" | "**/";

/** A glob's steps; `*`, `?` and `**` are the only special characters (docs/protocol.md §6 "list"). */
function globSteps(glob: string): GlobStep[] {
  const steps: GlobStep[] = [];
  for (let i = 0; i < glob.length; i++) {
    if (glob[i] === "*" && glob[i + 1] === "*") {
      const dirs = glob[i + 2] === "/";
      steps.push(dirs ? "**/" : "**");
      i += dirs ? 2 : 1;
    } else steps.push(glob[i] === "*" ? "*" : glob[i] === "?" ? "?" : glob[i]);
  }
  return steps;
}

/**
 * A glob (`*`, `?`, `**`) as a test of '/'-separated relative paths. It runs every position of the
 * glob side by side (a set of states, not backtracking), so a test takes at most glob length × path
 * length steps: `a*a*a*a*b` against a long name cannot take exponential time.
 */
export function globMatcher(glob: string): (relPath: string) => boolean {
  const steps = globSteps(glob);
  const special = (s: GlobStep) => s === "?" || s === "*" || s === "**" || s === "**/";
  // A literal '?' or '*' cannot occur: globSteps turned those into special steps.
  const literal = steps.map((s) => (special(s) ? null : s));
  const n = steps.length;
  /** Adds the states reachable from those in `states` without reading a character. */
  const close = (states: Uint8Array) => {
    for (let i = 0; i < n; i++) if (states[i] && literal[i] === null && steps[i] !== "?") states[i + 1] = 1;
    return states;
  };
  return (relPath) => {
    let states = close(Object.assign(new Uint8Array(n + 1), { 0: 1 }));
    for (const c of relPath) {
      const next = new Uint8Array(n + 1);
      let any = false;
      for (let i = 0; i < n; i++) {
        if (!states[i]) continue;
        const s = steps[i];
        const moves = literal[i] !== null ? literal[i] === c : s === "?" ? c !== "/" : false;
        const stays = s === "**" || s === "**/" || (s === "*" && c !== "/");
        if (moves) next[i + 1] = 1;
        if (stays) next[i] = 1;
        if (s === "**/" && c === "/") next[i + 1] = 1;
        any ||= moves || stays;
      }
      if (!any) return false;
      states = close(next);
    }
    return states[n] === 1;
  };
}

/** A request's `include` or `exclude`: at most {@link MAX_MASKS} globs of at most {@link MAX_MASK_LENGTH} characters. */
function masks(value: unknown, name: string): Array<(relPath: string) => boolean> {
  if (value === undefined || value === null) return [];
  const ok = Array.isArray(value) && value.length <= MAX_MASKS &&
    value.every((m) => typeof m === "string" && m.length <= MAX_MASK_LENGTH);
  if (!ok) {
    throw new ServiceError(
      "invalid-argument",
      `"${name}" must be a list of at most ${MAX_MASKS} globs of at most ${MAX_MASK_LENGTH} characters`,
    );
  }
  return (value as string[]).map(globMatcher);
}

/** Handlers of the requests on paths, resolving each with `resolve`. */
export function metadataHandlers(resolve: Resolve): ServiceHandlers {
  const at = (fields: Record<string, unknown>, name = "path") => resolve(requireString(fields, name));
  return {
    [ServiceCode.FileStat]: async ({ fields }) => {
      const p = at(fields);
      const st = await fs.promises.lstat(p);
      const mode = st.mode & 0o7777;
      const { mtimeMs, atimeMs } = st;
      return { fields: { path: p, type: typeOf(st), size: st.size, mode, mtimeMs, atimeMs, ...linkTarget(p, st) } };
    },
    [ServiceCode.FileList]: async ({ fields }) => ({ fields: { entries: await list(at(fields), fields) } }),
    [ServiceCode.FileMkdir]: async ({ fields }) => {
      const mode = optionalMode(fields);
      await fs.promises.mkdir(at(fields), { recursive: fields.recursive !== false, mode });
    },
    [ServiceCode.FileDelete]: async ({ fields }) => {
      const p = at(fields);
      const st = await fs.promises.lstat(p);
      if (st.isDirectory()) {
        await (fields.recursive === true ? fs.promises.rm(p, { recursive: true }) : fs.promises.rmdir(p));
      } else await fs.promises.unlink(p);
    },
    [ServiceCode.FileCopy]: async ({ fields }) => {
      const overwrite = fields.overwrite !== false;
      await copyTree(at(fields, "from"), at(fields, "to"), { force: overwrite, errorOnExist: !overwrite });
    },
    [ServiceCode.FileMove]: ({ fields }) => move(at(fields, "from"), at(fields, "to")),
    [ServiceCode.FileSetTimes]: async ({ fields }) => {
      const p = at(fields);
      const st = await fs.promises.stat(p);
      const atimeMs = optionalFinite(fields, "atimeMs") ?? st.atimeMs;
      const mtimeMs = optionalFinite(fields, "mtimeMs") ?? st.mtimeMs;
      const atime = atimeMs / 1000, mtime = mtimeMs / 1000;
      await fs.promises.utimes(p, atime, mtime);
    },
    [ServiceCode.FileSetMode]: async ({ fields }) => {
      const mode = optionalMode(fields);
      if (mode === undefined) throw new ServiceError("invalid-argument", `"mode" is required`);
      await fs.promises.chmod(at(fields), mode);
    },
    [ServiceCode.FileSha256]: async ({ fields }) => ({ fields: await sha256File(at(fields)) }),
    [ServiceCode.FileSymlink]: async ({ fields }) => {
      await fs.promises.symlink(requireString(fields, "target"), at(fields));
    },
  };
}

/** The entries under `root` that the request's masks keep, in name order, into subdirectories if asked. */
async function list(root: string, fields: Unchecked<RequestOf<ServiceCode.FileList>>): Promise<ListEntry[]> {
  const include = masks(fields.include, "include");
  const exclude = masks(fields.exclude, "exclude");
  const recursive = fields.recursive === true;
  const entries: ListEntry[] = [];
  const walk = async (dir: string, rel: string) => {
    // One directory at a time synchronously (a thread-pool hop per lstat costs ten times the
    // lstat), yielding between directories so a large tree does not hold up the session.
    await new Promise((r) => setImmediate(r));
    const names = fs.readdirSync(dir).sort();
    const kept = names.map((name) => ({ name, relPath: rel ? `${rel}/${name}` : name })).filter((e) =>
      !exclude.some((matches) => matches(e.relPath))
    );
    const stats = kept.map((e) => lstatIfThere(path.join(dir, e.name)));
    for (const [i, e] of kept.entries()) {
      const st = stats[i];
      if (!st) continue;
      if (include.length === 0 || include.some((matches) => matches(e.relPath))) {
        const { size, mtimeMs } = st;
        const target = linkTarget(path.join(dir, e.name), st);
        entries.push({ path: e.relPath, type: typeOf(st), size, mtimeMs, mode: st.mode & 0o7777, ...target });
      }
      if (recursive && st.isDirectory()) await walk(path.join(dir, e.name), e.relPath);
    }
  };
  const st = await fs.promises.stat(root);
  if (!st.isDirectory()) throw new ServiceError("not-a-directory", `${root}: not a directory`, root);
  await walk(root, "");
  return entries;
}

function lstatIfThere(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null; // vanished while listing
  }
}

/** Renames `from` to `to`; across file systems, copies and then removes. */
async function move(from: string, to: string): Promise<void> {
  try {
    await fs.promises.rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    await copyTree(from, to, {});
    await fs.promises.rm(from, { recursive: true });
  }
}

/**
 * Copies `from` to `to`, into subdirectories. fs.cp refuses with codes of its own (ERR_FS_CP_EEXIST,
 * ...) that carry the system error they stand for: reported as that error, so a client gets
 * already-exists, is-a-directory and so on; copying a directory into itself is invalid-argument.
 */
async function copyTree(from: string, to: string, options: { force?: boolean; errorOnExist?: boolean }) {
  try {
    await fs.promises.cp(from, to, { recursive: true, ...options });
  } catch (e) {
    const err = e as { code?: unknown; message?: string; info?: { code?: unknown; path?: string } };
    const system = err?.info?.code;
    if (typeof err?.code !== "string" || !err.code.startsWith("ERR_FS_") || typeof system !== "string") throw e;
    if (system === "EINVAL") throw new ServiceError("invalid-argument", err.message ?? "cannot copy", err.info?.path);
    throw Object.assign(new Error(err.message), { code: system, path: err.info?.path });
  }
}

/** The SHA-256 (hex) and size of the file at `p`, read in 1 MiB pieces. */
async function sha256File(p: string): Promise<{ sha256: string; size: number }> {
  const hash = (await nodeCrypto()).createHash("sha256");
  const fh = await fs.promises.open(p, "r");
  try {
    const buf = new Uint8Array(1024 * 1024);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { sha256: hash.digest("hex"), size };
  } finally {
    await fh.close();
  }
}
