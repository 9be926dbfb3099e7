/**
 * Several listener nodes share one fleet through NATS: each agent connects to
 * one node, and a product on any node reaches any agent. Presence is NATS's
 * own subject interest: the node holding a server's agent subscribes to
 * `<prefix>.agent.<key id>` and answers there, so a request finds the holder
 * in one round trip, and a node that dies or loses the engine stops being
 * found the moment its engine connection ends (no record to expire). A
 * remote agent is an ordinary {@link Agent} whose frames travel as a byte
 * stream over `<prefix>.conn.<node>.<peer>.<id>` to the owning node, which
 * relays them on the agent's one connection (client/cluster-relay.ts).
 *
 * The NATS client (`@nats-io/transport-node`) loads only when a node joins:
 * a single listener stays without it. Nodes trust the engine: frames between
 * nodes are the agent's plain frames (TLS ends at the listener), so NATS must
 * be a private, authenticated network (docs/security.md "Listener cluster").
 * @module
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { AgentClient } from "../core/client/agent-client.ts";
import { ClusterError } from "../core/errors.ts";
import { FrameStream } from "../core/secure/frame-stream.ts";
import type { Reply } from "../core/wire/hello.ts";
import { StreamReader } from "../core/wire/stream.ts";
import { Agent } from "./agent.ts";
import { Relay } from "./cluster-relay.ts";
import { chunkBytesFor, EngineStream, WINDOW_BYTES } from "./cluster-stream.ts";
import type { AgentListener } from "./listener.ts";

/**
 * How a listener node joins its cluster.
 *
 * @example
 * ```ts
 * const options: ClusterOptions = {
 *   servers: ["nats://10.0.0.2:4222", "nats://10.0.0.3:4222"],
 *   node: "listener-a", // unique in the cluster: letters, digits, - and _
 *   engine: { user: "listener", pass: process.env.NATS_PASSWORD, tls: { caFile: "/etc/agent/nats-ca.pem" } },
 *   onEvent: (e) => console.log(e.type),
 * };
 * console.log(options.node);
 * ```
 */
export interface ClusterOptions {
  /** The NATS servers, as `nats://host:port`. */
  servers: string | string[];
  /** This node's name, unique in the cluster (letters, digits, `-`, `_`). */
  node: string;
  /** First token of every subject (default "agent"): clusters sharing one NATS keep apart by it. */
  subjectPrefix?: string;
  /** Passed to NATS's `connect` as they are: `user`/`pass`, `token`, `authenticator`, `tls`, timeouts. */
  engine?: Record<string, unknown>;
  /** Time a request to another node gets (default 5 s). */
  requestTimeoutMs?: number;
  /** Bytes in flight each way on one proxied connection (default 4 MiB). */
  windowBytes?: number;
  onEvent?: (event: ClusterEvent) => void;
}

/**
 * What a node reports. `engine-lost`: its NATS connection ended; it goes on
 * serving its own agents, and remote ones are unreachable until
 * `engine-restored`. `superseded`: a newer connection of this server's agent
 * on another node won, so this node dropped its own. `node-lost`: a node
 * this one had proxied connections with left; they were closed.
 *
 * @example
 * ```ts
 * const log = (e: ClusterEvent) => console.log(e.type === "engine-lost" ? `engine lost: ${e.reason}` : e.type);
 * log({ type: "engine-restored", server: "127.0.0.1:4222" }); // engine-restored
 * ```
 */
export type ClusterEvent =
  | { type: "engine-lost"; reason: string }
  | { type: "engine-restored"; server: string }
  | { type: "superseded"; server: string; node: string }
  | { type: "node-lost"; node: string; connections: number };

interface Held {
  keyId: string;
  since: number;
  subscription: Subscription;
}

interface AgentRequest {
  op: "open" | "ping";
  node: string;
  id?: string;
}

type OpenAnswer = { ok: true; node: string; reply: Reply } | { ok: false; reason: string };

const NODE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const PEER_CHECK_MS = 2000;
const encoder = new TextEncoder(), decoder = new TextDecoder();
const json = (value: unknown) => encoder.encode(JSON.stringify(value));
const parse = <T>(m: Msg): T => JSON.parse(decoder.decode(m.data)) as T;

/**
 * One listener node in a cluster (made by {@link joinCluster}). {@link agent}
 * and {@link waitForAgent} find a server's agent on whichever node holds it.
 *
 * @example
 * ```ts
 * const cluster = await joinCluster(listener, { servers: "nats://127.0.0.1:4222", node: "a" });
 * const web1 = await cluster.waitForAgent("web1", 30_000); // here or on another node
 * const session = await web1.openSession("buildmaster");
 * console.log((await session.processes.run({ program: "uname" })).code);
 * await session.close();
 * await cluster.close();
 * ```
 */
export class Cluster {
  readonly node: string;
  readonly #prefix: string;
  #held = new Map<string, Held>();
  #streams = new Map<string, EngineStream>();
  #proxies = new Map<string, Promise<Agent | undefined>>();
  #wakeups = new Map<string, Set<() => void>>();
  #peerMisses = new Map<string, number>();
  #subscriptions: Subscription[] = [];
  #engineUp = true;
  #nextId = 0;
  #closed = false;
  #timer: ReturnType<typeof setInterval>;
  #unobserve: () => void;

  private constructor(
    readonly nc: NatsConnection,
    readonly listener: AgentListener<Agent>,
    readonly options: ClusterOptions,
  ) {
    this.node = options.node;
    this.#prefix = options.subjectPrefix ?? "agent";
    const sub = (subject: string, handle: (m: Msg) => void) =>
      this.#subscriptions.push(nc.subscribe(subject, { callback: (_e, m) => handle(m) }));
    sub(`${this.#prefix}.node.${this.node}`, (m) => m.respond());
    sub(`${this.#prefix}.conn.${this.node}.>`, (m) => this.#deliver(m));
    sub(`${this.#prefix}.claim`, (m) => this.#onClaim(m));
    this.#unobserve = listener.observe((e) => {
      if (e.type === "connected") this.#hold(e.server, e.keyId);
      else if (e.type === "disconnected" && !listener.agent(e.server)) this.#release(e.server);
    });
    for (const server of listener.connected()) this.#hold(server, listener.keyIdOf(server)!);
    listener.checkElsewhere((server) => this.#heldElsewhere(server));
    this.#timer = setInterval(() => void this.#checkPeers(), PEER_CHECK_MS);
    void this.#followEngine();
  }

  /** @internal Use {@link joinCluster}. */
  static async join(listener: AgentListener<Agent>, options: ClusterOptions): Promise<Cluster> {
    if (!NODE_NAME.test(options.node)) {
      throw new RangeError(
        `a cluster node's name is 1-64 letters, digits, - or _, not ${JSON.stringify(options.node)}`,
      );
    }
    const { connect } = await import("@nats-io/transport-node");
    const nc = await connect({
      name: `agent listener ${options.node}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      pingInterval: 10_000,
      ...options.engine,
      servers: options.servers,
    }).catch((e: Error) => {
      throw new ClusterError("engine-unavailable", `cannot reach the cluster's engine: ${e.message}`, { cause: e });
    });
    return new Cluster(nc, listener, options);
  }

  get #timeoutMs(): number {
    return this.options.requestTimeoutMs ?? 5000;
  }

  /** True while the node's engine connection is up. */
  get engineConnected(): boolean {
    return this.#engineUp;
  }

  /** Agents held here, proxied connections open (both ends), and whether the engine is up. */
  stats(): { held: number; streams: number; engineConnected: boolean } {
    return { held: this.#held.size, streams: this.#streams.size, engineConnected: this.#engineUp };
  }

  /**
   * `server`'s agent: the local one if it is connected here, else a proxy to the node holding it
   * (one per server, kept while it is open); undefined when no node holds it. Throws a
   * {@link ClusterError} ("engine-unavailable") when the engine cannot be asked.
   */
  agent(server: string): Promise<Agent | undefined> {
    const local = this.listener.agent(server);
    if (local) return Promise.resolve(local);
    const cached = this.#proxies.get(server);
    if (cached) return cached;
    const opening = this.#open(server).then((agent) => {
      if (!agent) this.#proxies.delete(server);
      else {
        void agent.closed.then(() => {
          if (this.#proxies.get(server) === opening) this.#proxies.delete(server);
        });
      }
      return agent;
    }, (e) => {
      this.#proxies.delete(server);
      throw e;
    });
    this.#proxies.set(server, opening);
    return opening;
  }

  /** Resolves with `server`'s agent once some node holds it. */
  async waitForAgent(server: string, timeoutMs = 30_000): Promise<Agent> {
    const deadline = Date.now() + timeoutMs;
    let last: Error | null = null;
    for (;;) {
      const agent = await this.agent(server).catch((e: Error) => (last = e, undefined));
      if (agent && !agent.client.isClosed) return agent;
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.#nudge(server, Math.min(left, 1000));
    }
    throw new ClusterError(
      "agent-not-connected",
      `server "${server}" connected to no node of the cluster within ${timeoutMs / 1000} s` +
        ((last as Error | null) ? ` (last: ${(last as unknown as Error).message})` : ""),
    );
  }

  /** Which node holds `server`'s agent, and whether it answers (null when none does). */
  async locate(server: string): Promise<{ node: string; remote: string; alive: boolean } | null> {
    const keyId = this.#keyId(server);
    const m = await this.nc.request(this.#agentSubject(keyId), json({ op: "ping", node: this.node }), {
      timeout: this.#timeoutMs,
    }).catch((e) => this.#noResponders(e));
    return m ? parse(m) : null;
  }

  /** Leaves the cluster: stops answering for this node's agents and closes every proxied connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#unobserve();
    this.listener.checkElsewhere(null);
    for (const s of this.#streams.values()) s.fail(`node ${this.node} left the cluster`);
    this.#streams.clear();
    await this.nc.close();
  }

  #event(event: ClusterEvent) {
    this.options.onEvent?.(event);
  }

  #keyId(server: string): string {
    const keyId = this.listener.keyIdOf(server);
    if (!keyId) throw new ClusterError("agent-not-connected", `server "${server}" is not in this listener's table`);
    return keyId;
  }

  #agentSubject(keyId: string): string {
    return `${this.#prefix}.agent.${keyId}`;
  }

  /** A NATS "no responders" answer means nobody holds it: null. Anything else: the engine failed. */
  #noResponders(e: unknown): null {
    const err = e as Error & { isNoResponders?: () => boolean };
    if (err.isNoResponders?.() || err.name === "NoRespondersError") return null;
    throw new ClusterError("engine-unavailable", `the cluster's engine did not answer: ${err.message}`, { cause: e });
  }

  #hold(server: string, keyId: string) {
    this.#held.get(server)?.subscription.unsubscribe();
    const subscription = this.nc.subscribe(this.#agentSubject(keyId), {
      callback: (_e, m) => void this.#onAgentRequest(server, m),
    });
    const since = Date.now();
    this.#held.set(server, { keyId, since, subscription });
    this.#claim(keyId, since);
    this.#wake(server);
  }

  #claim(keyId: string, since: number) {
    if (this.#engineUp) this.nc.publish(`${this.#prefix}.claim`, json({ keyId, node: this.node, since }));
  }

  #release(server: string) {
    const held = this.#held.get(server);
    if (!held) return;
    held.subscription.unsubscribe();
    this.#held.delete(server);
  }

  /** Another node connected an agent: wakes its waiters; two holding one key, the newest connection wins. */
  #onClaim(m: Msg) {
    const claim = parse<{ keyId: string; node: string; since: number }>(m);
    if (claim.node === this.node) return;
    const server = this.listener.serverOf(claim.keyId);
    if (!server) return;
    this.#wake(server);
    const mine = this.#held.get(server);
    if (!mine || mine.keyId !== claim.keyId) return;
    if (mine.since > claim.since || (mine.since === claim.since && this.node > claim.node)) {
      this.#claim(mine.keyId, mine.since); // mine is newer: the other node may have missed it (it was cut off)
      return;
    }
    this.#release(server);
    this.listener.drop(
      server,
      `superseded: the agent's key connected anew through node ${claim.node}; the newest connection wins`,
    );
    this.#event({ type: "superseded", server, node: claim.node });
  }

  async #onAgentRequest(server: string, m: Msg) {
    const request = parse<AgentRequest>(m);
    const agent = this.listener.agent(server);
    if (request.op === "ping") {
      const alive = agent ? await pingWithin(agent, 3000) : false;
      if (agent && !alive) this.listener.drop(server, "it did not answer a ping within 3 s: the connection is gone");
      m.respond(json({ node: this.node, remote: agent ? remoteOf(this.listener, server) : "", alive }));
      return;
    }
    if (!agent || !request.id || !NODE_NAME.test(request.node)) {
      m.respond(json({ ok: false, reason: `server "${server}" is not connected to node ${this.node}` }));
      return;
    }
    const peer = request.node, id = request.id;
    const stream = this.#stream(peer, id);
    const relay = new Relay(agent.client, stream, 4 * stream.window);
    void relay.run();
    m.respond(json({ ok: true, node: this.node, reply: agent.client.reply } satisfies OpenAnswer));
  }

  /** A proxied connection's stream with `peer`, registered under `<peer>.<id>` until it ends. */
  #stream(peer: string, id: string): EngineStream {
    const key = `${peer}.${id}`;
    const subject = `${this.#prefix}.conn.${peer}.${this.node}.${id}`;
    const stream = new EngineStream(
      (message) => this.nc.publish(subject, message),
      `node ${peer}`,
      this.options.windowBytes ?? WINDOW_BYTES,
      chunkBytesFor(this.nc.info?.max_payload ?? 1024 * 1024),
    );
    this.#streams.set(key, stream);
    void stream.closed.then(() => {
      if (this.#streams.get(key) === stream) this.#streams.delete(key);
    });
    return stream;
  }

  #deliver(m: Msg) {
    const subject = m.subject; // <prefix>.conn.<this node>.<peer>.<id>: the key is its last two tokens
    const key = subject.slice(subject.lastIndexOf(".", subject.lastIndexOf(".") - 1) + 1);
    this.#streams.get(key)?.deliver(m.data);
  }

  /** Opens a proxied connection to the node holding `server`'s agent. */
  async #open(server: string): Promise<Agent | undefined> {
    const keyId = this.#keyId(server);
    if (!this.#engineUp) throw new ClusterError("engine-unavailable", "the cluster's engine is not connected");
    const id = `${this.node}-${++this.#nextId}`; // unique both ways: `<peer>.<id>` keys this node's streams
    const m = await this.nc.request(this.#agentSubject(keyId), json({ op: "open", node: this.node, id }), {
      timeout: this.#timeoutMs,
    }).catch((e) => this.#noResponders(e));
    if (!m) return undefined;
    const answer = parse<OpenAnswer>(m);
    if (!answer.ok) return undefined; // it left that node between the two messages
    const stream = this.#stream(answer.node, id);
    const client = AgentClient.wrap(new FrameStream(new StreamReader(stream), null), answer.reply);
    void client.closed.then(() => stream.close());
    return new Agent(client);
  }

  /** Refuses a newcomer while another node holds the same agent and it still answers. */
  async #heldElsewhere(server: string): Promise<string | null> {
    if (!this.#engineUp) return null; // cut off, each node serves its own
    const found = await this.locate(server).catch(() => null);
    if (!found || !found.alive || found.node === this.node) return null;
    return `server "${server}" is already connected through node ${found.node} from ${found.remote}, which still answers`;
  }

  /** Closes the proxied connections with nodes that stopped answering. */
  async #checkPeers() {
    const peers = new Set<string>();
    for (const key of this.#streams.keys()) peers.add(key.slice(0, key.indexOf(".")));
    await Promise.all([...peers].map(async (peer) => {
      const gone = await this.nc.request(`${this.#prefix}.node.${peer}`, undefined, { timeout: PEER_CHECK_MS })
        .then(() => false, (e) => (e as { isNoResponders?: () => boolean }).isNoResponders?.() ? true : null);
      const misses = gone === false ? 0 : (this.#peerMisses.get(peer) ?? 0) + 1;
      this.#peerMisses.set(peer, misses);
      if (gone === true || misses >= 2) this.#peerLost(peer);
    }));
  }

  #peerLost(peer: string) {
    this.#peerMisses.delete(peer);
    let connections = 0;
    for (const [key, stream] of this.#streams) {
      if (!key.startsWith(`${peer}.`)) continue;
      stream.fail(`node ${peer} left the cluster`);
      connections++;
    }
    if (connections > 0) this.#event({ type: "node-lost", node: peer, connections });
  }

  async #followEngine() {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") {
        if (!this.#engineUp) continue;
        this.#engineUp = false;
        for (const stream of this.#streams.values()) stream.fail("the node lost the cluster's engine");
        this.#event({ type: "engine-lost", reason: `the connection to ${s.server} ended` });
      } else if (s.type === "reconnect") {
        this.#engineUp = true;
        for (const { keyId, since } of this.#held.values()) this.#claim(keyId, since); // duplicates made meanwhile
        this.#event({ type: "engine-restored", server: s.server });
      }
    }
  }

  #wake(server: string) {
    const set = this.#wakeups.get(server);
    this.#wakeups.delete(server);
    for (const w of set ?? []) w();
  }

  /** Waits up to `ms` or until an agent for `server` connects on some node. */
  #nudge(server: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const set = this.#wakeups.get(server) ?? new Set();
      this.#wakeups.set(server, set);
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.#wakeups.get(server) === set) this.#wakeups.delete(server);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }
}

function pingWithin(agent: Agent, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    agent.ping().then(() => true, () => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
  ]).finally(() => clearTimeout(timer));
}

function remoteOf(listener: AgentListener<Agent>, server: string): string {
  return listener.remoteOf(server) ?? "?";
}

/**
 * Joins `listener` to a cluster of listener nodes linked by NATS: its agents
 * become reachable from every node, and every node's agents from here. The
 * NATS client loads now (install `@nats-io/transport-node`); rejects with a
 * {@link ClusterError} when the engine cannot be reached at all.
 *
 * @example
 * ```ts
 * const cert = fs.readFileSync(process.env.LISTENER_CERT!, "utf8"), key = fs.readFileSync(process.env.LISTENER_KEY!, "utf8");
 * const listener = await listen({ port: 46340, cert, key, agents: { web1: process.env.WEB1_KEY! } });
 * const cluster = await joinCluster(listener, { servers: "nats://10.0.0.2:4222", node: "listener-a" });
 * console.log((await (await cluster.waitForAgent("web1")).info()).hostname);
 * await cluster.close();
 * await listener.close();
 * ```
 */
export function joinCluster(listener: AgentListener<Agent>, options: ClusterOptions): Promise<Cluster> {
  return Cluster.join(listener, options);
}
