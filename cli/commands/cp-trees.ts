/**
 * `agent cp`'s view of a local directory tree: every entry under it, parents before children, each a
 * file, a directory, a symlink (its target kept) or something cp cannot copy (and says so).
 * @module
 */
import fs from "node:fs";
import path from "node:path";

/** One entry under a copied directory; `rel` is relative to it. */
export interface TreeEntry {
  rel: string;
  kind: "file" | "directory" | "symlink" | "special";
  size: number;
  /** Permission bits (`st_mode & 0o7777`). */
  mode: number;
  mtimeMs: number;
  /** A symlink's target, as stored in it. */
  target?: string;
  /** Why a special entry is not copied: "FIFO", "socket", "dangling symlink"… */
  why?: string;
}

/** What a stat says an entry is, in the words a report uses. */
function specialKind(st: fs.Stats): string {
  if (st.isFIFO()) return "FIFO";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "character device";
  if (st.isBlockDevice()) return "block device";
  return "not a file, directory or symlink";
}

/**
 * The entries under `root`, parents first. Symlinks are entries of their own unless `follow`: then
 * each stands for what it points to, a dangling one or a loop is reported as special.
 * Synchronous: a thread-pool hop per stat costs ten times the stat.
 */
export function localTree(root: string, follow: boolean): TreeEntry[] {
  const entries: TreeEntry[] = [];
  const walk = (rel: string, ancestors: ReadonlySet<string>) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const child = rel ? path.join(rel, name) : name;
      const full = path.join(root, child);
      let st = fs.lstatSync(full);
      const entry = (kind: TreeEntry["kind"], extra: Partial<TreeEntry> = {}) =>
        entries.push({ rel: child, kind, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ...extra });
      if (st.isSymbolicLink() && !follow) {
        entry("symlink", { target: fs.readlinkSync(full) });
        continue;
      }
      if (st.isSymbolicLink()) {
        const followed = statIfThere(full);
        if (!followed) {
          entry("special", { why: "dangling symlink" });
          continue;
        }
        st = followed;
      }
      if (st.isDirectory()) {
        const real = fs.realpathSync(full);
        if (ancestors.has(real)) {
          entry("special", { why: "symlink loop" });
          continue;
        }
        entry("directory");
        walk(child, new Set([...ancestors, real]));
      } else if (st.isFile()) entry("file");
      else entry("special", { why: specialKind(st) });
    }
  };
  walk("", new Set([fs.realpathSync(root)]));
  return entries;
}

function statIfThere(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}
