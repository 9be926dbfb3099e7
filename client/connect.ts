/**
 * Inbound mode from the product's side: dial an agent that listens and
 * authenticate with its key.
 * @module
 */
import { AgentClient } from "../core/client/agent-client.ts";
import { parseKey } from "../core/secure/keys.ts";
import { DEFAULT_PORT } from "../core/wire/hello.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { dialTcp } from "../runtime/tcp.ts";

export { DialError } from "../runtime/errors.ts";
import { Agent } from "./agent.ts";

/**
 * Where and how to reach an inbound agent.
 *
 * @example
 * ```ts
 * const options: ConnectOptions = { host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY!, timeoutMs: 5000 };
 * (await connect(options)).close();
 * ```
 */
export interface ConnectOptions {
  host: string;
  /** 46336 unless the agent was told otherwise. */
  port?: number;
  /** The agent's key: 64 hex digits or 32 bytes. */
  key: string | Uint8Array;
  /** Time allowed to connect (default 10 s). */
  timeoutMs?: number;
}

/**
 * Connects to an agent that listens (inbound mode) and authenticates with its key.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const result = await session.processes.run({ program: "uname", args: ["-s"] });
 * console.log(new TextDecoder().decode(result.stdout).trim(), result.code); // e.g. "Linux 0"
 * await session.close();
 * agent.close();
 * ```
 */
export async function connect(options: ConnectOptions): Promise<Agent> {
  const key = typeof options.key === "string" ? parseKey(options.key).bytes : options.key;
  const stream = await dialTcp(options.host, options.port ?? DEFAULT_PORT, { timeoutMs: options.timeoutMs ?? 10_000 });
  return new Agent(await AgentClient.open(stream, { key, provider: runtimeCryptoProvider() }));
}
