/** The error every settings problem raises. @module */
import { AgentError } from "../core/errors.ts";

/** A setting that cannot be used; the message names its source, the setting, and what is allowed. */
export class ConfigError extends AgentError {
  constructor(message: string) {
    super("invalid-config", message);
  }
}
