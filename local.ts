/**
 * `LocalAgent`: the client library's API for the machine the product runs on,
 * with no network. Sessions run in host processes started directly by the
 * product's own process, over the same shared-memory channel as a server's.
 *
 * A separate entry point because it carries the agent's session code and, on
 * Node, needs the optional dependency `koffi` for mmap; `connect` and `listen`
 * (the main entry) need neither. Host processes run the `agent` program, which
 * must be on the PATH (or name it with `agentCommand`).
 *
 * ```ts
 * import { LocalAgent } from "./local.ts";
 *
 * const local = await LocalAgent.start();
 * const session = await local.openSession("buildmaster");
 * console.log((await session.system.info()).hostname);
 * await local.close();
 * ```
 * @module
 */
export { LocalAgent, type LocalAgentOptions } from "./client/local.ts";
