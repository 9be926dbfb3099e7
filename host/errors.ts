/**
 * Turns operating-system errors into the serialized errors clients receive:
 * a stable code, a sentence naming the path, and the path as detail.
 * @module
 */
import { type ErrorCode, ServiceError } from "../core/errors.ts";
import type { SerializedError } from "../core/wire/messages.ts";

const CODES: Record<string, [ErrorCode, string]> = {
  ENOENT: ["not-found", "no such file or directory"],
  EACCES: ["permission-denied", "permission denied"],
  EPERM: ["permission-denied", "operation not permitted"],
  EISDIR: ["is-a-directory", "is a directory"],
  ENOTDIR: ["not-a-directory", "not a directory"],
  EEXIST: ["already-exists", "already exists"],
  ENOTEMPTY: ["not-empty", "directory not empty"],
  EBADF: ["invalid-handle", "bad file handle"],
  ENOSPC: ["no-space", "no space left on device"],
  EMFILE: ["too-many-open-files", "too many open files"],
};

/** The serialized form of any error thrown by a handler. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof ServiceError) return { code: e.code, message: e.message, ...(e.detail ? { detail: e.detail } : {}) };
  const err = e as NodeJS.ErrnoException & { dest?: string };
  // The runtime refusing an argument (a NUL byte, a wrong type) is the caller's mistake, not an I/O error.
  if (err?.code === "ERR_INVALID_ARG_VALUE" || err?.code === "ERR_INVALID_ARG_TYPE") {
    return { code: "invalid-argument", message: err.message };
  }
  const known = err?.code ? CODES[err.code] : undefined;
  if (known) {
    const where = err.path ?? err.dest;
    return { code: known[0], message: where ? `${where}: ${known[1]}` : known[1], ...(where ? { detail: where } : {}) };
  }
  return { code: "io-error", message: err?.message ?? String(e) };
}

/** The value of field `name` if it is a non-empty string without NUL bytes; else an invalid-argument error. */
export function requireString(fields: Record<string, unknown>, name: string): string {
  const v = fields[name];
  if (typeof v !== "string" || v === "") {
    throw new ServiceError("invalid-argument", `"${name}" must be a non-empty string`);
  }
  return withoutNul(v, name);
}

/** `value` if it holds no NUL byte (the operating system would cut the string there); else an invalid-argument error. */
export function withoutNul(value: string, name: string): string {
  if (value.includes("\0")) throw new ServiceError("invalid-argument", `"${name}" must not contain a NUL byte`);
  return value;
}
