/**
 * The files service's batches: many small files written or read in one
 * request, each with its SHA-256.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { BATCH_MAX_BYTES, BATCH_MAX_FILES, type RequestOf, ServiceCode } from "../../core/session/contract.ts";
import { concat } from "../../core/bytes.ts";
import { ServiceError } from "../../core/errors.ts";
import { optionalMode, requireString, withoutNul } from "../errors.ts";
import { nodeCrypto, type Resolve } from "./files-metadata.ts";
import type { ServiceHandlers, Unchecked } from "./types.ts";

/** A batch's list, checked for shape and size. */
function batchList(value: unknown, name: string): unknown[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > BATCH_MAX_FILES) {
    throw new ServiceError("invalid-argument", `${name} must be a list of 1 to ${BATCH_MAX_FILES} entries`);
  }
  return value;
}

/** One file of a write batch: where it goes, its bytes (a view of the request's data) and mode. */
interface BatchFile {
  path: string;
  bytes: Uint8Array;
  mode: number | undefined;
}

/** Handlers of the batch requests, resolving each path with `resolve`. */
export function batchHandlers(resolve: Resolve): ServiceHandlers {
  let nextTemp = 0;
  const tempName = (p: string) => path.join(path.dirname(p), `.${path.basename(p)}.agent-${process.pid}-${nextTemp++}`);
  return {
    [ServiceCode.FileWriteBatch]: async ({ fields, data }) => {
      const plan = writePlan(fields, data, resolve);
      // Side by side: creating files is the slow part, and the file system overlaps creations in
      // the thread pool. Each file lands whole or not at all: under a temporary name renamed into
      // place, or with `exclusive` created under its own name (never replacing one) and removed if
      // writing it fails.
      const exclusive = fields.exclusive === true;
      const { createHash } = await nodeCrypto();
      const sha256 = await Promise.all(plan.map(async (f) => {
        await writeWhole(f, exclusive ? f.path : tempName(f.path));
        return createHash("sha256").update(f.bytes).digest("hex");
      }));
      return { fields: { sha256 } };
    },
    [ServiceCode.FileReadBatch]: async ({ fields }) => {
      const paths = batchList(fields.paths, "paths").map((p) => {
        if (typeof p !== "string" || p === "") {
          throw new ServiceError("invalid-argument", "paths must be non-empty strings");
        }
        return resolve(withoutNul(p, "paths"));
      });
      return await readBatch(paths);
    },
  };
}

/** The files of a write batch, each with its slice of `data`; their sizes must add up to it. */
function writePlan(fields: Unchecked<RequestOf<ServiceCode.FileWriteBatch>>, data: Uint8Array, resolve: Resolve) {
  let offset = 0;
  const plan = batchList(fields.files, "files").map((f): BatchFile => {
    if (!f || typeof f !== "object") {
      throw new ServiceError("invalid-argument", "each of files must be { path, size, mode? }");
    }
    const size = Number((f as { size?: unknown }).size);
    if (!Number.isInteger(size) || size < 0 || offset + size > data.length) {
      throw new ServiceError("invalid-argument", "file sizes do not add up to the data sent");
    }
    const entry = {
      path: resolve(requireString(f as Record<string, unknown>, "path")),
      bytes: data.subarray(offset, offset + size),
      mode: optionalMode(f as Record<string, unknown>),
    };
    offset += size;
    return entry;
  });
  if (offset !== data.length) {
    throw new ServiceError("invalid-argument", "file sizes do not add up to the data sent");
  }
  return plan;
}

/** Writes `f` into a new file at `target`, renamed to `f.path` if that differs; a failed write leaves nothing. */
async function writeWhole(f: BatchFile, target: string): Promise<void> {
  const handle = await fs.promises.open(target, "wx", f.mode ?? 0o644);
  try {
    await handle.writeFile(f.bytes);
    await handle.close();
    if (target !== f.path) await fs.promises.rename(target, f.path);
  } catch (e) {
    await handle.close().catch(() => {});
    await fs.promises.rm(target, { force: true });
    throw e;
  }
}

/** Reads the files at `paths` in order, as many as fit in one batch. */
async function readBatch(paths: string[]) {
  const parts: Uint8Array[] = [];
  const files: Array<{ path: string; size: number; sha256: string }> = [];
  let total = 0;
  const { createHash } = await nodeCrypto();
  for (const p of paths) {
    const bytes = readIfRegular(p, BATCH_MAX_BYTES - total);
    if (bytes === null) break;
    total += bytes.length;
    parts.push(bytes);
    files.push({ path: p, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") });
  }
  return { fields: { files }, data: concat(parts) };
}

/**
 * The bytes of the regular file at `p` if they number at most `room`; null for a file too large and
 * for anything but a regular file: the rest of the batch comes later, or the client streams it (a
 * FIFO or a device could wait for ever, and here it would hold up the whole session). What is read
 * is what was opened: opened without waiting (O_NONBLOCK: a FIFO swapped in after a look would
 * block an ordinary open until a writer came), then looked at, then read.
 */
function readIfRegular(p: string, room: number): Uint8Array | null {
  // Synchronous: small files, a bounded total; a thread-pool hop per call costs more than the read.
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new ServiceError("is-a-directory", `${p}: is a directory`, p);
    if (!st.isFile() || st.size > room) return null;
    // One byte more than the look found: a file that grew since waits for a later batch, or streams.
    const buf = new Uint8Array(st.size + 1);
    let length = 0;
    for (let n; length < buf.length && (n = fs.readSync(fd, buf, length, buf.length - length, null)) > 0;) length += n;
    return length > st.size ? null : buf.subarray(0, length);
  } finally {
    fs.closeSync(fd);
  }
}
