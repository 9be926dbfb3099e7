/**
 * The host's real request path (host/main.ts `dispatch`: envelope, order key, dispatcher,
 * handler, error reply) in this process, on a product root of the caller's, without the
 * shared-memory channel: what the fuzzer and the files-service tests drive.
 * @module
 */
import { builtInHost, dispatch, type Host } from "../../host/main.ts";
import { Dispatcher } from "../../host/dispatcher.ts";
import { REPLY_CODE } from "../../core/session/contract.ts";
import { decodeEnvelope, encodeEnvelope } from "../../core/session/protocol.ts";
import { decodeError, ERROR_CODE, type SerializedError } from "../../core/wire/messages.ts";
import { concat } from "../../core/bytes.ts";

/** A request's answer: its fields and bytes, or the error reply. */
export type Answer =
  | { ok: true; fields: Record<string, unknown>; data: Uint8Array }
  | { ok: false; error: SerializedError };

/** One attachment's view of a host serving `productRoot` in this process. */
export class InProcessHost {
  readonly host: Host;
  readonly #dispatcher = new Dispatcher();
  readonly #waiting = new Map<number, (answer: Answer) => void>();
  #nextToken = 1;

  constructor(readonly productRoot: string) {
    this.host = builtInHost(productRoot, () => Promise.resolve(), (_target, code, token, parts) => {
      this.#reply(code, token, concat(parts as Uint8Array[]));
      return Promise.resolve();
    }, () => []);
  }

  /** Sends a request whose payload is `payload` exactly (a well-formed envelope or not) and waits for its answer. */
  async send(code: number, payload: Uint8Array): Promise<Answer> {
    const token = this.#nextToken++;
    const answered = new Promise<Answer>((resolve) => this.#waiting.set(token, resolve));
    await dispatch(this.host, this.#dispatcher, { target: 1, code, token, payload });
    return await answered;
  }

  /** Sends `fields` (and `data`) in an envelope and waits for the answer. */
  call(code: number, fields: unknown, data?: Uint8Array): Promise<Answer> {
    return this.send(code, encodeEnvelope(fields, data));
  }

  /** Closes every file and ends every process, as at the session's end. */
  async close(): Promise<void> {
    await this.host.files.closeAll();
    await this.host.processes.endAll(1000);
  }

  #reply(code: number, token: number, payload: Uint8Array): void {
    const resolve = this.#waiting.get(token);
    if (!resolve) return; // a stats message, or an event
    this.#waiting.delete(token);
    if (code === ERROR_CODE) return resolve({ ok: false, error: decodeError(payload) });
    if (code !== REPLY_CODE) throw new Error(`reply code 0x${code.toString(16)} to token ${token}`);
    const { fields, data } = decodeEnvelope(payload);
    resolve({ ok: true, fields: fields as Record<string, unknown>, data: data.slice() });
  }
}
