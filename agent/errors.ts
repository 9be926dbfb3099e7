/**
 * The errors of the agent layer. Their codes are in the one table,
 * `ERROR_CODES` in core/errors.ts; a setting that cannot be used is a
 * `ConfigError` (runtime/errors.ts), as the runtime's proxy settings raise it too.
 * @module
 */
import { AgentError } from "../core/errors.ts";

/** No agent answers on the control socket. */
export class NotRunningError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("not-running", message, options);
  }
}

/** A hand-over to a new agent version that did not happen; the running version carries on (agent/upgrade.ts). */
export class UpgradeError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("upgrade-failed", message, options);
  }
}
