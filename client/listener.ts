/**
 * The product's side of outbound mode: a TLS listener that agents dial.
 * It knows each server by name and key; an agent that announces an unknown
 * or revoked key is turned away before anything else happens. Connected
 * agents are looked up by server name and used exactly like inbound ones.
 *
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { Admission, type Slot } from "../core/admission.ts";
import { parseKey } from "../core/secure/keys.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { initiate } from "../core/secure/opening.ts";
import { META_TARGET } from "../core/wire/frame.ts";
import { MetaCode } from "../core/wire/messages.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { formatHost, socketStream } from "../runtime/tcp.ts";
import { parseFingerprint } from "../runtime/tls.ts";
import { AgentTable } from "./agent-table.ts";
import { StallGrace } from "./stall-grace.ts";
import { type Beating, HeartbeatWheel } from "./heartbeat-wheel.ts";
import { Agent } from "./agent.ts";

/**
 * A server the listener accepts: its key (64 hex digits), or that and a revoked mark.
 *
 * @example
 * ```ts
 * const table: Record<string, AgentEntry> = { web1: generateKey().hex, web2: { key: generateKey().hex, revoked: true } };
 * console.log(Object.keys(table)); // ["web1", "web2"]
 * ```
 */
export type AgentEntry = string | { key: string; revoked?: boolean };

/**
 * Options for {@link listen}: certificate, key, and the table of servers and their agents' keys.
 *
 * @example
 * ```ts
 * const options: ListenerOptions = {
 *   port: 0, // 0 picks a free port
 *   cert: fs.readFileSync(process.env.LISTENER_CERT!, "utf8"),
 *   key: fs.readFileSync(process.env.LISTENER_KEY!, "utf8"),
 *   agents: { web1: generateKey().hex },
 *   maxHandshakes: 64, // more wait in line; past handshakeQueue they are refused at once
 *   onEvent: (e) => console.log(e.type),
 * };
 * await (await listen(options)).close();
 * ```
 */
export interface ListenerOptions {
  host?: string;
  /** 0 picks a free port (see {@link AgentListener.port}). */
  port: number;
  /** PEM certificate (chain) and private key the agents will verify. */
  cert: string;
  key: string;
  /** Server name → its agent's key. */
  agents: Record<string, AgentEntry>;
  /** Seconds between heartbeats on an idle connection; 3 silent intervals drop an agent (default 15). */
  keepaliveSeconds?: number;
  /** Time an agent gets, from its admission, to complete TLS, its key proof and its first answer (default 10 s). */
  handshakeTimeoutSeconds?: number;
  /** Handshakes (TLS and key proof) run at once; later connections wait in line for a slot (default 64). */
  maxHandshakes?: number;
  /**
   * Connections allowed to wait in that line; more are refused at once and retry later (default
   * 32768: a waiting connection costs a socket, about 5 KiB, and a refused one a retry on both sides).
   */
  handshakeQueue?: number;
  /**
   * A connection that waited this long for its slot is closed unstarted, as the agent would give up
   * on it soon (agents wait 60 s for the listener's TLS answer by default, `--dial-timeout`): default 45 s.
   */
  queueWaitSeconds?: number;
  /** The kernel's queue of connections not yet accepted (default 4096; the kernel caps it at net.core.somaxconn). */
  backlog?: number;
  /** Connections, disconnections, rejections and refusals, for the product's log. */
  onEvent?: (event: ListenerEvent) => void;
}

/**
 * What the listener reports to the product's log. `refused`: turned away
 * before any handshake (the line was full). `handshake-failed`: TLS failed or
 * the agent ran out of time. `rejected`: the key proof failed, or the key is
 * unknown, revoked or already connected. `fd-exhausted`: the process ran out
 * of file descriptors and could not accept; `reason` names the limit.
 *
 * @example
 * ```ts
 * const log = (e: ListenerEvent) => console.log(e.type === "rejected" ? `${e.remote}: ${e.reason}` : e.type);
 * log({ type: "connected", server: "web1", keyId: "3f9a0c12b4e7", remote: "10.0.0.5:51234" }); // connected
 * ```
 */
export type ListenerEvent =
  | { type: "connected"; server: string; keyId: string; remote: string }
  | { type: "disconnected"; server: string; reason: string }
  | { type: "rejected"; remote: string; reason: string }
  | { type: "refused"; remote: string; reason: string }
  | { type: "handshake-failed"; remote: string; reason: string }
  | { type: "fd-exhausted"; reason: string }
  /** A connection proved a registered key and closed before answering: `agent probe --tls`. Never registered. */
  | { type: "probed"; server: string; keyId: string; remote: string };

/**
 * Counters since the listener started, and the state now (see {@link AgentListener.stats}).
 *
 * @example
 * ```ts
 * const cert = fs.readFileSync(process.env.LISTENER_CERT!, "utf8"), key = fs.readFileSync(process.env.LISTENER_KEY!, "utf8");
 * const listener = await listen({ port: 0, cert, key, agents: {} });
 * const s: ListenerStats = listener.stats();
 * console.log(s.connected, s.handshaking, s.queued, s.refused); // 0 0 0 0
 * await listener.close();
 * ```
 */
export interface ListenerStats {
  connected: number;
  handshaking: number;
  /** Handshakes whose slow peer gave its slot to the next in line; each goes on until the handshake time. */
  parked: number;
  queued: number;
  accepted: number;
  refused: number;
  rejected: number;
  handshakeFailed: number;
  fdExhausted: number;
  /** Descriptors this listener holds (its sockets), next to the process's soft limit (null if unknown). */
  sockets: number;
  fdLimit: number | null;
}

interface Live<A> {
  agent: A;
  client: AgentClient;
  remote: string;
  sentAt: number;
  /** Set when the heartbeat wheel gave up on the agent. */
  deadReason: string | null;
}

/**
 * A TLS listener for outbound agents (made by {@link listen}). Connected
 * agents are looked up by server name and used exactly like inbound ones.
 *
 * @example
 * ```ts
 * const cert = fs.readFileSync(process.env.LISTENER_CERT!, "utf8"), key = fs.readFileSync(process.env.LISTENER_KEY!, "utf8");
 * const listener: AgentListener<Agent> = await listen({ port: 0, cert, key, agents: { web1: generateKey().hex } });
 * console.log(listener.port > 0, listener.connected()); // true []
 * await listener.waitForAgent("web1", 100).catch((e) => console.log(e.message)); // server "web1" did not connect within 0.1 s
 * await listener.close();
 * ```
 */
export class AgentListener<A extends { client: AgentClient; close(): void }> {
  #table = new AgentTable();
  #live = new Map<string, Live<A>>();
  #waiters = new Map<string, Array<(a: A) => void>>();
  #sockets = new Set<net.Socket>();
  #admission: Admission;
  #wheel: HeartbeatWheel;
  #grace: StallGrace;
  #context: tls.SecureContext;
  /** Descriptors the process held before any connection (files, pipes, the listening socket). */
  #fdBase = openDescriptors();
  #fdReportedAt = 0;
  #counts = { accepted: 0, refused: 0, rejected: 0, handshakeFailed: 0, fdExhausted: 0 };
  /** Handshakes that gave their slot away for a slow peer and go on without one. */
  #parked = 0;
  #observers = new Set<(event: ListenerEvent) => void>();
  #elsewhere: ((server: string) => Promise<string | null>) | null = null;

  private constructor(
    readonly server: net.Server,
    readonly options: ListenerOptions,
    readonly fingerprint: Uint8Array,
    readonly wrap: (client: AgentClient) => A,
  ) {
    this.#context = tls.createSecureContext({ cert: options.cert, key: options.key, minVersion: "TLSv1.2" });
    this.#admission = new Admission({
      maxConcurrent: options.maxHandshakes ?? 64,
      queueLimit: options.handshakeQueue ?? 32768,
      evictAfterMs: STALL_GRACE_FLOOR_MS,
      failuresPerMinute: Infinity, // agents behind one NAT share an address: no per-address limit here
    });
    this.#grace = new StallGrace(STALL_GRACE_FLOOR_MS, this.#timeoutMs);
    this.#admission.limits.evictAfterMs = this.#grace.ms;
    const keepalive = (options.keepaliveSeconds ?? 15) * 1000;
    this.#wheel = new HeartbeatWheel(keepalive, keepalive * 3);
  }

  /** Starts listening; resolves once bound. */
  static async start<A extends { client: AgentClient; close(): void }>(
    options: ListenerOptions,
    wrap: (client: AgentClient) => A,
  ): Promise<AgentListener<A>> {
    const fingerprint = parseFingerprint(new crypto.X509Certificate(options.cert).fingerprint256);
    // TCP first; TLS starts only once a connection is admitted, so a crowd costs a socket each, not a handshake.
    const server = net.createServer();
    const listener = new AgentListener<A>(server, options, fingerprint, wrap);
    await listener.setAgents(options.agents);
    server.on("connection", (socket) => listener.#admit(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port: options.port, host: options.host ?? "0.0.0.0", backlog: options.backlog ?? 4096 }, () => {
        server.off("error", reject);
        server.on("error", (e) => listener.#serverError(e as NodeJS.ErrnoException));
        resolve();
      });
    });
    return listener;
  }

  /** The bound port. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /**
   * Replaces the table of servers and keys; connected agents whose key is gone,
   * changed or revoked are dropped. Costs the rows that changed, not the table.
   */
  setAgents(agents: Record<string, AgentEntry>): Promise<void> {
    for (const [server, entry] of Object.entries(agents)) {
      const text = typeof entry === "string" ? entry : entry.key;
      if (this.#table.byServer(server)?.hex === text) continue; // unchanged: already checked
      parseKey(text, `the key of server "${server}"`); // all or nothing
    }
    for (const server of this.#table.serversNotIn(agents)) this.removeAgent(server);
    for (const [server, entry] of Object.entries(agents)) this.setAgent(server, entry);
    return Promise.resolve();
  }

  /** Adds or changes one server's row; its connected agent is dropped if its key changed or is now revoked. */
  setAgent(server: string, entry: AgentEntry): void {
    const changed = this.#table.set(server, entry);
    if (changed || this.#table.byServer(server)!.revoked) this.#live.get(server)?.agent.close();
  }

  /** Removes one server's row and drops its agent if connected. */
  removeAgent(server: string): void {
    if (this.#table.delete(server)) this.#live.get(server)?.agent.close();
  }

  /** The connected agent for `server`, if any. */
  agent(server: string): A | undefined {
    return this.#live.get(server)?.agent;
  }

  /** Names of the servers whose agents are connected now (a fresh array each call; see {@link count}). */
  connected(): string[] {
    return [...this.#live.keys()];
  }

  /** How many agents are connected now. */
  get count(): number {
    return this.#live.size;
  }

  /** Counters and the state of the handshake line. */
  stats(): ListenerStats {
    return {
      connected: this.#live.size,
      handshaking: this.#admission.active,
      parked: this.#parked,
      queued: this.#admission.waiting,
      ...this.#counts,
      sockets: this.#sockets.size,
      fdLimit: openFileLimit(),
    };
  }

  /** Resolves with the agent for `server` as soon as it is connected. */
  waitForAgent(server: string, timeoutMs = 30_000): Promise<A> {
    const now = this.#live.get(server);
    if (now) return Promise.resolve(now.agent);
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.#waiters.get(server) ?? [];
        list.splice(list.indexOf(done), 1);
        if (list.length === 0) this.#waiters.delete(server);
        reject(new Error(`server "${server}" did not connect within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const done = (a: A) => {
        clearTimeout(timer);
        resolve(a);
      };
      const list = this.#waiters.get(server) ?? [];
      list.push(done);
      this.#waiters.set(server, list);
    });
  }

  /** Calls `observer` with every event, beside `onEvent` (a cluster node follows its agents so); returns the undo. */
  observe(observer: (event: ListenerEvent) => void): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /** The key id of `server`'s agent, from the table (undefined for a server not in it). */
  keyIdOf(server: string): string | undefined {
    return this.#table.byServer(server)?.keyId;
  }

  /** The server whose agent's key has id `keyId`. */
  serverOf(keyId: string): string | undefined {
    return this.#table.byKeyId(keyId)?.server;
  }

  /** "address:port" `server`'s connected agent dialled from. */
  remoteOf(server: string): string | undefined {
    return this.#live.get(server)?.remote;
  }

  /** Drops `server`'s connected agent; its disconnected event gives `reason`. */
  drop(server: string, reason: string): void {
    const live = this.#live.get(server);
    if (!live) return;
    live.deadReason = reason;
    live.client.close();
  }

  /**
   * Asks `check` before admitting an agent not connected here: a reason it gives refuses the
   * newcomer as a duplicate connected elsewhere (a cluster node asks the others). Null removes it.
   */
  checkElsewhere(check: ((server: string) => Promise<string | null>) | null): void {
    this.#elsewhere = check;
  }

  /** Stops listening and drops every agent. */
  async close(): Promise<void> {
    this.#admission.close();
    this.#wheel.stop();
    for (const l of this.#live.values()) l.agent.close();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  #event(event: ListenerEvent) {
    this.options.onEvent?.(event);
    for (const o of this.#observers) o(event);
  }

  #serverError(e: NodeJS.ErrnoException) {
    if (e.code === "EMFILE" || e.code === "ENFILE") this.#fdExhausted(e.code);
  }

  /**
   * Out of descriptors, libuv closes pending connections without a word, so the listener
   * counts its own: past the limit less a reserve, a new connection is closed and reported.
   */
  #overFdLimit(): boolean {
    const limit = openFileLimit();
    if (limit === null || this.#sockets.size + this.#fdBase < limit - FD_RESERVE) return false;
    this.#fdExhausted("EMFILE");
    return true;
  }

  #fdExhausted(code: string) {
    this.#counts.fdExhausted++;
    if (Date.now() - this.#fdReportedAt < 10_000) return; // one event per 10 s; the counter counts all
    this.#fdReportedAt = Date.now();
    const limit = openFileLimit();
    const which = code === "EMFILE"
      ? `this process's open-file limit (${limit ?? "unknown"})`
      : "the system's file table";
    this.#event({
      type: "fd-exhausted",
      reason: `accept failed (${code}): ${which} is used up, ${this.#sockets.size} by this listener's connections; ` +
        "raise it (ulimit -n, LimitNOFILE=) above the fleet size",
    });
  }

  /** A new TCP connection waits in line for a handshake slot; past the line's limit it is refused at once. */
  #admit(socket: net.Socket) {
    this.#counts.accepted++;
    if (this.#overFdLimit()) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    const remote = `${formatHost(socket.remoteAddress ?? "?")}:${socket.remotePort}`;
    const ended: HandshakeState = { evicted: false, parked: false };
    const { slot, cancel } = this.#admission.acquire(() => {
      // A slow peer gives its slot to the next in line but keeps its handshake, up to the handshake
      // time, while few are set aside so: dropped, its agent would start over at the back of the line.
      if (this.#parked < (this.options.maxHandshakes ?? 64) * PARKED_PER_SLOT) {
        ended.parked = true;
        this.#parked++;
        return;
      }
      ended.evicted = true;
      socket.destroy();
    });
    socket.once("close", cancel);
    const queuedAt = Date.now();
    void slot.then((granted) => {
      socket.off("close", cancel);
      if (!granted) {
        if (socket.destroyed) return;
        socket.destroy();
        this.#refuse(
          remote,
          `busy: ${this.#admission.active} handshakes running and ${this.#admission.waiting} waiting`,
        );
      } else if (socket.destroyed) granted.release();
      else if (Date.now() - queuedAt > (this.options.queueWaitSeconds ?? 45) * 1000) {
        // Started now it would likely run out of the agent's time: not started at all, so not thrown away.
        granted.release();
        socket.destroy();
        this.#refuse(remote, `busy: waited ${((Date.now() - queuedAt) / 1000).toFixed(1)} s in line`);
      } else void this.#handshake(socket, granted, remote, ended);
    });
  }

  #refuse(remote: string, reason: string) {
    this.#counts.refused++;
    this.#event({ type: "refused", remote, reason });
  }

  get #timeoutMs() {
    return (this.options.handshakeTimeoutSeconds ?? 10) * 1000;
  }

  /** TLS, the key proof and the first answer, within the handshake time counted from admission. */
  async #handshake(socket: net.Socket, slot: Slot, remote: string, ended: HandshakeState) {
    const admittedAt = performance.now();
    const done = () => {
      slot.release();
      if (ended.parked) this.#parked--;
      ended.parked = false;
    };
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.#context });
    secure.on("error", () => {});
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      secure.destroy();
      socket.destroy();
    }, this.#timeoutMs);
    const late = () =>
      ended.evicted
        ? `dropped: the agent kept its handshake waiting over ${
          (this.#admission.limits.evictAfterMs / 1000).toFixed(1)
        } s while others waited for a slot`
        : `the agent did not complete the handshake within ${this.#timeoutMs / 1000} s of its admission`;
    try {
      slot.waitingForPeer(true);
      await tlsReady(secure);
      slot.waitingForPeer(false);
    } catch (e) {
      clearTimeout(timer);
      done();
      socket.destroy();
      this.#counts.handshakeFailed++;
      this.#event({
        type: "handshake-failed",
        remote,
        reason: timedOut || ended.evicted ? late() : `TLS: ${(e as Error).message}`,
      });
      return;
    }
    const stream = socketStream(secure);
    try {
      const opened = await this.#prove(stream, slot, remote, () => timedOut || ended.evicted);
      if (opened) {
        this.#grace.completed(performance.now() - admittedAt);
        this.#admission.limits.evictAfterMs = this.#grace.ms;
        this.#register(opened.client, opened.entry, remote);
      }
    } catch (e) {
      stream.close();
      this.#counts.rejected++;
      this.#event({ type: "rejected", remote, reason: timedOut || ended.evicted ? late() : (e as Error).message });
    } finally {
      clearTimeout(timer);
      done();
    }
  }

  /**
   * The key proof, the duplicate check and the first request. Null when the
   * connection was a probe (it proved its key and closed without answering).
   */
  async #prove(stream: ByteStream, slot: Slot, remote: string, cutShort: () => boolean) {
    let keyIdSeen = "";
    slot.waitingForPeer(true);
    const { frames, reply, keyId } = await initiate(stream, {
      provider: runtimeCryptoProvider(),
      binding: this.fingerprint,
      lookup: (id) => {
        keyIdSeen = id;
        const entry = this.#table.byKeyId(id);
        return entry && !entry.revoked ? entry.key : null;
      },
    }).catch((e) => {
      const entry = this.#table.byKeyId(keyIdSeen);
      throw entry?.revoked ? new Error(`key ${keyIdSeen} (server "${entry.server}") is revoked`) : e;
    });
    const client = AgentClient.wrap(frames, reply);
    const entry = this.#table.byKeyId(keyId!)!;
    await this.#settleDuplicate(entry.server, client, remote);
    // The first request: an agent answers it (and only then counts itself accepted); `agent probe --tls`
    // proves its key and closes without a word, so a probe never stands in for (or evicts) the agent.
    try {
      await client.info();
    } catch (e) {
      client.close();
      if (cutShort()) throw e; // this side closed it: not a probe
      this.#event({ type: "probed", server: entry.server, keyId: keyId!, remote });
      return null;
    } finally {
      slot.waitingForPeer(false);
    }
    return { client, entry };
  }

  /**
   * Two connections presenting one key: the one connected keeps its place if
   * it still answers; the newcomer is closed before any request, so its agent
   * backs off instead of the two evicting each other in turn.
   */
  async #settleDuplicate(server: string, newcomer: AgentClient, remote: string) {
    const incumbent = this.#live.get(server);
    if (!incumbent) {
      const elsewhere = await this.#elsewhere?.(server);
      if (!elsewhere) return;
      newcomer.close();
      throw new Error(`${elsewhere}; a second connection presenting its key (from ${remote}) is refused`);
    }
    const alive = await Promise.race([
      incumbent.client.ping().then(() => true, () => false),
      new Promise<boolean>((r) => setTimeout(() => r(false), DUPLICATE_PING_MS)),
    ]);
    if (!alive) {
      incumbent.agent.close(); // half-open: the reconnecting agent replaces it
      return;
    }
    newcomer.close();
    throw new Error(
      `server "${server}" is already connected from ${incumbent.remote}, which still answers; ` +
        `a second connection presenting its key (from ${remote}) is refused`,
    );
  }

  #register(client: AgentClient, entry: { server: string; keyId: string }, remote: string) {
    const { server } = entry;
    const agent = this.wrap(client);
    this.#live.get(server)?.agent.close(); // one that went away while this one proved its key
    const live: Live<A> = { agent, client, remote, sentAt: Date.now(), deadReason: null };
    this.#live.set(server, live);
    const beating = this.#beating(live);
    this.#wheel.add(beating);
    this.#event({ type: "connected", server, keyId: entry.keyId, remote });
    const waiters = this.#waiters.get(server);
    this.#waiters.delete(server);
    for (const w of waiters ?? []) w(agent);
    void client.closed.then((reason) => {
      this.#wheel.delete(beating);
      if (this.#live.get(server) === live) this.#live.delete(server);
      this.#event({ type: "disconnected", server, reason: live.deadReason ?? reason.message });
    });
  }

  /** The connection as the heartbeat wheel sees it; what is sent to the agent counts as traffic. */
  #beating(live: Live<A>): Beating {
    const frames = live.client.frames;
    const send = frames.send.bind(frames), sendParts = frames.sendParts.bind(frames);
    frames.send = (frame) => {
      live.sentAt = Date.now();
      return send(frame);
    };
    frames.sendParts = (...args) => {
      live.sentAt = Date.now();
      return sendParts(...args);
    };
    return {
      lastReceivedAt: () => live.client.lastReceivedAt,
      lastSentAt: () => live.sentAt,
      beat: () => void frames.send(HEARTBEAT).catch(() => {}),
      dead: (silentMs) => {
        live.deadReason = `no traffic from the agent for ${Math.round(silentMs / 1000)} s; the connection is gone`;
        live.client.close();
      },
    };
  }
}

/** A handshake whose peer has kept it waiting this long, at least, may lose its slot while others wait (client/stall-grace.ts). */
const STALL_GRACE_FLOOR_MS = 3000;
/** Slow handshakes set aside without a slot, per slot; past that a slow peer's handshake is dropped. */
const PARKED_PER_SLOT = 4;

/** How a handshake ended early: its slot given away to one in line (parked), or the handshake dropped. */
interface HandshakeState {
  evicted: boolean;
  parked: boolean;
}

/** How long a connected agent gets to answer when a second connection presents its key. */
const DUPLICATE_PING_MS = 3000;
const HEARTBEAT = { target: META_TARGET, code: MetaCode.Heartbeat, token: 0, payload: new Uint8Array(0) };

function tlsReady(socket: tls.TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once("secure", () => resolve());
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("the agent closed the connection during the TLS handshake")));
  });
}

/** Descriptors kept free for the rest of the process (files, pipes, the agents' sessions). */
const FD_RESERVE = 16;

/** Descriptors open now (Linux: /proc/self/fd), or a guess of 32 where unknown. */
function openDescriptors(): number {
  try {
    return fs.readdirSync("/proc/self/fd").length;
  } catch {
    return 32;
  }
}

let fdLimit: number | null | undefined;

/** The process's soft limit on open files (Linux: /proc/self/limits), or null where unknown. */
function openFileLimit(): number | null {
  if (fdLimit === undefined) {
    try {
      const line = fs.readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
      fdLimit = line ? Number(line.split(/\s{2,}/)[1]) : null;
    } catch {
      fdLimit = null;
    }
  }
  return Number.isFinite(fdLimit) ? fdLimit : null;
}

/**
 * Listens for outbound agents: servers behind NAT dial in over TLS. Each
 * connected agent is an {@link Agent}, looked up by server name.
 *
 * @example
 * ```ts
 * const cert = fs.readFileSync(process.env.LISTENER_CERT!, "utf8"), key = fs.readFileSync(process.env.LISTENER_KEY!, "utf8");
 * const listener = await listen({ port: 0, cert, key, agents: { web1: generateKey().hex } });
 * // On the server: agent start --connect product.example.com:<port> --fingerprint … --no-listen
 * const web1 = listener.agent("web1"); // undefined until it connects; or await listener.waitForAgent("web1")
 * console.log(web1 === undefined);
 * await listener.close();
 * ```
 */
export function listen(options: ListenerOptions): Promise<AgentListener<Agent>> {
  return AgentListener.start(options, (client) => new Agent(client));
}
