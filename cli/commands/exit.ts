import { AgentError } from "../../core/errors.ts";

/** An error that ends the CLI with a specific exit code and message. */
export class ExitError extends AgentError {
  constructor(readonly exitCode: number, message: string) {
    super("exit", message);
  }
}
