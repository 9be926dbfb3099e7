/** What a service handler receives and returns, and how it talks back to clients. */

/** One request from a client, already unpacked. */
export interface Request {
  /** The client's session channel (who asked). */
  channel: number;
  token: number;
  fields: Record<string, unknown>;
  data: Uint8Array;
}

/** A handler's result: fields and optional raw bytes. */
export interface Result {
  fields?: Record<string, unknown>;
  data?: Uint8Array;
}

export type Handler = (request: Request) => Promise<Result | void> | Result | void;

/** What services may do besides answering: push events and report their counts. */
export interface HostContext {
  productRoot: string;
  /** Sends an event (token 0) to one client channel; resolves once it is in the ring (backpressure). */
  emit(channel: number, code: number, fields: Record<string, unknown>, data?: Uint8Array): Promise<void>;
  /** Tells the agent the open-file and running-process counts changed. */
  statsChanged(): void;
}
