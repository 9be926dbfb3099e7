/**
 * The machine the product runs on, as an agent with no network (the seed's
 * LOCALHOST server): sessions run in host processes that this process
 * starts directly, over the same shared-memory channel. The one part of the
 * library that brings in the agent server and its FFI.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ClientConnection } from "../agent/connection.ts";
import { defaultStateDir } from "../agent/state-dir.ts";
import { SessionManager, sessionSettings } from "../agent/sessions.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { respond } from "../core/secure/opening.ts";
import { EncryptionMode } from "../core/wire/hello.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { denoRunCommand } from "../runtime/heap.ts";
import { silent } from "../runtime/log.ts";
import { checkMmapAvailable } from "../runtime/mmap.ts";
import { Agent } from "./agent.ts";

/**
 * Options for {@link LocalAgent.start}.
 *
 * @example
 * ```ts
 * const options: LocalAgentOptions = { stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "local-")), idleTimeoutSeconds: 60 };
 * await (await LocalAgent.start(options)).stop();
 * ```
 */
export interface LocalAgentOptions {
  /** Where product roots live; the agent's usual state directory by default. */
  stateDir?: string;
  idleTimeoutSeconds?: number;
  processGraceSeconds?: number;
  /** argv prefix that runs the agent program: this checkout's dist/agent (or its sources), or `agent` on the PATH from the installed package. */
  agentCommand?: string[];
}

/**
 * The agent program that runs host processes: in a checkout, its built single
 * executable or else its sources on this runtime; from the installed package,
 * `agent` on the PATH.
 */
function defaultAgentCommand(): string[] {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const sources = path.join(root, "cli/main.ts");
  if (!fs.existsSync(sources)) return ["agent"];
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno) return denoRunCommand(deno.execPath(), sources);
  const built = path.join(root, "dist/agent");
  if (fs.existsSync(built)) return [built];
  return [process.execPath, ...process.execArgv, sources];
}

/**
 * An agent for this machine with no network: sessions run in host processes
 * started directly by this process, over the same shared-memory channel.
 *
 * @example
 * ```ts
 * const local = await LocalAgent.start({ stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "local-")) });
 * const session = await local.openSession("buildmaster");
 * await session.files.writeFile("hello.txt", new TextEncoder().encode("hi"));
 * console.log((await session.files.stat("hello.txt")).size); // 2
 * await local.close();
 * ```
 */
export class LocalAgent extends Agent {
  private constructor(client: AgentClient, readonly sessions: SessionManager, readonly runDir: string) {
    super(client);
  }

  /** Starts the in-process agent. */
  static async start(options: LocalAgentOptions = {}): Promise<LocalAgent> {
    checkMmapAvailable();
    const startedAt = Date.now();
    const stateDir = options.stateDir ?? defaultStateDir(process.env);
    const config = {
      stateDir,
      products: null,
      warmHosts: 0, // a product's own process: no spare hosts it did not ask for
      idleTimeoutSeconds: options.idleTimeoutSeconds ?? 1800,
      reconnectGraceSeconds: 0, // its one client is in this process: it cannot come back
      replayLimitMiB: 16,
      processGraceSeconds: options.processGraceSeconds ?? 5,
    };
    const runDir = path.join(stateDir, `run-local-${process.pid}`);
    const hostCommand = options.agentCommand ?? defaultAgentCommand();
    const sessions = new SessionManager(sessionSettings(config, { runDir, hostCommand, log: silent }));
    const [clientSide, agentSide] = memoryStreamPair();
    // The pair never leaves this process, so it needs no encryption.
    const responding = respond(agentSide, { mode: EncryptionMode.None, keys: [], provider: webCryptoProvider });
    const client = await AgentClient.open(clientSide, { provider: webCryptoProvider, insecure: true });
    const accepted = await responding;
    if (!accepted.ok) throw new Error(`local agent failed to start: ${accepted.error.message}`);
    new ClientConnection(accepted.frames, "local", sessions, startedAt).serve();
    return new LocalAgent(client, sessions, runDir);
  }

  /**
   * Ends every session and the in-process agent, and removes its run directory; as
   * {@link Agent.close}, but it resolves once the host processes have ended.
   *
   * @example
   * ```ts
   * const local = await LocalAgent.start({ stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "local-")) });
   * await local.close();
   * console.log(fs.existsSync(local.runDir)); // false
   * ```
   */
  override async close(): Promise<void> {
    await this.sessions.shutdown();
    super.close();
    fs.rmSync(this.runDir, { recursive: true, force: true });
  }

  /**
   * The same as {@link LocalAgent.close}, by its older name.
   *
   * @example
   * ```ts
   * await (await LocalAgent.start({ stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "local-")) })).stop();
   * ```
   */
  stop(): Promise<void> {
    return this.close();
  }
}
