/**
 * Outbound mode: the agent dials a product's TLS listener and keeps the
 * connection open, serving sessions over it exactly as over an inbound one.
 * On failure it retries with exponential backoff, randomized jitter and a
 * cap, so a listener restart does not bring every agent back at once.
 * @module
 */
import { type AcceptedKey, respond } from "../core/secure/opening.ts";
import type { FrameStream } from "../core/secure/frame-stream.ts";
import { EncryptionMode } from "../core/wire/hello.ts";
import type { CryptoProvider } from "../core/secure/crypto.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { AgentError, KeyRejectedError } from "../core/errors.ts";
import { dialTls, type TrustOptions } from "../runtime/tls.ts";
import { formatHost } from "../runtime/tcp.ts";
import { CertificateError, DialError, ProxyError } from "../runtime/errors.ts";
import { ClientConnection } from "./connection.ts";
import type { UpdateReceiver } from "./updates.ts";
import type { Logger } from "../runtime/log.ts";
import type { SessionManager } from "./sessions.ts";

/**
 * The agent's side of the opening inside TLS: answers the listener's hello,
 * announces its key id and proves its key, bound to the listener's
 * certificate `fingerprint`. Throws the typed reason on failure.
 */
export async function proveToListener(
  stream: ByteStream,
  key: AcceptedKey,
  provider: CryptoProvider,
  fingerprint: Uint8Array,
): Promise<FrameStream> {
  const result = await respond(stream, { mode: EncryptionMode.Tls, keys: [key], provider, binding: fingerprint });
  if (!result.ok) throw result.error;
  return result.frames;
}

/** The first retry comes within this window; each failure doubles it, up to the cap. */
export const BACKOFF_BASE_MS = 5000;
export const BACKOFF_CAP_MS = 60_000;
/** No retry comes sooner than this. */
export const BACKOFF_FLOOR_MS = 250;

/**
 * Delay before retry number `attempt` (0-based): "full jitter", anywhere in
 * the exponential step (from a small floor), capped. Agents that lost the
 * same listener at the same moment spread over the whole window: 20,000 over
 * the first 5 s come back at about 4,000 a second, not all in one second.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseMs = BACKOFF_BASE_MS,
  capMs = BACKOFF_CAP_MS,
): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return BACKOFF_FLOOR_MS + random() * (step - BACKOFF_FLOOR_MS);
}

/** One listener to dial. */
export interface OutboundTargetConfig extends TrustOptions {
  host: string;
  port: number;
  /**
   * Other addresses of the same listener (the nodes of a listener cluster): the agent starts at a
   * random one of all and, each time a connection fails or ends, dials the next after its backoff.
   */
  alternates?: Array<{ host: string; port: number }>;
  /** Dial through this HTTP CONNECT proxy. */
  proxy?: URL | null;
}

/** What `agent status` shows of a target. */
export interface OutboundStatus {
  address: string;
  state: "connecting" | "connected" | "waiting" | "stopped";
  since: string;
  connections: number;
  lastError: string | null;
  nextRetryAt: string | null;
}

export interface OutboundContext {
  key: { id: string; bytes: Uint8Array };
  provider: CryptoProvider;
  sessions: SessionManager;
  /** When this agent started (meta Info reports the uptime from it). */
  startedAt: number;
  /** The key proof, once TLS is up. */
  handshakeTimeoutMs: number;
  /** TCP and the listener's TLS answer, which a busy listener's line may hold back. */
  dialTimeoutMs: number;
  keepaliveMs: number;
  log: Logger;
  /** Takes updates the listener pushes (with this agent's key, when it has the `update` right); none when absent. */
  updates?: UpdateReceiver;
}

export class OutboundTarget {
  #state: OutboundStatus["state"] = "connecting";
  #since = Date.now();
  #lastError: string | null = null;
  #nextRetryAt: number | null = null;
  #connections = 0;
  #stopped = false;
  #wake: (() => void) | null = null;
  #current: ClientConnection | null = null;
  /** Ends the dial or key proof under way, for stop(): a dial may wait a minute in a busy listener's line. */
  #dialing: AbortController | null = null;
  #done: Promise<void> = Promise.resolve();
  readonly #addresses: Array<{ host: string; port: number }>;
  #at: number;

  constructor(readonly target: OutboundTargetConfig, readonly context: OutboundContext) {
    this.#addresses = [{ host: target.host, port: target.port }, ...(target.alternates ?? [])];
    this.#at = Math.floor(Math.random() * this.#addresses.length); // spreads a fleet over a cluster's nodes
  }

  /** The address dialled now (one of several for a listener cluster). */
  get address(): string {
    const { host, port } = this.#addresses[this.#at];
    return `${formatHost(host)}:${port}`;
  }

  start(): void {
    this.#stopped = false; // again after a hand-over that did not happen
    this.#done = this.#run();
  }

  /** True while `client` is this target's connection (a hand-over keeps the one that pushed the update). */
  serves(client: object | undefined): boolean {
    return client !== undefined && this.#current === client;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    this.#dialing?.abort();
    this.#current?.frames.close();
    await this.#done;
    this.#set("stopped");
  }

  status(): OutboundStatus {
    return {
      address: this.address,
      state: this.#state,
      since: new Date(this.#since).toISOString(),
      connections: this.#connections,
      lastError: this.#lastError,
      nextRetryAt: this.#nextRetryAt ? new Date(this.#nextRetryAt).toISOString() : null,
    };
  }

  #set(state: OutboundStatus["state"]) {
    this.#state = state;
    this.#since = Date.now();
  }

  async #run() {
    let attempt = 0;
    const { log } = this.context;
    while (!this.#stopped) {
      this.#set("connecting");
      this.#nextRetryAt = null;
      try {
        await this.#connectAndServe(() => {
          attempt = 0; // the listener sent its first request: it accepted this agent
        });
      } catch (e) {
        this.#lastError = describe(e as Error);
      }
      if (this.#stopped) break;
      this.#at = (this.#at + 1) % this.#addresses.length; // the next node of a cluster, if there are several
      const delay = backoffDelay(attempt++);
      this.#nextRetryAt = Date.now() + delay;
      this.#set("waiting");
      log.warn(`outbound ${this.address}: ${this.#lastError}; retrying in ${(delay / 1000).toFixed(1)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  async #connectAndServe(onReady: () => void) {
    const { key, sessions, startedAt, keepaliveMs, log } = this.context;
    const dialing = this.#dialing = new AbortController();
    const { frames, certificate } = await this.#dialAndProve(dialing.signal).finally(() => (this.#dialing = null));
    this.#connections++;
    this.#lastError = null;
    this.#set("connected");
    log.info(`outbound ${this.address}: connected (listener ${certificate.subject}, key ${key.id})`);
    let accepted = false;
    whenFirstRequest(frames, () => {
      accepted = true;
      onReady();
    });
    const conn = new ClientConnection(frames, this.address, sessions, startedAt, key.id, this.context.updates);
    this.#current = conn;
    const stopKeepalive = conn.keepalive(keepaliveMs, keepaliveMs * 3);
    const reason = await conn.serve();
    stopKeepalive();
    this.#current = null;
    if (!accepted && !conn.deadReason) {
      // The listener proves the key, then sends a first request only to an agent it accepts.
      throw new Error(
        "the listener closed the connection after the key proof, before any request: it turned this agent " +
          "away (another connection with the same key may be connected there; see the listener's log)",
      );
    }
    throw new Error(conn.deadReason ?? reason ?? "the listener closed the connection");
  }
  /** TLS to the current address, then the key proof, each within its time; `signal` (stop()) ends either at once. */
  async #dialAndProve(signal: AbortSignal) {
    const { key, provider, handshakeTimeoutMs, dialTimeoutMs } = this.context;
    const { host, port } = this.#addresses[this.#at];
    const { stream, certificate } = await dialTls(host, port, { ...this.target, timeoutMs: dialTimeoutMs, signal });
    signal.addEventListener("abort", () => stream.close(), { once: true }); // stopped during the key proof
    if (signal.aborted) stream.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const frames = await Promise.race([
      proveToListener(stream, key, provider, certificate.fingerprint),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          stream.close();
          reject(
            new DialError(
              "timeout",
              `the listener did not complete the key exchange within ${handshakeTimeoutMs / 1000} s`,
            ),
          );
        }, handshakeTimeoutMs);
      }),
    ]).catch((e) => {
      stream.close();
      throw e;
    }).finally(() => clearTimeout(timer));
    return { frames, certificate };
  }
}

/** Calls `then` once, when the first request (a frame with a token) arrives on `frames`. */
function whenFirstRequest(frames: FrameStream, then: () => void) {
  const receive = frames.receive.bind(frames);
  frames.receive = async () => {
    const frame = await receive();
    if (frame !== null && frame.token !== 0) {
      frames.receive = receive;
      then();
    }
    return frame;
  };
}

function describe(e: Error): string {
  if (e instanceof DialError && e.stage === "timeout" && /waiting for the TLS handshake/.test(e.message)) {
    return `${e.message} (--dial-timeout; a busy listener keeps new connections in line)`;
  }
  if (e instanceof DialError && /disconnected before secure TLS/.test(e.message)) {
    return `${e.message} (the listener closed it before TLS: it is busy, its line of handshakes full, or not a TLS listener)`;
  }
  if (
    e instanceof CertificateError || e instanceof DialError || e instanceof KeyRejectedError || e instanceof ProxyError
  ) return e.message;
  if (e instanceof AgentError) return `${e.code}: ${e.message}`;
  return e.message;
}
