/** The system service: host facts, environment, and the product's root working directory. @module */
import os from "node:os";
import { ServiceCode } from "../../core/session/contract.ts";
import type { HostContext, ServiceHandlers } from "./types.ts";

export function systemHandlers(context: HostContext, extensions: () => unknown[]): ServiceHandlers {
  return {
    [ServiceCode.SystemInfo]: () => ({
      fields: {
        hostname: os.hostname(),
        os: process.platform,
        arch: process.arch,
        cpus: os.cpus().length,
        memory: { total: os.totalmem(), free: os.freemem() },
        uptimeSeconds: Math.round(os.uptime()),
        pid: process.pid,
        extensions: extensions(),
      },
    }),
    [ServiceCode.SystemEnv]: () => ({ fields: { vars: { ...context.environment } } }),
    [ServiceCode.SystemProductRoot]: () => ({ fields: { path: context.productRoot } }),
  };
}
