/**
 * The client library for products: drive agents from TypeScript on Node or Deno.
 *
 * ```ts
 * import { connect } from "./mod.ts";
 *
 * const agent = await connect({ host: "server1", key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const result = await session.processes.run({ program: "uname", args: ["-a"] });
 * console.log(new TextDecoder().decode(result.stdout), result.code);
 * await session.files.writeFile("/tmp/app.tar", await Deno.readFile("app.tar"));
 * await session.close();
 * agent.close();
 * ```
 *
 * `LocalAgent` does the same for the machine the product runs on, with no
 * network: it starts host processes directly.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { acceptChannel } from "./core/secure/accept.ts";
import { AgentClient } from "./core/client/agent-client.ts";
import { webCryptoProvider } from "./core/secure/crypto.ts";
import { parseKey } from "./core/secure/keys.ts";
import { memoryStreamPair } from "./core/wire/memory-stream.ts";
import { listSessions, RemoteSession } from "./core/client/remote-session.ts";
import { ClientConnection } from "./agent/connection.ts";
import { RING_CAPACITY, SessionManager } from "./agent/sessions.ts";
import { runtimeCryptoProvider, runtimeInfo } from "./runtime/crypto.ts";
import { dialTcp } from "./runtime/tcp.ts";
import { DEFAULT_PORT, defaultStateDir } from "./agent/config.ts";
import { PROTOCOL_VERSIONS } from "./core/wire/hello.ts";
import { VERSION } from "./core/version.ts";
import { AgentListener, type ListenerOptions } from "./client/listener.ts";
export { AgentListener } from "./client/listener.ts";

export * from "./core/errors.ts";
export { generateKey, keyId, parseKey } from "./core/secure/keys.ts";
export { RemoteSession } from "./core/client/remote-session.ts";
export type { ExitStatus, FileInfo, ListEntry, RemoteFile, RemoteProcess, StartOptions } from "./core/client/services.ts";
export type { AgentInfo } from "./core/wire/messages.ts";
export type { SessionSummary } from "./core/session/protocol.ts";

/** A connection to an agent, with sessions. */
export class Agent {
  constructor(readonly client: AgentClient) {}

  /** Opens a new session (a host process) for `product`. */
  openSession(product: string): Promise<RemoteSession> {
    return RemoteSession.open(this.client, product);
  }

  /** Attaches to a session another client opened. */
  attachSession(sessionId: string): Promise<RemoteSession> {
    return RemoteSession.attach(this.client, sessionId);
  }

  listSessions() {
    return listSessions(this.client);
  }

  info() {
    return this.client.info();
  }

  ping() {
    return this.client.ping();
  }

  /** Resolves when the connection ends, with the reason. */
  get closed(): Promise<Error> {
    return this.client.closed;
  }

  close(): void {
    this.client.close();
  }
}

/** Options for {@link listen}: certificate, key, and the table of servers and their agents' keys. */
export type { ListenerEvent, ListenerOptions, AgentEntry } from "./client/listener.ts";

/**
 * Listens for outbound agents (servers behind NAT dial in over TLS). Each
 * connected agent is an {@link Agent}, looked up by server name.
 */
export function listen(options: ListenerOptions): Promise<AgentListener<Agent>> {
  return AgentListener.start(options, (client) => new Agent(client));
}

/** Where and how to reach an inbound agent. */
export interface ConnectOptions {
  host: string;
  port?: number;
  /** The agent's key: 64 hex digits or 32 bytes. */
  key: string | Uint8Array;
  timeoutMs?: number;
}

/** Connects to an agent that listens (inbound mode) and authenticates with its key. */
export async function connect(options: ConnectOptions): Promise<Agent> {
  const key = typeof options.key === "string" ? parseKey(options.key).bytes : options.key;
  const stream = await dialTcp(options.host, options.port ?? DEFAULT_PORT, { timeoutMs: options.timeoutMs ?? 10_000 });
  return new Agent(await AgentClient.open(stream, { key, provider: runtimeCryptoProvider() }));
}

/** Options for {@link LocalAgent.start}. */
export interface LocalAgentOptions {
  /** Where product roots live; the agent's usual state directory by default. */
  stateDir?: string;
  idleTimeoutSeconds?: number;
  processGraceSeconds?: number;
  /** argv prefix that runs the agent program; this checkout's dist/agent (or its sources) by default. */
  agentCommand?: string[];
}

/** This checkout's agent: the built single executable if present, else the sources on this runtime. */
function defaultAgentCommand(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno) return [deno.execPath(), "run", "-A", path.join(here, "cli/main.ts")];
  const built = path.join(here, "dist/agent");
  if (fs.existsSync(built)) return [built];
  return [process.execPath, ...process.execArgv, path.join(here, "cli/main.ts")];
}

/**
 * An agent for this machine with no network: sessions run in host processes
 * started directly by this process, over the same shared-memory channel.
 */
export class LocalAgent extends Agent {
  private constructor(client: AgentClient, readonly sessions: SessionManager) {
    super(client);
  }

  static async start(options: LocalAgentOptions = {}): Promise<LocalAgent> {
    const stateDir = options.stateDir ?? defaultStateDir(process.env);
    const sessions = new SessionManager({
      stateDir,
      runDir: path.join(stateDir, `run-local-${process.pid}`),
      products: null,
      idleTimeoutMs: (options.idleTimeoutSeconds ?? 1800) * 1000,
      reconnectGraceMs: 0,
      replayLimitBytes: 16 * 1024 * 1024,
      ringCapacity: RING_CAPACITY,
      processGraceMs: (options.processGraceSeconds ?? 5) * 1000,
      hostCommand: options.agentCommand ?? defaultAgentCommand(),
      log: () => {},
    });
    const [clientSide, agentSide] = memoryStreamPair();
    // The pair never leaves this process, so the channel needs no encryption.
    const accepting = acceptChannel(agentSide, { keys: [], provider: webCryptoProvider, insecure: true });
    const client = await AgentClient.open(clientSide, { provider: webCryptoProvider, insecure: true });
    const accepted = await accepting;
    if (!accepted.ok) throw new Error(`local agent failed to start: ${accepted.detail}`);
    const info = () => ({
      version: VERSION, protocol: { ...PROTOCOL_VERSIONS, current: accepted.version }, os: process.platform, arch: process.arch,
      hostname: os.hostname(), uptimeSeconds: Math.round(process.uptime()), runtime: runtimeInfo(),
    });
    new ClientConnection(accepted.channel, "local", sessions, { info }).serve();
    return new LocalAgent(client, sessions);
  }

  /** Ends every session and the in-process agent. */
  async stop(): Promise<void> {
    await this.sessions.shutdown();
    this.close();
  }
}
