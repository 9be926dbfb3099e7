/**
 * The inbound agent: accepts TCP connections, admits them to the opening
 * handshake, then answers their frames. Keeps the counters `agent status`
 * shows and logs one line per connection outcome (never a key).
 *
 * @example
 * ```ts
 * const server = new AgentServer(config, keys, runtimeCryptoProvider());
 * const address = await server.listen();
 * ```
 * @module
 */
import net from "node:net";
import { listeningFd } from "../runtime/socket-fd.ts";
import { duplicateFd } from "../runtime/spawn.ts";
import { respond, type Responded } from "../core/secure/opening.ts";
import type { CryptoProvider } from "../core/secure/crypto.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { EncryptionMode } from "../core/wire/hello.ts";
import type { SessionSummary } from "../core/session/protocol.ts";
import type { SpareSummary } from "./warm-hosts.ts";
import type { AgentConfig } from "./config.ts";
import { log } from "../runtime/log.ts";
import { runtimeInfo } from "../runtime/crypto.ts";
import { formatHost, isLoopback, socketStream } from "../runtime/tcp.ts";
import { VERSION } from "../core/version.ts";
import { Admission, failureKey, type Slot } from "../core/admission.ts";
import { ClientConnection } from "./connection.ts";
import { RejectionLog } from "./rejection-log.ts";
import type { SessionManager } from "./sessions.ts";
import type { OutboundStatus, OutboundTarget } from "./dialer.ts";
import type { ProgramHistory } from "./handover.ts";
import type { ServedKey } from "./keystore.ts";
import type { Upgrader } from "./upgrade-types.ts";
import { UpdateReceiver } from "./updates.ts";

/** A handshake that has run this long may be dropped for a waiting peer. */
const EVICT_AFTER_MS = 1000;
/** Rejections logged one by one each minute; the rest are summed up in one line (all are counted in status). */
export const REJECTION_LINES_PER_MINUTE = 60;

/** What `agent status` reports. */
export interface AgentStatus {
  version: string;
  /** Which program runs (hex SHA-256 of its file; empty until hashed) and when it last changed. */
  program: ProgramHistory;
  pid: number;
  uptimeSeconds: number;
  runtime: { name: string; version: string };
  listen: { host: string; port: number } | null;
  mode: "key" | "insecure";
  keyIds: string[];
  connections: { open: number; handshaking: number };
  handshakes: { accepted: number; rejected: Record<string, number> };
  sessions: SessionSummary[];
  /** Hosts started ahead of the next session for a product. */
  spares: SpareSummary[];
  outbound: OutboundStatus[];
}

/** Why the agent dropped a handshake: too slow, made way for a waiting peer, or the line was full. */
type DropReason = "timeout" | "evicted" | "crowded";

interface Connection {
  remote: string;
  since: number;
  /** The key it authenticated with, once it has. */
  keyId?: string | null;
  /** What serves it, once authenticated. */
  client?: ClientConnection;
  close(): void;
}

export class AgentServer {
  readonly startedAt = Date.now();
  #server: net.Server | null = null;
  #admission: Admission;
  #connections = new Set<Connection>();
  #handshaking = new Set<Connection>();
  /** Connections yet to send their hello, oldest first, each with how to drop it. */
  #awaitingHello = new Map<Connection, () => void>();
  #accepted = 0;
  #rejected: Record<string, number> = {};
  #rejectionLog = new RejectionLog(REJECTION_LINES_PER_MINUTE, 60_000, (line) => log.warn(line));
  #address: { host: string; port: number } | null = null;
  /** Bytes through inbound connections that have closed; live ones are added by {@link traffic}. */
  #closedTraffic = { received: 0, sent: 0 };
  #liveSockets = new Set<net.Socket>();
  /** Inbound connections, handshaking or open, per address (an IPv6 /64 as one). */
  #perAddress = new Map<string, number>();
  /** Authenticated inbound connections per key id. */
  #perKey = new Map<string, number>();
  #outbound: OutboundTarget[] = [];
  /** The program running and its last change, for status. */
  program: ProgramHistory = { build: "", previousBuild: null, previousVersion: null, changedAt: null };
  /** Hands over to a new version (agent/upgrade.ts), for `agent upgrade` and pushed updates; while null, every update is refused ("cannot apply updates"). */
  upgrader: Upgrader | null = null;
  /** Takes pushed updates from clients whose key has the right (meta UpdateBegin, UpdateData, UpdateCommit). */
  readonly updates: UpdateReceiver;

  constructor(
    readonly config: AgentConfig,
    public keys: ServedKey[],
    readonly provider: CryptoProvider,
    readonly sessions: SessionManager,
  ) {
    this.#admission = new Admission({
      maxConcurrent: config.maxHandshakes,
      queueLimit: config.maxHandshakes * 10,
      evictAfterMs: Math.min(EVICT_AFTER_MS, config.handshakeTimeoutSeconds * 500),
      failuresPerMinute: config.authFailuresPerMinute,
    });
    this.updates = new UpdateReceiver(
      {
        stateDir: config.stateDir,
        maxBytes: Math.floor(config.updateMaxMiB * 1024 * 1024),
        releaseKeys: config.releaseKeys,
      },
      () => this.keys,
      () => this.upgrader,
      log,
    );
  }

  /** Listeners this agent dials (outbound mode); shown by status. */
  get outbound(): OutboundTarget[] {
    return this.#outbound;
  }

  /** Each listener given here takes pushed updates through this server's {@link updates}, as inbound clients do. */
  set outbound(targets: OutboundTarget[]) {
    this.#outbound = targets;
    for (const t of targets) t.context.updates ??= this.updates;
  }

  /**
   * Starts listening, on the socket in `inheritedFd` if given (a hand-over: it is already bound and
   * listening); resolves with the bound address.
   */
  listen(inheritedFd?: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ pauseOnConnect: false }, (socket) => this.#onSocket(socket));
      server.maxConnections = 10_000;
      server.once("error", (e: NodeJS.ErrnoException) => {
        const where = `${formatHost(this.config.host)}:${this.config.port}`;
        if (e.code === "EADDRINUSE") {
          reject(
            new Error(`cannot listen on ${where}: the port is in use (is another agent running? see \`agent status\`)`),
          );
        } else if (e.code === "EACCES") {
          reject(new Error(`cannot listen on ${where}: permission denied (ports below 1024 need privileges)`));
        } else reject(new Error(`cannot listen on ${where}: ${e.message}`));
      });
      const listening = () => {
        const a = server.address() as net.AddressInfo;
        this.#address = { host: a.address, port: a.port };
        this.#server = server;
        resolve(this.#address);
      };
      if (inheritedFd !== undefined) server.listen({ fd: inheritedFd }, listening);
      else server.listen(this.config.port, this.config.host, listening);
    });
  }

  /**
   * Stops accepting for a hand-over and returns a copy of the listening socket's descriptor: the
   * socket stays open, so connection attempts wait in its queue for whoever listens on it next.
   * Null when not listening.
   */
  stopAccepting(): number | null {
    if (!this.#server) return null;
    const fd = duplicateFd(listeningFd(this.#server));
    this.#server.close();
    this.#server = null;
    return fd;
  }

  /** Closes every connection, handshaking or served, but `keep`'s; its sessions go on without it. */
  closeConnections(keep?: object): void {
    for (const c of [...this.#connections, ...this.#handshaking]) {
      if (keep && c.client === keep) this.sessions.disconnected(c.client);
      else c.close();
    }
  }

  /** A snapshot for `agent status`. */
  status(): AgentStatus {
    return {
      version: VERSION,
      program: { ...this.program },
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      runtime: runtimeInfo(),
      listen: this.#address,
      mode: this.config.insecure ? "insecure" : "key",
      keyIds: this.config.insecure ? [] : this.keys.map((k) => k.id),
      connections: { open: this.#connections.size, handshaking: this.#handshaking.size },
      handshakes: { accepted: this.#accepted, rejected: { ...this.#rejected } },
      sessions: this.sessions.list(),
      spares: this.sessions.spares(),
      outbound: this.outbound.map((t) => t.status()),
    };
  }

  /** Bytes received and sent on inbound connections so far. */
  traffic(): { received: number; sent: number } {
    let { received, sent } = this.#closedTraffic;
    for (const s of this.#liveSockets) {
      received += s.bytesRead;
      sent += s.bytesWritten;
    }
    return { received, sent };
  }

  /**
   * Accepts `keys` from now on (a reload). Connections that authenticated
   * with a key no longer among them are closed after `graceMs`; their
   * sessions wait out the reconnect grace as after any disconnect.
   */
  replaceKeys(keys: ServedKey[], graceMs: number): { added: string[]; removed: string[] } {
    const before = new Set(this.keys.map((k) => k.id)), after = new Set(keys.map((k) => k.id));
    this.keys = keys;
    const removed = [...before].filter((id) => !after.has(id));
    for (const c of this.#connections) {
      if (!c.keyId || after.has(c.keyId)) continue;
      const keyId = c.keyId;
      setTimeout(() => {
        if (!this.#connections.has(c)) return;
        log.info(`connection ${c.remote} closed: its key ${keyId} was removed`);
        c.close();
      }, graceMs).unref?.();
    }
    return { added: [...after].filter((id) => !before.has(id)), removed };
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    this.#admission.close();
    this.#rejectionLog.close();
    if (this.#server) this.#server.close();
    await this.sessions.shutdown();
    for (const c of [...this.#connections, ...this.#handshaking]) c.close();
    this.#server = null;
  }

  /**
   * Enters `conn` in the line of peers yet to send a hello. The line is long
   * (50 per handshake slot) but bounded: when it is full, the oldest entry
   * that has waited past the eviction grace is dropped for the newcomer.
   */
  #awaitHello(conn: Connection, drop: () => void) {
    const limit = this.config.maxHandshakes * 50;
    if (this.#awaitingHello.size >= limit) {
      const [oldest, dropOldest] = this.#awaitingHello.entries().next().value!;
      if (Date.now() - oldest.since >= EVICT_AFTER_MS) {
        this.#awaitingHello.delete(oldest);
        dropOldest();
      }
    }
    this.#awaitingHello.set(conn, drop);
  }

  #reject(remote: string, reason: string, detail?: string) {
    this.#rejected[reason] = (this.#rejected[reason] ?? 0) + 1;
    this.#rejectionLog.note(reason, `connection ${remote} rejected: ${reason}${detail ? ` (${detail})` : ""}`);
  }

  async #onSocket(socket: net.Socket) {
    const address = socket.remoteAddress ?? "unknown";
    const remote = `${formatHost(address)}:${socket.remotePort}`;
    this.#countTraffic(socket);
    if (this.#refused(socket, address, remote)) return;
    const stream = socketStream(socket);
    const conn: Connection = { remote, since: Date.now(), close: () => stream.close() };
    const { result, outcome } = await this.#handshake(stream, conn);
    if (!result.ok) {
      if (result.reason === "bad-key") this.#admission.recordFailure(address);
      return this.#reject(remote, outcome ?? result.reason, outcome ? undefined : result.error.message);
    }
    if (result.keyId !== null && !this.keys.some((k) => k.id === result.keyId)) {
      // A reload removed the key between the proof and here: it admits nothing after the reload.
      result.frames.close();
      return this.#reject(remote, "revoked-key", `key ${result.keyId} was removed by a reload during the handshake`);
    }
    const keyId = result.keyId ?? "";
    if ((this.#perKey.get(keyId) ?? 0) >= this.config.maxConnectionsPerKey) {
      result.frames.close();
      const limit = this.config.maxConnectionsPerKey;
      return this.#reject(remote, "key-limit", `key ${keyId || "(insecure)"} already has ${limit} connections open`);
    }
    this.#perKey.set(keyId, (this.#perKey.get(keyId) ?? 0) + 1);
    await this.#serve(conn, result);
    this.#perKey.set(keyId, this.#perKey.get(keyId)! - 1);
    if (this.#perKey.get(keyId) === 0) this.#perKey.delete(keyId);
  }

  /** Counts the socket's bytes in {@link traffic}, while it is open and after. */
  #countTraffic(socket: net.Socket) {
    socket.on("error", () => {}); // reported through the stream's end
    this.#liveSockets.add(socket);
    socket.once("close", () => {
      this.#liveSockets.delete(socket);
      this.#closedTraffic.received += socket.bytesRead;
      this.#closedTraffic.sent += socket.bytesWritten;
    });
  }

  /** True when the peer is turned away before its hello (the socket is then destroyed and the refusal counted). */
  #refused(socket: net.Socket, address: string, remote: string): boolean {
    if (this.config.insecure && !isLoopback(address)) {
      socket.destroy();
      this.#reject(remote, "not-loopback", "the agent runs --insecure and only serves loopback peers");
      return true;
    }
    if (this.#admission.isRateLimited(address)) {
      socket.destroy();
      this.#reject(remote, "rate-limited", "too many failed authentications from this address in the last minute");
      return true;
    }
    const group = failureKey(address), count = this.#perAddress.get(group) ?? 0;
    if (count >= this.config.maxConnectionsPerAddress) {
      socket.destroy();
      this.#reject(remote, "address-limit", `${count} connections from this address are open already`);
      return true;
    }
    this.#perAddress.set(group, count + 1);
    socket.once("close", () => {
      const left = this.#perAddress.get(group)! - 1;
      if (left === 0) this.#perAddress.delete(group);
      else this.#perAddress.set(group, left);
    });
    return false;
  }

  /**
   * The opening handshake under admission: a deadline, a place in the line of
   * peers yet to send a hello, then a handshake slot. `outcome` says why the
   * agent dropped it, if it did.
   */
  async #handshake(stream: ByteStream, conn: Connection) {
    let outcome = null as DropReason | null;
    const drop = (why: DropReason) => () => {
      outcome = why;
      stream.close();
    };
    this.#handshaking.add(conn);
    // Until its hello arrives a peer holds no handshake slot: only a socket, a deadline and a place in a bounded line.
    const timeoutMs = this.config.handshakeTimeoutSeconds * 1000;
    let timer = setTimeout(drop("timeout"), timeoutMs);
    this.#awaitHello(conn, drop("crowded"));
    let slot: Slot | null = null;
    const result = await respond(stream, {
      mode: this.config.insecure ? EncryptionMode.None : EncryptionMode.Key,
      keys: () => this.keys, // read when the proof is checked: a reload mid-handshake counts
      provider: this.provider,
      admit: async () => {
        this.#awaitingHello.delete(conn);
        const { slot: granted, cancel } = this.#admission.acquire(drop("evicted"));
        slot = await Promise.race([granted, stream.closed.then(() => null)]);
        if (!slot) cancel();
        clearTimeout(timer);
        timer = setTimeout(drop("timeout"), timeoutMs); // the handshake's own time runs from admission
        return slot !== null;
      },
      waitingForPeer: (waiting) => (slot as Slot | null)?.waitingForPeer(waiting),
    });
    this.#awaitingHello.delete(conn);
    (slot as Slot | null)?.release();
    clearTimeout(timer);
    this.#handshaking.delete(conn);
    return { result, outcome };
  }

  /** Serves an authenticated connection until it ends. */
  async #serve(conn: Connection, accepted: Extract<Responded, { ok: true }>) {
    this.#accepted++;
    conn.keyId = accepted.keyId;
    const how = accepted.keyId ? `key ${accepted.keyId}` : "insecure";
    log.info(`connection ${conn.remote} accepted (${how}, protocol v${accepted.version})`);
    this.#connections.add(conn);
    const client = new ClientConnection(
      accepted.frames,
      conn.remote,
      this.sessions,
      this.startedAt,
      accepted.keyId,
      this.updates,
    );
    conn.client = client;
    const stopLimits = client.idleLimits(
      this.config.firstFrameTimeoutSeconds * 1000,
      this.config.connectionIdleTimeoutSeconds * 1000,
    );
    const served = await client.serve();
    const reason = client.deadReason ?? served;
    stopLimits();
    this.#connections.delete(conn);
    const seconds = ((Date.now() - conn.since) / 1000).toFixed(1);
    log.info(`connection ${conn.remote} closed after ${seconds} s${reason ? `: ${reason}` : ""}`);
  }
}
