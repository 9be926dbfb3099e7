/**
 * What the service APIs need from a session: typed calls from the service
 * contract, events by code, and word when the session ends. RemoteSession
 * provides it; the APIs (files, processes, system) are built on it alone.
 *
 * @example
 * ```ts
 * const info = (await session.call(ServiceCode.FileStat, { path: "/etc/hosts" })).fields; // FileInfo
 * ```
 * @module
 */
import type { EventContract, ReplyOf, RequestOf, ServiceCode, ServiceEvent } from "../session/contract.ts";
import type { Envelope } from "../session/protocol.ts";
import type { CallOptions } from "./abort.ts";

/** A typed call, its events and its end. */
export interface SessionCalls {
  /** Sends one request of the built-in services and resolves with the reply's fields and bytes; `signal` aborts it. */
  call<C extends ServiceCode>(
    code: C,
    fields: RequestOf<C>,
    data?: Uint8Array,
    options?: CallOptions,
  ): Promise<Envelope<ReplyOf<C>>>;
  /** Calls `handler` with every event of this code the host sends to this attachment. */
  onEvent<E extends ServiceEvent>(code: E, handler: (fields: EventContract[E], data: Uint8Array) => void): void;
  /** Calls `handler` once when the session ends. */
  onEnd(handler: (error: Error) => void): void;
  /** The caller is done with a reply's bytes: nothing reads them any more, so their memory may carry a later reply. */
  recycle(data: Uint8Array): void;
}
