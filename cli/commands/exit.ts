/** An error that ends the CLI with a specific exit code and message. */
export class ExitError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}
