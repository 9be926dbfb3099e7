/**
 * The errors of the runtime layer: dialling, TLS trust and HTTP proxies.
 * Their codes are in the one table, `ERROR_CODES` in core/errors.ts; the
 * operating-system error each one wraps is its `cause`.
 * @module
 */
import { AgentError } from "../core/errors.ts";
import type { CertificateReport } from "./tls.ts";

/**
 * Why a dial failed: `stage` is "unresolved" (the name did not resolve),
 * "refused", "timeout" or "unreachable" (no route, or another socket error),
 * so a caller can pick its message and exit code. The stage is the code.
 *
 * @example
 * ```ts
 * try {
 *   await connect({ host: "127.0.0.1", port: 1, key: process.env.AGENT_KEY! });
 * } catch (e) {
 *   if (e instanceof DialError) console.log(e.stage); // "refused"
 * }
 * ```
 */
export class DialError extends AgentError {
  constructor(
    readonly stage: "refused" | "timeout" | "unreachable" | "unresolved" | "agent-stopped",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(stage, message, options);
  }
}

/** Why a listener's certificate was refused; the reason is the code. */
export class CertificateError extends AgentError {
  constructor(
    readonly reason: "untrusted" | "expired" | "fingerprint-mismatch" | "name-mismatch",
    message: string,
    readonly certificate: CertificateReport,
    options?: { cause?: unknown },
  ) {
    super(reason, message, options);
  }
}

/** The TLS library refused the certificate; `refusal` (also the cause) is its error. */
export class VerifyError extends AgentError {
  constructor(readonly refusal: NodeJS.ErrnoException) {
    super("untrusted", `the TLS library refused the certificate: ${refusal.code ?? refusal.message}`, {
      cause: refusal,
    });
  }
}

/** The proxy could not be reached, refused the tunnel, or did not answer in time. */
export class ProxyError extends AgentError {
  constructor(readonly stage: "unreachable" | "refused" | "timeout", message: string, options?: { cause?: unknown }) {
    super("proxy", message, options);
  }
}

/** A setting, flag or config file that cannot be used; the message names its source, the setting, and what is allowed. */
export class ConfigError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("invalid-config", message, options);
  }
}
