/**
 * Cancellation for the client's calls: an aborted `AbortSignal` rejects
 * with an {@link AbortedError} whose `cause` is the signal's reason. Only
 * this side stops waiting; the agent finishes or drops what it was sent.
 * @module
 */
import { AbortedError } from "../errors.ts";

/**
 * Options every cancellable call takes: aborting `signal` rejects the call
 * with an {@link AbortedError} (code `aborted`, the signal's reason as
 * `cause`) and stops it on this side; the session stays usable.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * await session.files.writeFile("hello.txt", "hello");
 * const options: CallOptions = { signal: AbortSignal.timeout(5_000) };
 * console.log(new TextDecoder().decode(await session.files.readFile("hello.txt", options))); // hello
 * await session.close();
 * agent.close();
 * ```
 */
export interface CallOptions {
  /** Aborting it rejects the call with an {@link AbortedError}. */
  signal?: AbortSignal;
}

/** Throws the signal's {@link AbortedError} if it is aborted already. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(signal.reason);
}

/** `promise`, or an {@link AbortedError} as soon as `signal` aborts, whichever comes first. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
