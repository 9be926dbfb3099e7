/**
 * The one table of error codes, and the errors of the protocol and the
 * client library. Each class extends {@link AgentError}, has a stable
 * kebab-case `code` from {@link ERROR_CODES} (what logs, exit codes and
 * serialized remote errors use; the type admits no other), a `name` equal to
 * the class name, and the error it wraps as `cause` where there is one. The
 * layers above keep theirs beside them, one module each: runtime/errors.ts,
 * agent/errors.ts, cli/errors.ts.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "not-found", message: "/etc/x: no such file or directory", detail: "/etc/x" });
 * console.log(e instanceof NotFoundError, e.name, e.code, e.detail); // true NotFoundError not-found /etc/x
 * ```
 * @module
 */

/** Codes an agent or a host sends in an error reply (docs/protocol.md §5 "Errors" lists them). */
const REPLY_ERRORS = {
  // Sessions (answered by the agent).
  "unknown-product": "the agent does not serve that product",
  "product-not-allowed": "the client's key may not use that product",
  "access-revoked": "a reload took the product from the client's key: it was detached",
  "limit-reached": "the client's key holds as many sessions or attachments as it may",
  "unknown-target": "no session is attached on that target of this connection",
  "session-ended": "the session has ended",
  "host-failed": "the session's host process failed",
  "idle": "the session ended after its idle timeout",
  "closed": "the session was closed",
  "detached": "this client detached from the session",
  "agent-stopped": "the agent is shutting down",
  // Requests (answered by the agent or a host).
  "unknown-code": "no handler for that message code",
  "invalid-argument": "a field is missing, of the wrong type, or not allowed",
  "too-large": "a payload over its limit",
  "failed": "the request failed for a reason nothing classified: the default for an unexpected error",
  "not-found": "no such file, directory or program",
  "permission-denied": "the agent's user may not do that",
  "is-a-directory": "a file was expected and a directory was found",
  "not-a-directory": "a directory was expected and something else was found",
  "already-exists": "the target exists already",
  "not-empty": "the directory is not empty",
  "invalid-handle": "no open file with that handle in this session",
  "no-space": "no space left on the device",
  "too-many-open-files": "the host has too many files open",
  "io-error": "an error the operating system reported that has no code of its own here",
  "unknown-process": "no process with that id in this session",
  "stdin-closed": "the process's standard input is closed",
  // Pushed updates (answered by the agent).
  "update-not-allowed": "the client's key has not been given the right to update the agent",
  "update-unavailable": "this agent cannot apply updates (nothing on it applies them)",
  "update-in-progress": "another update to this agent is being received or applied",
  "update-too-large": "the update is larger than the agent accepts",
  "update-digest-mismatch": "the bytes received do not have the SHA-256 the update announced",
  "update-signature-invalid": "the update carries no valid signature by a release key the operator configured",
  "upgrade-failed": "the new binary did not take over; the agent rolled back to the version it ran",
  "upgrading": "the agent is handing over to a new version: open, attach or resume again in a moment",
} as const;

/**
 * The codes an agent or a host may send in an error reply: the ones a client
 * sees as a {@link RemoteError}. docs/protocol.md §5 lists the same.
 *
 * @example
 * ```ts
 * console.log(REPLY_ERROR_CODES.includes("not-found"), REPLY_ERROR_CODES.includes("timeout")); // true false
 * ```
 */
export const REPLY_ERROR_CODES: readonly ErrorCode[] = Object.keys(REPLY_ERRORS) as ErrorCode[];

/**
 * The error codes, each with what it means: the one table. Codes a remote
 * side may send are {@link REPLY_ERROR_CODES}; the rest are raised on this side.
 *
 * @example
 * ```ts
 * console.log(ERROR_CODES["not-found"]); // no such file, directory or program
 * ```
 */
export const ERROR_CODES = {
  // The connection and its opening.
  "protocol": "the peer does not speak this protocol, or sent a malformed message",
  "incompatible-version": "the two sides share no protocol version",
  "authentication": "the key proof failed",
  "key-rejected": "the outbound listener does not accept this agent's key",
  "invalid-key": "a key that is not 64 hex digits",
  "frame-too-large": "a length prefix over the maximum",
  "record-too-large": "a record's length prefix over the maximum",
  "integrity": "a sealed record failed its check: altered, replayed or reordered",
  "connection-closed": "the connection ended while something was expected",
  "timeout": "a stage took longer than allowed",
  "insecure-peer": "the agent runs --insecure and this side did not opt in",
  "channel-corrupt": "the shared-memory channel is not valid, or a record in it failed its check",
  "refused": "nothing listens at that address and port",
  "unresolved": "the host name did not resolve",
  "unreachable": "the address could not be reached",
  "untrusted": "the listener's certificate is not signed by a trusted authority",
  "expired": "the listener's certificate has expired or is not yet valid",
  "fingerprint-mismatch": "the listener's certificate is not the pinned one",
  "name-mismatch": "the listener's certificate does not carry the name dialled",
  "proxy": "the HTTP proxy could not be reached, refused the tunnel, or did not answer",
  // A listener cluster (client/cluster.ts).
  "agent-not-connected": "no node of the listener cluster holds a connection from that server's agent",
  "engine-unavailable": "the cluster's engine (NATS) cannot be reached, or did not answer in time",
  // The operator's side.
  "invalid-config": "a setting, flag or config file that cannot be used",
  "not-running": "no agent answers on this machine's control socket",
  "exit": "a command ends with a particular exit code",
  // `agent probe --json` reports these, as its exit codes tell them apart.
  "name-not-found": "probe: the host name did not resolve",
  "wrong-key": "probe: the agent does not accept the key",
  "not-an-agent": "probe: something other than an agent answers on that port",
  // The caller's side.
  "aborted": "the caller aborted the call with its AbortSignal",
  "unknown": "the peer sent an error without a readable code, or one this side does not know",
  ...REPLY_ERRORS,
} as const;

/**
 * One of {@link ERROR_CODES}.
 *
 * @example
 * ```ts
 * const code: ErrorCode = "permission-denied";
 * console.log(code in ERROR_CODES); // true
 * ```
 */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Base class: every error this project raises on purpose.
 *
 * @example
 * ```ts
 * const e: unknown = new TimeoutError("timed out after 10 s");
 * if (e instanceof AgentError) console.log(e.code, e.name); // timeout TimeoutError
 * ```
 */
export class AgentError extends Error {
  constructor(readonly code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * True when `code` is one of {@link ERROR_CODES}: what a peer sends is checked with it.
 *
 * @example
 * ```ts
 * console.log(isErrorCode("not-found"), isErrorCode("no-such-code")); // true false
 * ```
 */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

/**
 * The peer does not speak this protocol: wrong protocol id, garbage, or a malformed frame.
 *
 * @example
 * ```ts
 * const e = new ProtocolError("not an agent: short reply");
 * console.log(e.code); // protocol
 * ```
 */
export class ProtocolError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("protocol", message, options);
  }
}

/**
 * The two sides share no protocol version.
 *
 * @example
 * ```ts
 * const e = new VersionMismatchError({ min: 1, max: 1 }, { min: 2, max: 3 });
 * console.log(e.message); // no common protocol version: this side speaks 1..1, the peer 2..3
 * ```
 */
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

/**
 * The key proof failed. Deliberately says nothing about which part was wrong.
 *
 * @example
 * ```ts
 * const wrongKey = generateKey().hex;
 * const e = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: wrongKey }).then(() => null, (e) => e);
 * console.log(e instanceof AuthenticationError); // true
 * ```
 */
export class AuthenticationError extends AgentError {
  constructor(message = "authentication failed: the key is not one the agent accepts") {
    super("authentication", message);
  }
}

/**
 * The outbound listener did not accept this agent's key.
 *
 * @example
 * ```ts
 * const e = new KeyRejectedError("3f9a0c12b4e7");
 * console.log(e.code); // key-rejected
 * ```
 */
export class KeyRejectedError extends AgentError {
  constructor(keyId: string) {
    super(
      "key-rejected",
      `the listener does not accept this agent's key (key id ${keyId}): register it there, or check it was not revoked`,
    );
  }
}

/**
 * A length prefix larger than the negotiated maximum.
 *
 * @example
 * ```ts
 * const e = new FrameTooLargeError(2 ** 31, 2 ** 20);
 * console.log(e.length > e.max); // true
 * ```
 */
export class FrameTooLargeError extends AgentError {
  constructor(readonly length: number, readonly max: number) {
    super("frame-too-large", `frame of ${length} bytes exceeds the maximum of ${max}`);
  }
}

/**
 * A record's length prefix is over the maximum: refused before anything is allocated for it.
 *
 * @example
 * ```ts
 * const e = new RecordTooLargeError(65_536, 65_535);
 * console.log(e.code, e.message); // record-too-large record of 65536 bytes exceeds the maximum of 65535
 * ```
 */
export class RecordTooLargeError extends AgentError {
  constructor(readonly length: number, readonly max: number) {
    super("record-too-large", `record of ${length} bytes exceeds the maximum of ${max}`);
  }
}

/**
 * A record failed authentication: truncated, altered, replayed or reordered.
 *
 * @example
 * ```ts
 * console.log(new IntegrityError().code); // integrity
 * ```
 */
export class IntegrityError extends AgentError {
  constructor() {
    super(
      "integrity",
      "a record failed its integrity check (altered, replayed or reordered); the connection was closed",
    );
  }
}

/**
 * The connection ended while something was still expected from it.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * agent.close();
 * const e = await agent.ping().then(() => null, (e) => e);
 * console.log(e instanceof ConnectionClosedError); // true
 * ```
 */
export class ConnectionClosedError extends AgentError {
  constructor(message = "the connection was closed", options?: { cause?: unknown }) {
    super("connection-closed", message, options);
  }
}

/**
 * A stage took longer than allowed.
 *
 * @example
 * ```ts
 * const e = new TimeoutError("timed out after 10000 ms waiting for the reply");
 * console.log(e.code); // timeout
 * ```
 */
export class TimeoutError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("timeout", message, options);
  }
}

/**
 * The peer runs without encryption and this side did not opt in to that.
 *
 * @example
 * ```ts
 * console.log(new InsecurePeerError().message.includes("--insecure")); // true
 * ```
 */
export class InsecurePeerError extends AgentError {
  constructor() {
    super(
      "insecure-peer",
      "the agent runs without encryption (--insecure); refusing to talk to it unless you pass --insecure too",
    );
  }
}

/**
 * A listener cluster could not reach an agent: no node holds it (`agent-not-connected`),
 * or the engine that links the nodes is gone or slow (`engine-unavailable`).
 *
 * @example
 * ```ts
 * const e = new ClusterError("agent-not-connected", 'server "web1" is connected to no node');
 * console.log(e.code, e instanceof AgentError); // agent-not-connected true
 * ```
 */
export class ClusterError extends AgentError {
  constructor(
    readonly reason: "agent-not-connected" | "engine-unavailable",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(reason, message, options);
  }
}

/**
 * The caller aborted the call through its `AbortSignal`; `cause` is the
 * signal's reason. Only this side stops: a request already sent still runs
 * on the agent, and the session stays usable.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const p = await session.processes.start({ program: "sleep", args: ["30"] });
 * const e = await p.wait({ signal: AbortSignal.timeout(100) }).then(() => null, (e) => e);
 * console.log(e instanceof AbortedError, e.code, e.cause.name); // true aborted TimeoutError
 * await session.close();
 * agent.close();
 * ```
 */
export class AbortedError extends AgentError {
  constructor(reason: unknown) {
    super("aborted", `aborted: ${reason instanceof Error ? reason.message : String(reason)}`, { cause: reason });
  }
}

/**
 * The shared-memory channel is not a channel, or a record in it is corrupt.
 *
 * @example
 * ```ts
 * const e = new ChannelCorruptError("record length 4294967295 exceeds the ring");
 * console.log(e.code); // channel-corrupt
 * ```
 */
export class ChannelCorruptError extends AgentError {
  constructor(message: string) {
    super("channel-corrupt", message);
  }
}

/**
 * A key that cannot be used, with a message that says what a good one looks like.
 *
 * @example
 * ```ts
 * try {
 *   parseKey("not-hex", "--key");
 * } catch (e) {
 *   console.log(e instanceof InvalidKeyError, (e as InvalidKeyError).code); // true invalid-key
 * }
 * ```
 */
export class InvalidKeyError extends AgentError {
  constructor(where: string) {
    super("invalid-key", `${where} is not a valid agent key: expected 64 hex digits (make one with \`agent keygen\`)`);
  }
}

/**
 * A failure to report to the other side as a serialized error: a stable
 * code from {@link ERROR_CODES}, a sentence, and the path or program it is
 * about where there is one. Agent and host raise these; clients get them back
 * as {@link RemoteError}s.
 *
 * @example
 * ```ts
 * const e = new ServiceError("not-found", "/srv/app: no such file or directory", "/srv/app");
 * console.log(remoteError(e) instanceof NotFoundError); // true
 * ```
 */
export class ServiceError extends AgentError {
  constructor(code: ErrorCode, message: string, readonly detail?: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * An error raised on the other side and carried back in an error response.
 * A code this side does not know (from a newer peer) arrives as `unknown`,
 * its message ending with the code the peer sent.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "no-space", message: "no space left on device", detail: "/var" });
 * console.log(e instanceof RemoteError, e.code, e.detail); // true no-space /var
 * ```
 */
export class RemoteError extends AgentError {
  constructor(code: ErrorCode, message: string, readonly detail?: string) {
    super(code, message);
  }
}

/**
 * The path or program does not exist on the agent's machine.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const e = await session.files.readFile("/no/such/file").then(() => null, (e) => e);
 * console.log(e instanceof NotFoundError, e.detail); // true /no/such/file
 * await session.close();
 * agent.close();
 * ```
 */
export class NotFoundError extends RemoteError {}
/**
 * The agent's user may not do that.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "permission-denied", message: "/etc/shadow: permission denied", detail: "/etc/shadow" });
 * console.log(e instanceof PermissionDeniedError); // true
 * ```
 */
export class PermissionDeniedError extends RemoteError {}
/**
 * A file was expected and a directory was found.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const e = await session.files.readFile("/").then(() => null, (e) => e);
 * console.log(e instanceof IsADirectoryError); // true
 * await session.close();
 * agent.close();
 * ```
 */
export class IsADirectoryError extends RemoteError {}
/**
 * A directory was expected and something else was found.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "not-a-directory", message: "/etc/hosts: not a directory" });
 * console.log(e instanceof NotADirectoryError); // true
 * ```
 */
export class NotADirectoryError extends RemoteError {}
/**
 * The target exists already.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "already-exists", message: "/srv/app: already exists" });
 * console.log(e instanceof AlreadyExistsError); // true
 * ```
 */
export class AlreadyExistsError extends RemoteError {}
/**
 * A field was missing, of the wrong type, or not allowed.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "invalid-argument", message: "\"path\" must be a non-empty string" });
 * console.log(e instanceof InvalidArgumentError); // true
 * ```
 */
export class InvalidArgumentError extends RemoteError {}
/**
 * The agent or host has no handler for the message code.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const e = await session.callExtension(0x1234).then(() => null, (e) => e); // no extension handles it
 * console.log(e instanceof UnknownCodeError); // true
 * await session.close();
 * agent.close();
 * ```
 */
export class UnknownCodeError extends RemoteError {}
/**
 * The agent does not serve that product.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "unknown-product", message: "this agent does not serve product \"x\"" });
 * console.log(e instanceof UnknownProductError); // true
 * ```
 */
export class UnknownProductError extends RemoteError {}
/**
 * The session ended (closed, idle, agent stopped, or its host failed).
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * await session.close();
 * const e = await session.files.stat(".").then(() => null, (e) => e);
 * console.log(e instanceof SessionEndedError, e.code); // true closed
 * agent.close();
 * ```
 */
export class SessionEndedError extends RemoteError {}

const REMOTE_ERRORS: Partial<Record<ErrorCode, typeof RemoteError>> = {
  "not-found": NotFoundError,
  "permission-denied": PermissionDeniedError,
  "is-a-directory": IsADirectoryError,
  "not-a-directory": NotADirectoryError,
  "already-exists": AlreadyExistsError,
  "invalid-argument": InvalidArgumentError,
  "unknown-code": UnknownCodeError,
  "unknown-product": UnknownProductError,
  "product-not-allowed": PermissionDeniedError,
  "access-revoked": SessionEndedError,
  "session-ended": SessionEndedError,
  "host-failed": SessionEndedError,
  "idle": SessionEndedError,
  "closed": SessionEndedError,
  "detached": SessionEndedError,
  "agent-stopped": SessionEndedError,
  "update-not-allowed": PermissionDeniedError,
};

/**
 * The typed error for a serialized remote error. `detail` is the path or program where there is one.
 *
 * @example
 * ```ts
 * const e = remoteError({ code: "not-found", message: "/etc/x: no such file or directory", detail: "/etc/x" });
 * console.log(e instanceof NotFoundError, e.name, e.code, e.detail); // true NotFoundError not-found /etc/x
 * ```
 */
export function remoteError(e: { code: string; message: string; detail?: string }): RemoteError {
  if (!isErrorCode(e.code)) return new RemoteError("unknown", `${e.message} (code ${e.code})`, e.detail);
  const Type = REMOTE_ERRORS[e.code] ?? RemoteError;
  return new Type(e.code, e.message, e.detail);
}
