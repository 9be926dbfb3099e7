/**
 * The client library for products: drive agents from TypeScript on Node or Deno.
 * Everything here comes from `client/` and the runtime-free `core/`.
 *
 * ```ts
 * import { connect } from "./mod.ts";
 *
 * const agent = await connect({ host: "server1", key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const result = await session.processes.run({ program: "uname", args: ["-a"] });
 * console.log(new TextDecoder().decode(result.stdout), result.code);
 * await session.close();
 * agent.close();
 * ```
 *
 * `LocalAgent` (in `local.ts`, the package's `./local` export) does the same
 * for the machine the product runs on, with no network.
 * @module
 */
export { Agent } from "./client/agent.ts";
export { connect, type ConnectOptions, DialError } from "./client/connect.ts";
export {
  type FleetOptions,
  type FleetResult,
  type FleetTarget,
  type RolloutOptions,
  type RolloutResult,
  rollOutUpdate,
  runOnAgents,
} from "./client/fleet.ts";
export type { UpdateOptions } from "./core/client/update.ts";
export {
  type AgentEntry,
  AgentListener,
  listen,
  type ListenerEvent,
  type ListenerOptions,
  type ListenerStats,
} from "./client/listener.ts";
export { RemoteSession } from "./core/client/remote-session.ts";
export type { CallOptions } from "./core/client/abort.ts";
export {
  type ChunkReader,
  FilesApi,
  type ReadStreamOptions,
  RemoteFile,
  type TransferOptions,
} from "./core/client/files.ts";
export { ProcessesApi, RemoteProcess } from "./core/client/processes.ts";
export { SystemApi } from "./core/client/system.ts";
export type {
  ExitStatus,
  FileInfo,
  ListEntry,
  OpenFlags,
  ProcessEntry,
  StartOptions,
  SystemInfo,
} from "./core/session/contract.ts";
export type { AgentInfo, UpgradeOutcome } from "./core/wire/messages.ts";
export type { SessionSummary } from "./core/session/protocol.ts";
export { generateKey, keyId, parseKey } from "./core/secure/keys.ts";
export * from "./core/errors.ts";
