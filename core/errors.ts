/**
 * Typed errors shared by the agent, the probe and the client library.
 * Each carries a stable `code` (kebab-case) that logs, exit codes and
 * serialized remote errors use.
 *
 * @example
 * ```ts
 * try { await client.ping(); } catch (e) { if (e instanceof AuthenticationError) console.error(e.message); }
 * ```
 * @module
 */

/** Base class: every error this project raises on purpose. */
export class AgentError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The peer does not speak this protocol: wrong protocol id, garbage, or a malformed frame. */
export class ProtocolError extends AgentError {
  constructor(message: string) {
    super("protocol", message);
  }
}

/** The two sides share no protocol version. */
export class VersionMismatchError extends AgentError {
  constructor(
    readonly ours: { min: number; max: number },
    readonly theirs: { min: number; max: number },
  ) {
    super(
      "incompatible-version",
      `no common protocol version: this side speaks ${ours.min}..${ours.max}, the peer ${theirs.min}..${theirs.max}`,
    );
  }
}

/** The key proof failed. Deliberately says nothing about which part was wrong. */
export class AuthenticationError extends AgentError {
  constructor(message = "authentication failed: the key is not one the agent accepts") {
    super("authentication", message);
  }
}

/** A length prefix larger than the negotiated maximum. */
export class FrameTooLargeError extends AgentError {
  constructor(readonly length: number, readonly max: number) {
    super("frame-too-large", `frame of ${length} bytes exceeds the maximum of ${max}`);
  }
}

/** A record failed authentication: truncated, altered, replayed or reordered. */
export class IntegrityError extends AgentError {
  constructor() {
    super("integrity", "a frame failed its integrity check (altered, replayed or reordered); the connection was closed");
  }
}

/** The connection ended while something was still expected from it. */
export class ConnectionClosedError extends AgentError {
  constructor(message = "the connection was closed") {
    super("connection-closed", message);
  }
}

/** A stage took longer than allowed. */
export class TimeoutError extends AgentError {
  constructor(message: string) {
    super("timeout", message);
  }
}

/** The peer runs without encryption and this side did not opt in to that. */
export class InsecurePeerError extends AgentError {
  constructor() {
    super(
      "insecure-peer",
      "the agent runs without encryption (--insecure); refusing to talk to it unless you pass --insecure too",
    );
  }
}

/** An error raised on the other side and carried back in an error response. */
export class RemoteError extends AgentError {
  constructor(code: string, message: string, readonly detail?: string) {
    super(code, message);
  }
}

/** The path or program does not exist on the agent's machine. */
export class NotFoundError extends RemoteError {}
/** The agent's user may not do that. */
export class PermissionDeniedError extends RemoteError {}
/** A file was expected and a directory was found. */
export class IsADirectoryError extends RemoteError {}
/** A directory was expected and something else was found. */
export class NotADirectoryError extends RemoteError {}
/** The target exists already. */
export class AlreadyExistsError extends RemoteError {}
/** The agent or host has no handler for the message code. */
export class UnknownCodeError extends RemoteError {}
/** The agent does not serve that product. */
export class UnknownProductError extends RemoteError {}
/** The session ended (closed, idle, agent stopped, or its host failed). */
export class SessionEndedError extends RemoteError {}

const REMOTE_ERRORS: Record<string, typeof RemoteError> = {
  "not-found": NotFoundError,
  "permission-denied": PermissionDeniedError,
  "is-a-directory": IsADirectoryError,
  "not-a-directory": NotADirectoryError,
  "already-exists": AlreadyExistsError,
  "unknown-code": UnknownCodeError,
  "unknown-product": UnknownProductError,
  "session-ended": SessionEndedError,
  "host-failed": SessionEndedError,
  "idle": SessionEndedError,
  "closed": SessionEndedError,
  "agent-stopped": SessionEndedError,
};

/** The typed error for a serialized remote error. `detail` is the path or program where there is one. */
export function remoteError(e: { code: string; message: string; detail?: string }): RemoteError {
  const Type = REMOTE_ERRORS[e.code] ?? RemoteError;
  return new Type(e.code, e.message, e.detail);
}
