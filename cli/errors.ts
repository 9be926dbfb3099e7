/**
 * The errors of the command line: each ends the CLI with an exit code. Their
 * codes are in the one table, `ERROR_CODES` in core/errors.ts; a wrapped
 * error stays reachable as `cause`.
 * @module
 */
import { AgentError, type ErrorCode } from "../core/errors.ts";
import type { Stage } from "./commands/probe.ts";

/** An error that ends the CLI with a specific exit code and message. */
export class ExitError extends AgentError {
  constructor(readonly exitCode: number, message: string, options?: { cause?: unknown }) {
    super("exit", message, options);
  }
}

/** The ways a remote command fails before or around its work; each command maps them to its own exit codes. */
export type Failure =
  | "usage"
  | "failed"
  | "unresolved"
  | "refused"
  | "timeout"
  | "not-an-agent"
  | "wrong-key"
  | "incompatible"
  | "unknown-product"
  | "connection-lost"
  | "remote-not-found"
  | "remote-is-directory"
  | "local-is-directory"
  | "remote-not-directory"
  | "permission-denied"
  | "local-not-found"
  | "local-disk-full"
  | "checksum-mismatch"
  | "unsafe-listing"
  | "skipped"
  | "invalid-argument";

/** A failure with its kind, so each command picks its exit code. */
export class CommandFailure extends ExitError {
  constructor(
    readonly failure: Failure,
    message: string,
    codes: Record<Failure, number>,
    options?: { cause?: unknown },
  ) {
    super(codes[failure], message, options);
  }
}

/** Where `agent probe` stopped, with the exit code and the code its report gives. */
export class StageError extends AgentError {
  constructor(
    readonly stage: Stage,
    readonly exitCode: number,
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
