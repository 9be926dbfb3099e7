/**
 * The files service: metadata, listing with masks, whole-tree operations,
 * SHA-256, and handles for reading and writing any size in chunks.
 * Every opened handle is tracked so the session can close it at the end.
 * @module
 */
import type { Hash } from "node:crypto";
import fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { BATCH_MAX_BYTES, BATCH_MAX_FILES, ServiceCode } from "../../core/session/contract.ts";
import { allocateUninitialized, concat } from "../../core/bytes.ts";
import { ServiceError } from "../../core/errors.ts";
import { requireString, withoutNul } from "../errors.ts";
import { loadOnFirstUse } from "../../runtime/lazy.ts";
import type { HostContext, ServiceHandlers } from "./types.ts";

// node:crypto is loaded when a request first needs a digest, and fs.promises (Node loads it on
// first use) when one first needs a file: an idle host carries neither (runtime/lazy.ts).
const nodeCrypto = loadOnFirstUse(() => import("node:crypto"));

/** Largest read one request may ask for (the frame payload limit leaves room for the envelope). */
export const MAX_READ = 1024 * 1024 - 1024;

/** A batch's list, checked for shape and size. */
function batchList(value: unknown, name: string): unknown[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > BATCH_MAX_FILES) {
    throw new ServiceError("invalid-argument", `${name} must be a list of 1 to ${BATCH_MAX_FILES} entries`);
  }
  return value;
}

const HANDLE_CODES = new Set<number>([
  ServiceCode.FileRead,
  ServiceCode.FileWrite,
  ServiceCode.FileSeek,
  ServiceCode.FileClose,
]);

interface OpenFile {
  handle: FileHandle;
  path: string;
  position: number;
  /** False for a FIFO, a character device or a socket: no positions; reads and writes go in order. */
  seekable: boolean;
  /** SHA-256 of the bytes read or written so far, while they come in order from the start (open with `sha256`). */
  digest: Hash | null;
  digested: number;
}

/** Feeds `bytes` at `position` to the handle's running digest; access out of order ends it. */
function digestBytes(f: OpenFile, position: number, bytes: Uint8Array): void {
  if (!f.digest || bytes.length === 0) return;
  if (position !== f.digested) {
    f.digest = null;
    return;
  }
  f.digest.update(bytes);
  f.digested += bytes.length;
}

/**
 * Where a read or write on `f` starts: the position the request asks for, or the handle's own (`own`),
 * which the read or write then moves on. A FIFO or a device has only its own.
 */
function startOf(f: OpenFile, asked: unknown): { position: number; own: boolean } {
  const own = !f.seekable || typeof asked !== "number";
  return { position: own ? f.position : (asked as number), own };
}

type EntryType = "file" | "directory" | "symlink" | "other";

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

export class FilesService {
  #open = new Map<number, OpenFile>();
  #nextHandle = 1;
  #nextTemp = 0;

  constructor(readonly context: HostContext) {}

  get openCount(): number {
    return this.#open.size;
  }

  /** Requests on one handle (read, write, seek, close) run in arrival order; everything else runs concurrently. */
  orderKey(code: number, fields: Record<string, unknown>): string | null {
    return HANDLE_CODES.has(code) ? `file:${fields.handle}` : null;
  }

  /** Closes every handle (session end). */
  async closeAll(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    await Promise.allSettled(all.map((f) => f.handle.close()));
  }

  #resolve(p: string): string {
    return path.resolve(this.context.productRoot, p);
  }

  #file(fields: Record<string, unknown>): OpenFile {
    const f = this.#open.get(Number(fields.handle));
    if (!f) throw new ServiceError("invalid-handle", `no open file with handle ${fields.handle}`);
    return f;
  }

  handlers(): ServiceHandlers {
    return {
      [ServiceCode.FileStat]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
        const st = await fs.promises.lstat(p);
        return {
          fields: {
            path: p,
            type: typeOf(st),
            size: st.size,
            mode: st.mode & 0o7777,
            mtimeMs: st.mtimeMs,
            atimeMs: st.atimeMs,
          },
        };
      },
      [ServiceCode.FileList]: async ({ fields }) => {
        const root = this.#resolve(requireString(fields, "path"));
        const include = ((fields.include as string[] | undefined) ?? []).map(globToRegExp);
        const exclude = ((fields.exclude as string[] | undefined) ?? []).map(globToRegExp);
        const recursive = fields.recursive === true;
        const entries: Array<{ path: string; type: EntryType; size: number; mtimeMs: number }> = [];
        const lstat = (p: string) => {
          try {
            return fs.lstatSync(p);
          } catch {
            return null; // vanished while listing
          }
        };
        const walk = async (dir: string, rel: string) => {
          // One directory at a time synchronously (a thread-pool hop per lstat costs ten times the
          // lstat), yielding between directories so a large tree does not hold up the session.
          await new Promise((r) => setImmediate(r));
          const names = fs.readdirSync(dir).sort();
          const kept = names.map((name) => ({ name, relPath: rel ? `${rel}/${name}` : name })).filter((e) =>
            !exclude.some((r) => r.test(e.relPath))
          );
          const stats = kept.map((e) => lstat(path.join(dir, e.name)));
          for (const [i, e] of kept.entries()) {
            const st = stats[i];
            if (!st) continue;
            if (include.length === 0 || include.some((r) => r.test(e.relPath))) {
              entries.push({ path: e.relPath, type: typeOf(st), size: st.size, mtimeMs: st.mtimeMs });
            }
            if (recursive && st.isDirectory()) await walk(path.join(dir, e.name), e.relPath);
          }
        };
        const st = await fs.promises.stat(root);
        if (!st.isDirectory()) throw new ServiceError("not-a-directory", `${root}: not a directory`, root);
        await walk(root, "");
        return { fields: { entries } };
      },
      [ServiceCode.FileMkdir]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
        await fs.promises.mkdir(p, {
          recursive: fields.recursive !== false,
          mode: typeof fields.mode === "number" ? fields.mode : undefined,
        });
      },
      [ServiceCode.FileDelete]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
        const st = await fs.promises.lstat(p);
        if (st.isDirectory()) {
          await (fields.recursive === true ? fs.promises.rm(p, { recursive: true }) : fs.promises.rmdir(p));
        } else await fs.promises.unlink(p);
      },
      [ServiceCode.FileCopy]: async ({ fields }) => {
        const from = this.#resolve(requireString(fields, "from")), to = this.#resolve(requireString(fields, "to"));
        await fs.promises.cp(from, to, {
          recursive: true,
          force: fields.overwrite !== false,
          errorOnExist: fields.overwrite === false,
        });
      },
      [ServiceCode.FileMove]: async ({ fields }) => {
        const from = this.#resolve(requireString(fields, "from")), to = this.#resolve(requireString(fields, "to"));
        try {
          await fs.promises.rename(from, to);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
          await fs.promises.cp(from, to, { recursive: true });
          await fs.promises.rm(from, { recursive: true });
        }
      },
      [ServiceCode.FileSetTimes]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
        const st = await fs.promises.stat(p);
        await fs.promises.utimes(
          p,
          Number(fields.atimeMs ?? st.atimeMs) / 1000,
          Number(fields.mtimeMs ?? st.mtimeMs) / 1000,
        );
      },
      [ServiceCode.FileSetMode]: async ({ fields }) => {
        await fs.promises.chmod(this.#resolve(requireString(fields, "path")), Number(fields.mode));
      },
      [ServiceCode.FileSha256]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
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
          return { fields: { sha256: hash.digest("hex"), size } };
        } finally {
          await fh.close();
        }
      },
      [ServiceCode.FileOpen]: async ({ fields }) => {
        const p = this.#resolve(requireString(fields, "path"));
        const flags = typeof fields.flags === "string" ? fields.flags : "r";
        if (!/^(r|r\+|w|wx|w\+|a|ax|a\+)$/.test(flags)) {
          throw new ServiceError("invalid-argument", `unknown open flags "${flags}"`);
        }
        const handle = await fs.promises.open(p, flags, typeof fields.mode === "number" ? fields.mode : 0o644);
        const st = await handle.stat();
        if (st.isDirectory()) {
          await handle.close();
          throw new ServiceError("is-a-directory", `${p}: is a directory`, p);
        }
        const id = this.#nextHandle++;
        const position = flags.startsWith("a") ? st.size : 0;
        // A digest covers the file from its first byte: reading, or writing a file that starts empty.
        const digest = fields.sha256 === true && (flags === "r" || flags.startsWith("w"))
          ? (await nodeCrypto()).createHash("sha256")
          : null;
        this.#open.set(id, {
          handle,
          path: p,
          position,
          seekable: st.isFile() || st.isBlockDevice(),
          digest,
          digested: 0,
        });
        this.context.statsChanged();
        return { fields: { handle: id, size: st.size } };
      },
      [ServiceCode.FileRead]: async ({ fields }) => {
        const f = this.#file(fields);
        const length = Math.min(MAX_READ, Math.max(0, Number(fields.length ?? MAX_READ)));
        const { position, own } = startOf(f, fields.position);
        const buf = allocateUninitialized(length); // only the bytes read are sent
        const { bytesRead } = await f.handle.read(buf, 0, length, f.seekable ? position : null);
        if (own) f.position += bytesRead;
        digestBytes(f, position, buf.subarray(0, bytesRead));
        return { data: buf.subarray(0, bytesRead) };
      },
      [ServiceCode.FileWrite]: async ({ fields, data }) => {
        const f = this.#file(fields);
        const { position, own } = startOf(f, fields.position);
        let written = 0;
        while (written < data.length) {
          const r = await f.handle.write(data, written, data.length - written, f.seekable ? position + written : null);
          written += r.bytesWritten;
        }
        if (own) f.position += written;
        digestBytes(f, position, data);
        return { fields: { written } };
      },
      [ServiceCode.FileSeek]: async ({ fields }) => {
        const f = this.#file(fields);
        if (!f.seekable) {
          throw new ServiceError(
            "invalid-argument",
            `${f.path} is a FIFO or a device: it has no position to seek to`,
            f.path,
          );
        }
        const offset = Number(fields.position ?? 0);
        const whence = fields.whence ?? "start";
        const base = whence === "current" ? f.position : whence === "end" ? (await f.handle.stat()).size : 0;
        if (base + offset < 0) throw new ServiceError("invalid-argument", "seek before the start of the file");
        f.position = base + offset;
        return { fields: { position: f.position } };
      },
      [ServiceCode.FileWriteBatch]: async ({ fields, data }) => {
        const files = batchList(fields.files, "files");
        let offset = 0;
        const plan = files.map((f) => {
          if (!f || typeof f !== "object") {
            throw new ServiceError("invalid-argument", "each of files must be { path, size, mode? }");
          }
          const size = Number((f as { size?: unknown }).size);
          if (!Number.isInteger(size) || size < 0 || offset + size > data.length) {
            throw new ServiceError("invalid-argument", "file sizes do not add up to the data sent");
          }
          const entry = {
            path: this.#resolve(requireString(f as Record<string, unknown>, "path")),
            bytes: data.subarray(offset, offset + size),
            mode: (f as { mode?: unknown }).mode,
          };
          offset += size;
          return entry;
        });
        if (offset !== data.length) {
          throw new ServiceError("invalid-argument", "file sizes do not add up to the data sent");
        }
        // Side by side: creating files is the slow part, and the file system overlaps creations in
        // the thread pool. Each file lands whole or not at all: under a temporary name renamed into
        // place, or with `exclusive` created under its own name (never replacing one) and removed if
        // writing it fails.
        const exclusive = fields.exclusive === true;
        const { createHash } = await nodeCrypto();
        const sha256 = await Promise.all(plan.map(async (f) => {
          const mode = typeof f.mode === "number" ? f.mode : 0o644;
          const target = exclusive
            ? f.path
            : path.join(path.dirname(f.path), `.${path.basename(f.path)}.agent-${process.pid}-${this.#nextTemp++}`);
          const handle = await fs.promises.open(target, "wx", mode);
          try {
            await handle.writeFile(f.bytes);
            await handle.close();
            if (!exclusive) await fs.promises.rename(target, f.path);
          } catch (e) {
            await handle.close().catch(() => {});
            await fs.promises.rm(target, { force: true });
            throw e;
          }
          return createHash("sha256").update(f.bytes).digest("hex");
        }));
        return { fields: { sha256 } };
      },
      [ServiceCode.FileReadBatch]: async ({ fields }) => {
        const paths = batchList(fields.paths, "paths").map((p) => {
          if (typeof p !== "string" || p === "") {
            throw new ServiceError("invalid-argument", "paths must be non-empty strings");
          }
          return this.#resolve(withoutNul(p, "paths"));
        });
        const parts: Uint8Array[] = [];
        const files: Array<{ path: string; size: number; sha256: string }> = [];
        let total = 0;
        const { createHash } = await nodeCrypto();
        for (const p of paths) {
          // Synchronous: small files, a bounded total; a thread-pool hop per call costs more than the read.
          const st = fs.statSync(p);
          if (st.isDirectory()) throw new ServiceError("is-a-directory", `${p}: is a directory`, p);
          // The rest in a later batch, or streamed when it comes first: one too large, or not a regular
          // file (a FIFO or a device could wait for ever, and here it would hold up the whole session).
          if (!st.isFile() || total + st.size > BATCH_MAX_BYTES) break;
          const bytes = fs.readFileSync(p);
          if (total + bytes.length > BATCH_MAX_BYTES) break; // it grew since the stat
          total += bytes.length;
          parts.push(bytes);
          files.push({ path: p, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") });
        }
        return { fields: { files }, data: concat(parts) };
      },
      [ServiceCode.FileClose]: async ({ fields }) => {
        const f = this.#file(fields);
        this.#open.delete(Number(fields.handle));
        this.context.statsChanged();
        await f.handle.close();
        return { fields: f.digest ? { sha256: f.digest.digest("hex"), size: f.digested } : {} };
      },
    };
  }
}
