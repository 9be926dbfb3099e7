/**
 * Sessions: one host process each, shared by the clients attached to it.
 *
 * Each client's attachment numbers the frames it sends and receives; the
 * agent keeps what it sent until the client acknowledges it, up to a bound,
 * so a client that reconnects within the grace period resumes exactly where
 * it was. While an attachment's unacknowledged output is at the bound the
 * agent asks the host to hold that attachment's events (the held table in
 * the channel header): the processes whose output goes to it wait, and the
 * session's other clients go on. Nothing is dropped.
 *
 * A session ends when it is closed, when no client has been attached for the
 * idle timeout and no attachment is within its reconnect grace, or when its
 * host dies (attached clients are told why).
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { allocateUninitialized, BufferRecycler, fromHex, timingSafeEqual, toHex } from "../core/bytes.ts";
import { randomBytes } from "../core/secure/crypto.ts";
import { decodeFrame, type Frame } from "../core/wire/frame.ts";
import { encodeFields, MetaCode } from "../core/wire/messages.ts";
import { ProtocolError, ServiceError } from "../core/errors.ts";
import { HostControl } from "../core/session/contract.ts";
import { DeliveryLink, type LinkSnapshot, type LinkTransport } from "../core/session/delivery.ts";
import { type AttachmentInfo, decodeEnvelope, type SessionSummary } from "../core/session/protocol.ts";
import { HostProcess } from "./host-process.ts";
import { sessionRecord, type SessionsSnapshot } from "./session-records.ts";
import { type SpareSummary, WarmHosts } from "./warm-hosts.ts";
import { KeyAccess } from "./key-access.ts";
import type { KeyScopes } from "./keystore.ts";
import type { ProductAccount } from "./product-users.ts";
import type { Logger } from "../runtime/log.ts";

/** Settings for sessions. */
export interface SessionSettings {
  stateDir: string;
  runDir: string;
  /** Products this agent serves; null accepts any well-formed name. */
  products: string[] | null;
  idleTimeoutMs: number;
  reconnectGraceMs: number;
  /** Unacknowledged output kept per attachment (the documented bound). */
  replayLimitBytes: number;
  /** The most a client's transfer keeps in flight, told to it in every attach reply. */
  transferWindowBytes: number;
  processGraceMs: number;
  /** argv prefix that runs the agent program, for starting hosts. */
  hostCommand: string[];
  /** Products to keep one spare, already started host for (0: every session starts its own). */
  warmHosts: number;
  /** Which products each key may use (null: no restrictions), and per-key limits. */
  access: KeyAccess;
  /** The user each product's hosts run as; a product not here runs as the agent's user. */
  accounts: ReadonlyMap<string, ProductAccount>;
  log: Logger;
}

/** The session settings a configuration gives, in its own units: seconds and MiB. */
export interface SessionConfig {
  stateDir: string;
  products: string[] | null;
  idleTimeoutSeconds: number;
  reconnectGraceSeconds: number;
  replayLimitMiB: number;
  /** Default 15 (the client library's most), never above `replayLimitMiB` (agent/config.ts). */
  transferWindowMiB?: number;
  processGraceSeconds: number;
  warmHosts: number;
  /** Sessions and attachments one key may hold at once (default: no limit). */
  maxSessionsPerKey?: number;
  maxAttachmentsPerKey?: number;
}

/** Settings for sessions from a configuration: the agent's (AgentConfig is one) or LocalAgent's. */
export function sessionSettings(
  config: SessionConfig,
  run: {
    runDir: string;
    hostCommand: string[];
    log: Logger;
    keyScopes?: KeyScopes | null;
    accounts?: ReadonlyMap<string, ProductAccount>;
  },
): SessionSettings {
  return {
    stateDir: config.stateDir,
    runDir: run.runDir,
    products: config.products,
    idleTimeoutMs: config.idleTimeoutSeconds * 1000,
    reconnectGraceMs: config.reconnectGraceSeconds * 1000,
    replayLimitBytes: config.replayLimitMiB * 1024 * 1024,
    transferWindowBytes: Math.min(config.transferWindowMiB ?? 15, config.replayLimitMiB) * 1024 * 1024,
    processGraceMs: config.processGraceSeconds * 1000,
    hostCommand: run.hostCommand,
    warmHosts: config.warmHosts,
    access: new KeyAccess(run.keyScopes ?? null, {
      sessions: config.maxSessionsPerKey ?? Infinity,
      attachments: config.maxAttachmentsPerKey ?? Infinity,
    }),
    accounts: run.accounts ?? new Map(),
    log: run.log,
  };
}

/**
 * The directories a product's user needs: the state, products and run directories become
 * traverse-only for others (0711: their keys and config stay 0600), the product's directory too,
 * and its work directory belongs to the user (0700). Its run directory is made by the host launch.
 */
function prepareProductDirs(settings: SessionSettings, productDir: string, account: ProductAccount): void {
  for (const dir of [settings.stateDir, path.dirname(productDir), productDir, settings.runDir]) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
    fs.chmodSync(dir, 0o711);
  }
  const work = path.join(productDir, "work");
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  fs.chownSync(work, account.uid, account.gid);
}

/** A spare host nobody took in this long ends. */
const SPARE_UNUSED_MS = 10 * 60_000;

/** Something a session can send frames to: one client connection. */
export interface SessionPeer {
  send(frame: Frame): Promise<void>;
  /** Closes the connection (its attachments wait out the reconnect grace); false if it was already closing. */
  drop(): boolean;
  /** Sends a frame whose payload is the concatenation of `parts`; settles once it no longer reads them. */
  sendParts(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void>;
  readonly remote: string;
  /** The id of the key the client authenticated with; null without one (insecure mode, LocalAgent). */
  readonly keyId: string | null;
}

const PRODUCT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** Bytes per ring in each session's channel file (two rings per file). */
export const RING_CAPACITY = 4 * 1024 * 1024;

/**
 * Host records at least this large (a transfer's data) are read into reused memory. A new array
 * for each one counts as external memory, and V8 weighs what that adds since its last full
 * collection against the old generation's limit: a download allocating 512 KiB per record made
 * the agent run a full collection every 50-100 ms once warm (its CPU per GiB nearly doubled).
 */
const REUSED_RECORD_MIN = 64 * 1024;
/** Record buffers kept for reuse across all sessions (each up to a transfer's 512 KiB request and a header). */
const REUSED_RECORDS_KEPT = 4;

/** The largest window a client may report: far above any the library keeps (docs/protocol.md §5). */
const MAX_REPORTED_WINDOW = 2 ** 32;

/** Requests tracked per attachment for its in-flight figure: far above the host's 64 at once, and bounded. */
const UNANSWERED_TRACKED = 1024;

/** One client's place in a session: its target on the client's connection and its delivery link. */
export class Attachment {
  peer: SessionPeer | null = null;
  readonly link: DeliveryLink;
  graceTimer: ReturnType<typeof setTimeout> | null = null;
  /** True while the host holds this attachment's events. */
  held = false;
  /** The window the client last reported its transfers keep (WindowReport): 0 when none runs. */
  windowBytes = 0;
  /** Body bytes of each request the client sent that has no reply yet, by token. */
  readonly #unanswered = new Map<number, number>();
  #unansweredBytes = 0;

  constructor(
    readonly id: number,
    readonly session: Session,
    readonly resumeToken: Uint8Array,
    keepLimitBytes: number,
    /** The key of the client attached (the one that attached or last resumed): it counts against its limit. */
    public keyId: string | null,
    /** Where the link carries on from, for an attachment a hand-over brought. */
    restored?: LinkSnapshot,
  ) {
    const records = session.manager.hostRecords;
    // A body is a view into the record the host wrote; the record's memory is reused once the client has it.
    const options = {
      keepLimitBytes,
      onRoom: () => session.unblock(this),
      recycle: (body: readonly Uint8Array[]) => records.recycle(body[0]),
      onSend: (token: number) => this.#answered(token),
    };
    this.link = restored ? DeliveryLink.restore(restored, options) : new DeliveryLink(options);
  }

  /** Notes a request the client sent; its reply ends it. At most UNANSWERED_TRACKED at once (a bounded figure). */
  requested(token: number, bytes: number): void {
    if (token === 0 || this.#unanswered.has(token) || this.#unanswered.size >= UNANSWERED_TRACKED) return;
    this.#unanswered.set(token, bytes);
    this.#unansweredBytes += bytes;
  }

  #answered(token: number) {
    const bytes = this.#unanswered.get(token);
    if (bytes === undefined) return;
    this.#unanswered.delete(token);
    this.#unansweredBytes -= bytes;
  }

  /**
   * What the agent sees in flight for this client (docs/operations.md "Transfer windows"): request
   * bodies it received and has not answered, and replies it sent that the client has not acknowledged.
   */
  get inFlightBytes(): number {
    return this.#unansweredBytes + this.link.keptBytes;
  }

  info(): AttachmentInfo {
    return {
      sessionId: this.session.id,
      attachment: this.id,
      resumeToken: toHex(this.resumeToken),
      productRoot: this.session.productRoot,
      transferWindowBytes: this.session.manager.settings.transferWindowBytes,
      windowReports: true,
    };
  }

  /** Joins `peer`'s connection; sends again everything after `peerLastReceived`. */
  connect(peer: SessionPeer, peerLastReceived: number): void {
    this.peer = peer;
    const transport: LinkTransport = {
      transmit: (code, token, parts) => peer.sendParts(this.id, code, token, parts).catch(() => {}),
    };
    this.link.resume(transport, peerLastReceived);
  }

  /** The connection went away; the link keeps what it sent until a resume. */
  disconnect(): void {
    this.peer = null;
    this.link.disconnect();
    this.windowBytes = 0; // nothing moves while it waits; a resumed client reports its window again
  }
}

/** One host process and the clients attached to it. */
export class Session {
  readonly attachments: Map<number, Attachment> = new Map();
  stats: { openFiles: number; runningProcesses: number; processGroups?: number[] } = {
    openFiles: 0,
    runningProcesses: 0,
  };
  lastDetachedAt: number = Date.now();
  idleTimer: ReturnType<typeof setTimeout> | null = null;
  ending = false;
  /** Set during a hand-over: frames from clients are not taken (they are sent again after the resume). */
  frozen = false;
  #resume: (() => void) | null = null;
  #pumping: Promise<void> = Promise.resolve();

  constructor(
    readonly id: string,
    readonly product: string,
    readonly productRoot: string,
    readonly host: HostProcess,
    readonly manager: SessionManager,
    /** The key of the client that opened it: the session counts against that key's limit. */
    readonly openedBy: string | null,
  ) {}

  get connectedClients(): number {
    let n = 0;
    for (const a of this.attachments.values()) if (a.peer) n++;
    return n;
  }

  summary(): SessionSummary {
    return {
      id: this.id,
      product: this.product,
      hostPid: this.host.pid,
      clients: this.connectedClients,
      idleSeconds: this.connectedClients > 0 ? 0 : Math.round((Date.now() - this.lastDetachedAt) / 1000),
      openFiles: this.stats.openFiles,
      runningProcesses: this.stats.runningProcesses,
      attachments: [...this.attachments.values()].map((a) => ({
        id: a.id,
        inFlightBytes: a.inFlightBytes,
        windowBytes: a.windowBytes,
      })),
    };
  }

  /**
   * True while an attachment is at its bound and the host could not be asked
   * to hold it (every slot of the held table taken): then the agent stops
   * reading the host's ring altogether, as the last resort.
   */
  get #blocked(): boolean {
    for (const a of this.attachments.values()) if (a.link.saturated && !a.held) return true;
    return false;
  }

  /** Called when `attachment` has room again (or left): the host may send it events again. */
  unblock(attachment?: Attachment): void {
    if (attachment?.held) {
      attachment.held = false;
      this.host.header.unhold(attachment.id);
      this.host.end.doorbell.ring(); // a held event may be waiting for exactly this
    }
    const r = this.#resume;
    this.#resume = null;
    r?.();
  }

  /** Starts reading the host's ring; {@link stopped} settles when that ends. */
  start(): void {
    this.#pumping = this.#pump();
  }

  /** Settles once the ring is no longer read (the host ended, or a hand-over froze the channel). */
  get stopped(): Promise<void> {
    return this.#pumping;
  }

  /** Reads the host's ring and routes each frame to its attachment, until the host ends. */
  async #pump(): Promise<void> {
    try {
      for (;;) {
        while (this.#blocked && !this.ending && !this.frozen) await new Promise<void>((r) => (this.#resume = r));
        const record = await this.host.end.receive(this.manager.readRecordInto);
        if (record === null) break;
        const frame = decodeFrame(record);
        if (frame.target === 0) {
          if (frame.code === HostControl.Stats) this.stats = decodeEnvelope<typeof this.stats>(frame.payload).fields;
          continue;
        }
        if (frame.token !== 0) this.host.replied();
        // Frames for an attachment that has gone (detached or expired) have nobody to go to.
        const att = this.attachments.get(frame.target);
        if (!att) continue;
        att.link.send(frame.code, frame.token, [frame.payload]);
        if (att.link.saturated && !att.held) att.held = this.host.header.hold(att.id);
        // Held, it can still receive replies; a client that asks for more while reading none is cut off.
        if (att.link.keptBytes > 2 * this.manager.settings.replayLimitBytes && att.peer?.drop()) {
          this.manager.settings.log.warn(
            `session ${
              this.id.slice(0, 8)
            } attachment ${att.id}: ${att.peer.remote} asks for more while reading none of ${
              Math.round(att.link.keptBytes / 1048576)
            } MiB of replies, connection closed`,
          );
        }
      }
    } catch (e) {
      this.manager.settings.log.warn(`session ${this.id.slice(0, 8)}: channel failed: ${(e as Error).message}`);
    }
    if (!this.ending && !this.frozen) await this.manager.fail(this, await this.#crashReason());
  }

  async #crashReason(): Promise<string> {
    const info = await Promise.race([this.host.exited, new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
    if (!info) return "the session's host process stopped answering";
    if (info.code === null && info.signal === null) return "the session's host process ended unexpectedly";
    return `the session's host process ended unexpectedly (${
      info.signal ? `signal ${info.signal}` : `exit code ${info.code}`
    })`;
  }
}

/** All sessions of this agent. */
export class SessionManager {
  readonly sessions: Map<string, Session> = new Map();
  readonly #attachments = new Map<number, Attachment>();
  /** Sessions each key is opening right now (their hosts starting): they count against its limits. */
  readonly #opening = new Map<string | null, number>();
  #nextAttachment = 1;

  readonly #warm: WarmHosts;
  /** Memory for large records read from the hosts' rings, handed back when clients have them (REUSED_RECORD_MIN). */
  readonly hostRecords: BufferRecycler = new BufferRecycler(REUSED_RECORDS_KEPT);
  readonly readRecordInto = (
    length: number,
  ): Uint8Array => (length >= REUSED_RECORD_MIN ? this.hostRecords.take(length) : allocateUninitialized(length));

  constructor(readonly settings: SessionSettings) {
    this.#warm = new WarmHosts({
      products: settings.warmHosts,
      unusedMs: SPARE_UNUSED_MS,
      launch: (product, id) => this.#launch(product, id),
      extensionsDir: (product) => path.join(this.#productDir(product), "extensions"),
      newId: () => toHex(randomBytes(16)),
      log: settings.log,
    });
  }

  #productDir(product: string): string {
    return path.join(this.settings.stateDir, "products", product);
  }

  #launch(product: string, id: string): Promise<HostProcess> {
    const productDir = this.#productDir(product);
    const productRoot = path.join(productDir, "work");
    const account = this.settings.accounts.get(product);
    if (account) prepareProductDirs(this.settings, productDir, account);
    else fs.mkdirSync(productRoot, { recursive: true, mode: 0o700 });
    return HostProcess.launch({
      account,
      sessionId: id,
      runDir: this.settings.runDir,
      productRoot,
      extensionsDir: path.join(productDir, "extensions"),
      capacity: RING_CAPACITY,
      processGraceMs: this.settings.processGraceMs,
      command: this.settings.hostCommand,
      onLog: (line) => this.settings.log.warn(`session ${id.slice(0, 8)} host: ${line}`),
    });
  }

  /** Opens a new session for `product` and attaches `peer` to it. */
  async open(product: unknown, peer: SessionPeer): Promise<AttachmentInfo> {
    this.#refuseWhileHandingOver();
    if (typeof product !== "string" || !PRODUCT_NAME.test(product)) {
      throw new ServiceError(
        "invalid-argument",
        `product name must match ${PRODUCT_NAME} (got ${JSON.stringify(product)})`,
      );
    }
    if (this.settings.products && !this.settings.products.includes(product)) {
      throw new ServiceError(
        "unknown-product",
        `this agent does not serve product "${product}" (it serves: ${this.settings.products.join(", ")})`,
      );
    }
    this.#checkOpen(product, peer);
    const { id, host, warm } = await this.#startHost(product, peer.keyId);
    const session = new Session(id, product, path.join(this.#productDir(product), "work"), host, this, peer.keyId);
    this.sessions.set(id, session);
    this.settings.log.info(
      `session ${id.slice(0, 8)} opened for ${product} by ${peer.remote} (host pid ${host.pid}${
        warm ? ", already started" : ""
      })`,
    );
    session.start();
    this.#warm.prepare(product); // the next session for this product need not wait for a runtime to start
    return this.#attach(session, peer).info();
  }

  /** A host for a new session of `product`: the spare, or a new one. Counts against `keyId` while it starts. */
  async #startHost(product: string, keyId: string | null) {
    this.#opening.set(keyId, (this.#opening.get(keyId) ?? 0) + 1);
    try {
      const warm = await this.#warm.take(product);
      const id = warm?.id ?? toHex(randomBytes(16));
      return { id, host: warm?.host ?? await this.#launch(product, id), warm: warm !== null };
    } finally {
      this.#opening.set(keyId, this.#opening.get(keyId)! - 1);
    }
  }

  /** Refuses a session for `product` to a key that may not use it or holds its limit of sessions already. */
  #checkOpen(product: string, peer: SessionPeer): void {
    const access = this.settings.access;
    if (!access.mayUse(peer.keyId, product)) {
      throw new ServiceError(
        "product-not-allowed",
        `this client's key may not use product "${product}" (it may use: ${access.describe(peer.keyId)})`,
      );
    }
    let open = this.#opening.get(peer.keyId) ?? 0;
    for (const s of this.sessions.values()) if (!s.ending && s.openedBy === peer.keyId) open++;
    if (open >= access.limits.sessions) {
      throw new ServiceError(
        "limit-reached",
        `this client's key has ${open} sessions open, its limit (maxSessionsPerKey); close one first`,
      );
    }
    this.#checkAttachmentLimit(peer);
  }

  /** Refuses another attachment to a key that holds its limit of them already. */
  #checkAttachmentLimit(peer: SessionPeer): void {
    let held = this.#opening.get(peer.keyId) ?? 0; // each session starting now brings one
    for (const a of this.#attachments.values()) if (a.keyId === peer.keyId) held++;
    if (held >= this.settings.access.limits.attachments) {
      throw new ServiceError(
        "limit-reached",
        `this client's key holds ${held} session attachments, its limit (maxAttachmentsPerKey); detach one first`,
      );
    }
  }

  /** Attaches another client to an existing session. */
  attach(sessionId: unknown, peer: SessionPeer): AttachmentInfo {
    this.#refuseWhileHandingOver();
    const session = this.#session(sessionId, peer);
    this.#checkAttachmentLimit(peer);
    return this.#attach(session, peer).info();
  }

  /** Reconnects an attachment within its grace period; replays what the client missed. */
  resume(
    fields: { sessionId?: unknown; attachment?: unknown; resumeToken?: unknown; lastReceived?: unknown },
    peer: SessionPeer,
    sendReply: (info: AttachmentInfo) => Promise<void>,
  ): Promise<void> {
    this.#refuseWhileHandingOver();
    const session = this.#session(fields.sessionId, peer);
    const att = this.#attachments.get(Number(fields.attachment));
    const token = typeof fields.resumeToken === "string" ? fromHex(fields.resumeToken) : null;
    if (!att || att.session !== session || !token || !timingSafeEqual(token, att.resumeToken)) {
      throw new ServiceError("not-found", "no such attachment in that session, or the resume token is wrong");
    }
    const lastReceived = Number(fields.lastReceived ?? 0);
    if (!Number.isSafeInteger(lastReceived) || lastReceived < 0 || lastReceived > att.link.lastSent) {
      throw new ProtocolError(`resume claims ${lastReceived} messages received; the agent sent ${att.link.lastSent}`);
    }
    if (att.graceTimer) clearTimeout(att.graceTimer);
    att.graceTimer = null;
    att.peer = peer;
    att.keyId = peer.keyId; // a product moving to a new key (rotation) resumes with it
    this.#clientArrived(session);
    this.settings.log.info(`session ${session.id.slice(0, 8)} attachment ${att.id} resumed by ${peer.remote}`);
    return sendReply({ ...att.info(), lastReceived: att.link.lastReceived }).then(() => {
      att.connect(peer, lastReceived);
      session.unblock();
    });
  }

  /** The attachment on `target` if it belongs to `peer`. */
  attachmentFor(target: number, peer: SessionPeer): Attachment | null {
    const a = this.#attachments.get(target);
    return a && a.peer === peer ? a : null;
  }

  /** Notes the window `peer` reports for one of its attachments (an event: nothing is answered). */
  reportWindow(fields: { attachment?: unknown; bytes?: unknown }, peer: SessionPeer): void {
    const { attachment, bytes } = fields;
    if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < 0 || bytes > MAX_REPORTED_WINDOW) {
      throw new ServiceError("invalid-argument", `a window report needs bytes from 0 to ${MAX_REPORTED_WINDOW}`);
    }
    const att = this.attachmentFor(Number(attachment), peer);
    if (att) att.windowBytes = bytes; // an attachment that went meanwhile has nothing to show
  }

  /** A client leaves its attachment on purpose: no grace. */
  detach(attachment: unknown, peer: SessionPeer): void {
    const att = this.attachmentFor(Number(attachment), peer);
    if (!att) throw new ServiceError("not-found", `no session attachment ${attachment} on this connection`);
    this.#remove(att);
  }

  /** Ends a session for everyone. */
  async close(sessionId: unknown, peer: SessionPeer): Promise<void> {
    const session = this.#session(sessionId, peer);
    this.settings.log.info(`session ${session.id.slice(0, 8)} closed by ${peer.remote}`);
    await this.#end(session, "closed", "the session was closed by a client");
  }

  /** The sessions `peer`'s key may use; every session without a peer (agent status). */
  list(peer?: SessionPeer): SessionSummary[] {
    const sessions = [...this.sessions.values()];
    const visible = peer ? sessions.filter((s) => this.settings.access.mayUse(peer.keyId, s.product)) : sessions;
    return visible.map((s) => s.summary());
  }

  /**
   * Applies the keys' products after a reload: new requests see them at once, and each
   * attachment whose key may no longer use its session's product is detached (its client is
   * told, with code `access-revoked`). Keys the reload removed are left to their connections' grace.
   */
  applyKeyScopes(scopes: KeyScopes | null): void {
    const access = this.settings.access;
    access.scopes = scopes;
    for (const att of [...this.#attachments.values()]) {
      if (!access.lost(att.keyId, att.session.product)) continue;
      this.settings.log.info(
        `session ${att.session.id.slice(0, 8)} attachment ${att.id} detached: its key ${att.keyId} ` +
          `may no longer use ${att.session.product}`,
      );
      att.peer?.send({
        target: 0,
        code: MetaCode.Ended,
        token: 0,
        payload: encodeFields({
          sessionId: att.session.id,
          attachment: att.id,
          code: "access-revoked",
          message: `this client's key may no longer use product "${att.session.product}"`,
        }),
      }).catch(() => {});
      this.#remove(att);
    }
  }

  /** True while `peer` has a session attached: its work may be a long, silent process. */
  isAttached(peer: SessionPeer): boolean {
    for (const att of this.#attachments.values()) if (att.peer === peer) return true;
    return false;
  }

  /** The spare hosts started ahead of sessions (docs/operations.md "Spare hosts"). */
  spares(): SpareSummary[] {
    return this.#warm.list();
  }

  /** A connection went away without detaching: its attachments wait out the reconnect grace. */
  disconnected(peer: SessionPeer): void {
    for (const att of this.#attachments.values()) {
      if (att.peer !== peer) continue;
      att.disconnect();
      this.#restartTimers(att.session);
    }
  }

  /** The host died: tell attached clients, end its processes, remove the channel. */
  async fail(session: Session, reason: string): Promise<void> {
    if (session.ending) return;
    session.ending = true;
    this.settings.log.warn(`session ${session.id.slice(0, 8)} failed: ${reason}`);
    this.#notifyEnded(session, "host-failed", reason);
    await session.host.reap(this.settings.processGraceMs, session.stats.processGroups);
    this.#forget(session);
  }

  /** Ends every session (agent shutdown). */
  async shutdown(): Promise<void> {
    await Promise.all([
      this.#warm.shutdown(),
      ...[...this.sessions.values()].map((s) => this.#end(s, "agent-stopped", "the agent is shutting down")),
    ]);
  }

  /**
   * Hand-over, first step: client frames are no longer taken (their senders send them again after
   * resuming) and the spare hosts end. Nothing else changes yet.
   */
  async freeze(timeoutMs: number): Promise<void> {
    this.#handingOver = true; // no session opens, attaches or resumes from now on
    const deadline = Date.now() + timeoutMs;
    while ([...this.#opening.values()].some((n) => n > 0)) { // hosts still starting become sessions first
      if (Date.now() > deadline) throw new Error(`a session's host did not start within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const s of this.sessions.values()) s.frozen = true;
    await this.#warm.shutdown();
  }

  #handingOver = false;

  #refuseWhileHandingOver(): void {
    if (this.#handingOver) {
      throw new ServiceError("upgrading", "the agent is handing over to a new version: try again in a moment");
    }
  }

  /**
   * Hand-over, second step, once every connection is closed: waits until no frame is on its way
   * into a ring (at most `timeoutMs`), then stops reading the rings and every timer. Throws when
   * a host does not take its frames in time.
   */
  async quiesce(timeoutMs: number): Promise<void> {
    const sessions = [...this.sessions.values()].filter((s) => !s.ending);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`a session's host did not take its requests within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all(sessions.map((s) => s.host.sendsSettled())), late]);
    } finally {
      clearTimeout(timer);
    }
    for (const s of sessions) {
      s.host.freeze();
      s.unblock();
    }
    await Promise.all(sessions.map((s) => s.stopped));
    for (const s of sessions) this.#stopTimers(s);
  }

  /** What the next agent version carries on from; call after {@link quiesce}. */
  snapshot(): SessionsSnapshot {
    const sessions = [...this.sessions.values()].filter((s) => !s.ending).map((s) => sessionRecord(s));
    return { nextAttachment: this.#nextAttachment, sessions };
  }

  /** Undoes {@link freeze} and {@link quiesce}: the hand-over did not happen. */
  thaw(): void {
    this.#handingOver = false;
    this.#warm.reopen();
    for (const s of this.sessions.values()) {
      if (s.ending) continue;
      s.frozen = false;
      if (s.host.frozen) {
        s.host.thaw();
        s.start();
      }
      this.#restartTimers(s);
    }
  }

  /** Carries on with the sessions an earlier agent version handed over; their clients resume. */
  adopt(snapshot: SessionsSnapshot, hosts: ReadonlyMap<string, HostProcess>): void {
    this.#nextAttachment = Math.max(this.#nextAttachment, snapshot.nextAttachment);
    for (const record of snapshot.sessions) {
      const host = hosts.get(record.id);
      if (!host) throw new Error(`session ${record.id.slice(0, 8)}: its host was not taken over`);
      const session = new Session(record.id, record.product, record.productRoot, host, this, record.openedBy);
      session.stats = record.stats;
      for (const a of record.attachments) {
        const att = new Attachment(
          a.id,
          session,
          fromHex(a.resumeToken)!,
          this.settings.replayLimitBytes,
          a.keyId,
          a.link,
        );
        att.held = a.held;
        session.attachments.set(att.id, att);
        this.#attachments.set(att.id, att);
      }
      this.sessions.set(session.id, session);
      session.start();
      this.#restartTimers(session);
    }
  }

  #stopTimers(session: Session) {
    if (session.idleTimer) clearTimeout(session.idleTimer);
    session.idleTimer = null;
    for (const att of session.attachments.values()) {
      if (att.graceTimer) clearTimeout(att.graceTimer);
      att.graceTimer = null;
    }
  }

  /** Each attachment without a client waits out a fresh reconnect grace; the idle clock starts again. */
  #restartTimers(session: Session) {
    for (const att of session.attachments.values()) {
      if (att.peer || att.graceTimer) continue;
      att.graceTimer = setTimeout(() => {
        this.settings.log.info(`session ${session.id.slice(0, 8)} attachment ${att.id}: reconnect grace expired`);
        this.#remove(att);
      }, this.settings.reconnectGraceMs);
    }
    this.#clientLeft(session);
  }

  /** The session `sessionId` if `peer`'s key may use it; one it may not use is as unknown to it as one that never was. */
  #session(sessionId: unknown, peer: SessionPeer): Session {
    const s = typeof sessionId === "string" ? this.sessions.get(sessionId) : undefined;
    if (!s || s.ending || !this.settings.access.mayUse(peer.keyId, s.product)) {
      throw new ServiceError("not-found", `no session ${JSON.stringify(sessionId)} on this agent`);
    }
    return s;
  }

  #attach(session: Session, peer: SessionPeer): Attachment {
    const att = new Attachment(
      this.#nextAttachment++,
      session,
      randomBytes(16),
      this.settings.replayLimitBytes,
      peer.keyId,
    );
    att.connect(peer, 0);
    session.attachments.set(att.id, att);
    this.#attachments.set(att.id, att);
    this.#clientArrived(session);
    return att;
  }

  #remove(att: Attachment) {
    if (att.graceTimer) clearTimeout(att.graceTimer);
    att.disconnect();
    att.link.close();
    att.session.attachments.delete(att.id);
    this.#attachments.delete(att.id);
    att.session.unblock(att);
    this.#clientLeft(att.session);
  }

  #clientArrived(session: Session) {
    if (session.idleTimer) clearTimeout(session.idleTimer);
    session.idleTimer = null;
  }

  /** Starts the idle clock once no client is connected; ends the session when it runs out with nobody in grace. */
  #clientLeft(session: Session) {
    if (session.connectedClients > 0 || session.ending) return;
    session.lastDetachedAt = Date.now();
    if (session.idleTimer) clearTimeout(session.idleTimer);
    const check = () => {
      if (session.connectedClients > 0 || session.ending) return;
      const waiting = [...session.attachments.values()].some((a) => a.graceTimer !== null);
      if (waiting) {
        session.idleTimer = setTimeout(check, 1000); // the idle time is up; end once the last grace runs out
        return;
      }
      this.settings.log.info(
        `session ${session.id.slice(0, 8)}: idle for ${
          Math.round(this.settings.idleTimeoutMs / 1000)
        } s with no client, ending`,
      );
      this.#end(session, "idle", "the session ended after its idle timeout");
    };
    session.idleTimer = setTimeout(check, this.settings.idleTimeoutMs);
  }

  async #end(session: Session, code: string, message: string) {
    if (session.ending) return;
    session.ending = true;
    session.unblock();
    this.#notifyEnded(session, code, message);
    await session.host.shutdown(
      this.settings.processGraceMs + 5000,
      this.settings.processGraceMs,
      session.stats.processGroups,
    );
    this.#forget(session);
    this.settings.log.info(`session ${session.id.slice(0, 8)} ended (${code})`);
  }

  #notifyEnded(session: Session, code: string, message: string) {
    for (const att of session.attachments.values()) {
      att.peer?.send({
        target: 0,
        code: MetaCode.Ended,
        token: 0,
        payload: encodeFields({ sessionId: session.id, attachment: att.id, code, message }),
      }).catch(() => {});
    }
  }

  #forget(session: Session) {
    if (session.idleTimer) clearTimeout(session.idleTimer);
    for (const att of session.attachments.values()) {
      if (att.graceTimer) clearTimeout(att.graceTimer);
      att.link.close();
      this.#attachments.delete(att.id);
    }
    session.attachments.clear();
    this.sessions.delete(session.id);
  }
}
