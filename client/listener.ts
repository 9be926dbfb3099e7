/**
 * The product's side of outbound mode: a TLS listener that agents dial.
 * It knows each server by name and key; an agent that announces an unknown
 * or revoked key is turned away before anything else happens. Connected
 * agents are looked up by server name and used exactly like inbound ones.
 *
 * @module
 */
import crypto from "node:crypto";
import type net from "node:net";
import tls from "node:tls";
import { keyId, parseKey } from "../core/secure/keys.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { initiate } from "../core/secure/opening.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { formatHost, socketStream } from "../runtime/tcp.ts";
import { parseFingerprint } from "../runtime/tls.ts";
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
  /** Seconds between heartbeats; 3 silent intervals drop an agent (default 15). */
  keepaliveSeconds?: number;
  /** Time an agent gets to complete its key proof (default 10 s). */
  handshakeTimeoutSeconds?: number;
  /** Connections, disconnections and rejections, for the product's log. */
  onEvent?: (event: ListenerEvent) => void;
}

/**
 * What the listener reports to the product's log.
 *
 * @example
 * ```ts
 * const log = (e: ListenerEvent) => console.log(e.type === "rejected" ? `${e.remote}: ${e.reason}` : e.server);
 * log({ type: "connected", server: "web1", keyId: "3f9a0c12b4e7", remote: "10.0.0.5:51234" }); // web1
 * ```
 */
export type ListenerEvent =
  | { type: "connected"; server: string; keyId: string; remote: string }
  | { type: "disconnected"; server: string; reason: string }
  | { type: "rejected"; remote: string; reason: string }
  /** A connection proved a registered key and closed before answering: `agent probe --tls`. Never registered. */
  | { type: "probed"; server: string; keyId: string; remote: string };

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
  #byKeyId = new Map<string, { server: string; key: Uint8Array; revoked: boolean }>();
  #connected = new Map<string, A>();
  #waiters = new Map<string, Array<(a: A) => void>>();
  #sockets = new Set<net.Socket>();

  private constructor(
    readonly server: tls.Server,
    readonly options: ListenerOptions,
    readonly fingerprint: Uint8Array,
    readonly wrap: (client: AgentClient) => A,
  ) {}

  /** Starts listening; resolves once bound. */
  static async start<A extends { client: AgentClient; close(): void }>(
    options: ListenerOptions,
    wrap: (client: AgentClient) => A,
  ): Promise<AgentListener<A>> {
    const fingerprint = parseFingerprint(new crypto.X509Certificate(options.cert).fingerprint256);
    const server = tls.createServer({ cert: options.cert, key: options.key, minVersion: "TLSv1.2" });
    const listener = new AgentListener<A>(server, options, fingerprint, wrap);
    await listener.setAgents(options.agents);
    server.on("secureConnection", (socket) => listener.#accept(socket));
    server.on("tlsClientError", (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host ?? "0.0.0.0", () => resolve());
    });
    return listener;
  }

  /** The bound port. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Replaces the table of servers and keys; connected agents whose key is gone or revoked are dropped. */
  async setAgents(agents: Record<string, AgentEntry>): Promise<void> {
    const table = new Map<string, { server: string; key: Uint8Array; revoked: boolean }>();
    for (const [server, entry] of Object.entries(agents)) {
      const e = typeof entry === "string" ? { key: entry } : entry;
      const key = parseKey(e.key, `the key of server "${server}"`).bytes;
      table.set(await keyId(key), { server, key, revoked: e.revoked === true });
    }
    this.#byKeyId = table;
    for (const [server, agent] of this.#connected) {
      const still = [...table.values()].some((t) => t.server === server && !t.revoked);
      if (!still) agent.close();
    }
  }

  /** The connected agent for `server`, if any. */
  agent(server: string): A | undefined {
    return this.#connected.get(server);
  }

  /** Names of the servers whose agents are connected now. */
  connected(): string[] {
    return [...this.#connected.keys()];
  }

  /** Resolves with the agent for `server` as soon as it is connected. */
  waitForAgent(server: string, timeoutMs = 30_000): Promise<A> {
    const now = this.#connected.get(server);
    if (now) return Promise.resolve(now);
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        list.splice(list.indexOf(done), 1);
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

  /** Stops listening and drops every agent. */
  async close(): Promise<void> {
    for (const a of this.#connected.values()) a.close();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async #accept(socket: tls.TLSSocket) {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    const remote = `${formatHost(socket.remoteAddress ?? "?")}:${socket.remotePort}`;
    const stream = socketStream(socket);
    const timeoutMs = (this.options.handshakeTimeoutSeconds ?? 10) * 1000;
    const timer = setTimeout(() => stream.close(), timeoutMs);
    let keyIdSeen = "";
    try {
      const { frames, reply, keyId } = await initiate(stream, {
        provider: runtimeCryptoProvider(),
        binding: this.fingerprint,
        lookup: (id) => {
          keyIdSeen = id;
          const entry = this.#byKeyId.get(id);
          return entry && !entry.revoked ? entry.key : null;
        },
      });
      const client = AgentClient.wrap(frames, reply);
      const server = this.#byKeyId.get(keyId!)!.server;
      // An agent answers; `agent probe --tls` proves its key and closes without a word. Only a
      // connection that answers is registered, so a probe never stands in for (or evicts) the agent.
      try {
        await client.info();
      } catch {
        client.close();
        this.options.onEvent?.({ type: "probed", server, keyId: keyId!, remote });
        return;
      } finally {
        clearTimeout(timer);
      }
      const agent = this.wrap(client);
      this.#connected.get(server)?.close(); // a reconnecting agent replaces its old connection
      this.#connected.set(server, agent);
      const keepalive = (this.options.keepaliveSeconds ?? 15) * 1000;
      client.keepalive(keepalive, keepalive * 3);
      this.options.onEvent?.({ type: "connected", server, keyId: keyId!, remote });
      for (const w of this.#waiters.get(server)?.splice(0) ?? []) w(agent);
      const reason = await client.closed;
      if (this.#connected.get(server) === agent) this.#connected.delete(server);
      this.options.onEvent?.({ type: "disconnected", server, reason: reason.message });
    } catch (e) {
      clearTimeout(timer);
      stream.close();
      const entry = this.#byKeyId.get(keyIdSeen);
      const reason = entry?.revoked ? `key ${keyIdSeen} (server "${entry.server}") is revoked` : (e as Error).message;
      this.options.onEvent?.({ type: "rejected", remote, reason });
    }
  }
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
