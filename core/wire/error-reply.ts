/**
 * What goes onto the wire when a request fails, on the agent and in a host
 * alike: one function, so a client gets the same code for the same failure
 * whichever side answered. docs/protocol.md §5 "Errors" has the table.
 *
 * @example
 * ```ts
 * serializeError(Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT", path: "/etc/x" }));
 * // { code: "not-found", message: "/etc/x: no such file or directory", detail: "/etc/x" }
 * serializeError(new TypeError("x is undefined")); // { code: "failed", message: "x is undefined" }
 * ```
 * @module
 */
import { AgentError, type ErrorCode, ProtocolError, ServiceError } from "../errors.ts";
import type { SerializedError } from "./messages.ts";

/** Operating-system error codes with a code of their own, and the sentence for each. */
const OS_ERRORS: Record<string, [ErrorCode, string]> = {
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

/** An error as a request's error reply carries it, with a registered code. */
export interface ErrorReply extends SerializedError {
  code: ErrorCode;
}

/**
 * The error reply for anything a handler threw: a {@link ServiceError} as it
 * says; a malformed request (a {@link ProtocolError}, or the runtime refusing an
 * argument) `invalid-argument`; another {@link AgentError} its own code; an
 * operating-system error its code from the table above, else `io-error`; and
 * anything else, which nothing classified, `failed`.
 */
export function serializeError(e: unknown): ErrorReply {
  if (e instanceof ServiceError) return { code: e.code, message: e.message, ...(e.detail ? { detail: e.detail } : {}) };
  if (e instanceof ProtocolError) return { code: "invalid-argument", message: e.message };
  if (e instanceof AgentError) return { code: e.code, message: e.message };
  const err = e as { code?: unknown; message?: unknown; path?: string; dest?: string } | null | undefined;
  const message = typeof err?.message === "string" ? err.message : String(e);
  const osCode = typeof err?.code === "string" ? err.code : undefined;
  // The runtime refusing an argument (a NUL byte, a wrong type) is the caller's mistake.
  if (osCode === "ERR_INVALID_ARG_VALUE" || osCode === "ERR_INVALID_ARG_TYPE") {
    return { code: "invalid-argument", message };
  }
  const known = osCode ? OS_ERRORS[osCode] : undefined;
  if (known) {
    const where = err?.path ?? err?.dest;
    return { code: known[0], message: where ? `${where}: ${known[1]}` : known[1], ...(where ? { detail: where } : {}) };
  }
  if (osCode && /^E[A-Z0-9]+$/.test(osCode)) return { code: "io-error", message };
  // Deno names an operating-system error it has no class for only in its message.
  if (!osCode && /\(os error \d+\)$/.test(message)) return { code: "io-error", message };
  return { code: "failed", message };
}
