/**
 * What a service handler receives and returns, typed from the service
 * contract (core/session/contract.ts), and how services talk back to clients.
 * Request fields arrive from the network, so a handler sees each declared
 * field as `unknown` and checks it; a field the contract does not declare, or
 * a reply that does not match it, does not compile.
 * @module
 */
import type {
  EventContract,
  ReplyOf,
  RequestOf,
  ServiceCode,
  ServiceContract,
  ServiceEvent,
} from "../../core/session/contract.ts";

/** Declared fields, each still to be checked. */
export type Unchecked<F> = { [K in keyof F]?: unknown };

/** One request from a client, already unpacked. */
export interface Request<F = Record<string, unknown>> {
  /** The client's attachment (who asked). */
  attachment: number;
  token: number;
  fields: F;
  data: Uint8Array;
}

type ReplyFields<C extends ServiceCode> = [keyof ReplyOf<C>] extends [never] ? { fields?: ReplyOf<C> }
  : { fields: ReplyOf<C> };
type ReplyData<C extends ServiceCode> = ServiceContract[C] extends { replyData: true } ? { data: Uint8Array }
  : { data?: undefined };
/** What a handler of `C` returns: the contract's reply fields (and bytes where it carries them); nothing when the reply is empty. */
export type Result<C extends ServiceCode> = [keyof ReplyOf<C>] extends [never]
  ? (ServiceContract[C] extends { replyData: true } ? ReplyData<C> : void)
  : ReplyFields<C> & ReplyData<C>;

/** The handler of one built-in service code. */
export type ServiceHandler<C extends ServiceCode> = (
  request: Request<Unchecked<RequestOf<C>>>,
) => Promise<Result<C>> | Result<C>;

/** A service's handlers, by code. */
export type ServiceHandlers = { [C in ServiceCode]?: ServiceHandler<C> };

/** A product extension's handler: fields and reply are the extension's own. */
export type ExtensionHandler = (
  request: Request,
) => Promise<{ fields?: Record<string, unknown>; data?: Uint8Array } | void> | {
  fields?: Record<string, unknown>;
  data?: Uint8Array;
} | void;

/** What services may do besides answering: push events and report their counts. */
export interface HostContext {
  productRoot: string;
  /** The environment launched programs start from (runtime/environment.ts), and the system service reports. */
  environment: Readonly<Record<string, string>>;
  /** Sends an event (token 0) to one attachment; resolves once it is in the ring (backpressure). */
  emit<E extends ServiceEvent>(attachment: number, code: E, fields: EventContract[E], data?: Uint8Array): Promise<void>;
  /** Tells the agent the open-file and running-process counts changed. */
  statsChanged(): void;
}
