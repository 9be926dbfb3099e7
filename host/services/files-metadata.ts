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
import { requireString } from "../errors.ts";
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

/** A glob (`*`, `?`, `**`) as a regular expression over '/'-separated relative paths. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += glob[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += glob[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
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
      const mode = typeof fields.mode === "number" ? fields.mode : undefined;
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
      await fs.promises.cp(at(fields, "from"), at(fields, "to"), {
        recursive: true,
        force: overwrite,
        errorOnExist: !overwrite,
      });
    },
    [ServiceCode.FileMove]: ({ fields }) => move(at(fields, "from"), at(fields, "to")),
    [ServiceCode.FileSetTimes]: async ({ fields }) => {
      const p = at(fields);
      const st = await fs.promises.stat(p);
      const atime = Number(fields.atimeMs ?? st.atimeMs) / 1000, mtime = Number(fields.mtimeMs ?? st.mtimeMs) / 1000;
      await fs.promises.utimes(p, atime, mtime);
    },
    [ServiceCode.FileSetMode]: async ({ fields }) => {
      await fs.promises.chmod(at(fields), Number(fields.mode));
    },
    [ServiceCode.FileSha256]: async ({ fields }) => ({ fields: await sha256File(at(fields)) }),
    [ServiceCode.FileSymlink]: async ({ fields }) => {
      await fs.promises.symlink(requireString(fields, "target"), at(fields));
    },
  };
}

/** The entries under `root` that the request's masks keep, in name order, into subdirectories if asked. */
async function list(root: string, fields: Unchecked<RequestOf<ServiceCode.FileList>>): Promise<ListEntry[]> {
  const include = ((fields.include as string[] | undefined) ?? []).map(globToRegExp);
  const exclude = ((fields.exclude as string[] | undefined) ?? []).map(globToRegExp);
  const recursive = fields.recursive === true;
  const entries: ListEntry[] = [];
  const walk = async (dir: string, rel: string) => {
    // One directory at a time synchronously (a thread-pool hop per lstat costs ten times the
    // lstat), yielding between directories so a large tree does not hold up the session.
    await new Promise((r) => setImmediate(r));
    const names = fs.readdirSync(dir).sort();
    const kept = names.map((name) => ({ name, relPath: rel ? `${rel}/${name}` : name })).filter((e) =>
      !exclude.some((r) => r.test(e.relPath))
    );
    const stats = kept.map((e) => lstatIfThere(path.join(dir, e.name)));
    for (const [i, e] of kept.entries()) {
      const st = stats[i];
      if (!st) continue;
      if (include.length === 0 || include.some((r) => r.test(e.relPath))) {
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
    await fs.promises.cp(from, to, { recursive: true });
    await fs.promises.rm(from, { recursive: true });
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
