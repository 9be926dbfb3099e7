/**
 * The system service as a product author calls it: facts about the agent's
 * machine, its environment, and the product's root working directory.
 *
 * @example
 * ```ts
 * const { hostname, os, cpus } = await session.system.info();
 * const path = await session.system.productRoot();
 * ```
 * @module
 */
import { ServiceCode, type SystemInfo } from "../session/contract.ts";
import type { SessionCalls } from "./calls.ts";

/**
 * Host facts, environment variables and the product's root directory.
 *
 * @example
 * ```ts
 * const agent = await connect({ host: process.env.AGENT_HOST!, port: Number(process.env.AGENT_PORT), key: process.env.AGENT_KEY! });
 * const session = await agent.openSession("buildmaster");
 * const { hostname, cpus } = await session.system.info();
 * console.log(hostname, cpus, (await session.system.productRoot()) === session.productRoot); // … true
 * await session.close();
 * agent.close();
 * ```
 */
export class SystemApi {
  constructor(readonly session: SessionCalls) {}

  /** Host name, OS, architecture, CPUs, memory, uptime, the host's pid and its extensions. */
  async info(): Promise<SystemInfo> {
    return (await this.session.call(ServiceCode.SystemInfo, {})).fields;
  }

  /** The environment the agent's processes start with. */
  async env(): Promise<Record<string, string>> {
    return (await this.session.call(ServiceCode.SystemEnv, {})).fields.vars;
  }

  /** The product's root working directory on the agent's machine. */
  async productRoot(): Promise<string> {
    return (await this.session.call(ServiceCode.SystemProductRoot, {})).fields.path;
  }
}
