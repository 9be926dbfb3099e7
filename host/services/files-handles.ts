/**
 * The files service's handles: open a file, read and write it in chunks of
 * any size (with a running SHA-256 if asked), seek, close. Every open handle
 * is tracked so the session can close it at the end.
 * @module
 */
import type { Hash } from "node:crypto";
import fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { type RequestOf, ServiceCode } from "../../core/session/contract.ts";
import { allocateUninitialized } from "../../core/bytes.ts";
import { ServiceError } from "../../core/errors.ts";
import { optionalInteger, optionalMode, requireString } from "../errors.ts";
import { nodeCrypto, type Resolve } from "./files-metadata.ts";
import type { HostContext, ServiceHandlers, Unchecked } from "./types.ts";

/** Largest read one request may ask for (the frame payload limit leaves room for the envelope). */
export const MAX_READ = 1024 * 1024 - 1024;

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
function startOf(f: OpenFile, fields: Record<string, unknown>): { position: number; own: boolean } {
  const asked = optionalInteger(fields, "position");
  const own = !f.seekable || asked === undefined;
  return { position: own ? f.position : asked, own };
}

/** A session's open files, by handle, and the handlers of the requests on them. */
export class FileHandles {
  #open = new Map<number, OpenFile>();
  #nextHandle = 1;

  constructor(readonly context: HostContext, readonly resolve: Resolve) {}

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

  handlers(): ServiceHandlers {
    return {
      [ServiceCode.FileOpen]: ({ fields }) => this.#openFile(fields),
      [ServiceCode.FileRead]: async ({ fields }) => {
        const f = this.#file(fields);
        const length = Math.min(MAX_READ, optionalInteger(fields, "length") ?? MAX_READ);
        const { position, own } = startOf(f, fields);
        const buf = allocateUninitialized(length); // only the bytes read are sent
        const { bytesRead } = await f.handle.read(buf, 0, length, f.seekable ? position : null);
        if (own) f.position += bytesRead;
        digestBytes(f, position, buf.subarray(0, bytesRead));
        return { data: buf.subarray(0, bytesRead) };
      },
      [ServiceCode.FileWrite]: async ({ fields, data }) => {
        const f = this.#file(fields);
        const { position, own } = startOf(f, fields);
        let written = 0;
        while (written < data.length) {
          const r = await f.handle.write(data, written, data.length - written, f.seekable ? position + written : null);
          written += r.bytesWritten;
        }
        if (own) f.position += written;
        digestBytes(f, position, data);
        return { fields: { written } };
      },
      [ServiceCode.FileSeek]: async ({ fields }) => ({ fields: { position: await this.#seek(fields) } }),
      [ServiceCode.FileClose]: async ({ fields }) => {
        const f = this.#file(fields);
        this.#open.delete(Number(fields.handle));
        this.context.statsChanged();
        await f.handle.close();
        return { fields: f.digest ? { sha256: f.digest.digest("hex"), size: f.digested } : {} };
      },
    };
  }

  async #openFile(
    fields: Unchecked<RequestOf<ServiceCode.FileOpen>>,
  ): Promise<{ fields: { handle: number; size: number } }> {
    const p = this.resolve(requireString(fields, "path"));
    const flags = typeof fields.flags === "string" ? fields.flags : "r";
    if (!/^(r|r\+|w|wx|w\+|a|ax|a\+)$/.test(flags)) {
      throw new ServiceError("invalid-argument", `unknown open flags "${flags}"`);
    }
    const handle = await fs.promises.open(p, flags, optionalMode(fields) ?? 0o644);
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
    this.#open.set(id, { handle, path: p, position, seekable: st.isFile() || st.isBlockDevice(), digest, digested: 0 });
    this.context.statsChanged();
    return { fields: { handle: id, size: st.size } };
  }

  /** Moves the handle's own position; resolves with the new one. */
  async #seek(fields: Unchecked<RequestOf<ServiceCode.FileSeek>>): Promise<number> {
    const f = this.#file(fields);
    if (!f.seekable) {
      throw new ServiceError(
        "invalid-argument",
        `${f.path} is a FIFO or a device: it has no position to seek to`,
        f.path,
      );
    }
    const offset = optionalInteger(fields, "position", -Number.MAX_SAFE_INTEGER) ?? 0;
    const whence = fields.whence ?? "start";
    const base = whence === "current" ? f.position : whence === "end" ? (await f.handle.stat()).size : 0;
    if (base + offset < 0) throw new ServiceError("invalid-argument", "seek before the start of the file");
    f.position = base + offset;
    return f.position;
  }

  #file(fields: Record<string, unknown>): OpenFile {
    const f = this.#open.get(Number(fields.handle));
    if (!f) throw new ServiceError("invalid-handle", `no open file with handle ${fields.handle}`);
    return f;
  }
}
