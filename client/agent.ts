/**
 * One agent as a product sees it: sessions, and the agent's own answers
 * (info, ping). Whether it was reached inbound ({@link connect}), accepted
 * outbound ({@link listen}) or runs in-process ({@link LocalAgent}), it is
 * the same object.
 * @module
 */
import type { AgentClient } from "../core/client/agent-client.ts";
import { listSessions, RemoteSession } from "../core/client/remote-session.ts";
import type { AgentInfo, UpgradeOutcome } from "../core/wire/messages.ts";
import type { UpdateOptions } from "../core/client/update.ts";
import type { SessionSummary } from "../core/session/protocol.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";

// Every way a library user reaches an agent (connect, listen, LocalAgent) goes through this class.
useUninitializedAllocation();

/**
 * A connection to an agent, with sessions.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const { hostname, version } = await agent.info();
 * const session = await agent.openSession("buildmaster");
 * console.log(hostname, version, (await agent.listSessions()).length >= 1);
 * await session.close();
 * agent.close();
 * ```
 */
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

  /** The agent's sessions, with their product, clients, open files and running processes. */
  listSessions(): Promise<SessionSummary[]> {
    return listSessions(this.client);
  }

  /** Version, protocol range, OS, architecture, host name, uptime and runtime of the agent. */
  info(): Promise<AgentInfo> {
    return this.client.info();
  }

  /** A round trip to the agent, with the agent's clock. */
  ping(): Promise<{ rttMs: number; agentTimeMs: number }> {
    return this.client.ping();
  }

  /**
   * Pushes `binary` (the bytes of a new `agent` executable) as the agent's new program, streamed with
   * its SHA-256 and, where the agent's operator configured release keys, `options.signature`. The
   * agent checks it, hands over to it and answers with the {@link UpgradeOutcome}; a refusal rejects
   * with a `RemoteError` whose code says why (`update-not-allowed`, `update-digest-mismatch`,
   * `update-signature-invalid`, `update-too-large`, `upgrade-failed`, …). The hand-over may end this
   * connection after the reply: connect again to carry on. docs/operations.md "Pushed updates".
   */
  update(binary: Uint8Array, options: UpdateOptions = {}): Promise<UpgradeOutcome> {
    return this.client.update(binary, options);
  }

  /** Resolves when the connection ends, with the reason. */
  get closed(): Promise<Error> {
    return this.client.closed;
  }

  /** Closes the connection; sessions stay on the agent until their reconnect grace runs out. */
  close(): void {
    this.client.close();
  }
}
