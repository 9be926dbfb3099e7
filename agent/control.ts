/**
 * The local control endpoint: a Unix socket (mode 0600) in the state
 * directory that only the agent's owner can reach. One JSON request per
 * connection, one JSON line back. `agent status` is its client.
 *
 * @example
 * ```ts
 * const control = await serveControl(socketPath, () => server.status());
 * const status = await requestControl(socketPath, "status");
 * ```
 * @module
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { NotRunningError } from "./errors.ts";

/** Socket file name inside the state directory. */
export const CONTROL_SOCKET = "agent.sock";

/** The control socket path for a state directory. */
export function controlPath(stateDir: string): string {
  return path.join(stateDir, CONTROL_SOCKET);
}

/**
 * Serves `status` requests. Refuses to start if another agent answers on the
 * socket; removes a stale socket left by one that crashed.
 */
export async function serveControl(
  socketPath: string,
  handlers: ControlHandlers,
): Promise<{ close(): Promise<void> }> {
  if (fs.existsSync(socketPath)) {
    const alive = await requestControl(socketPath, "status", 1000).then((s) => s as { pid?: number }, () => null);
    if (alive) {
      throw new Error(
        `another agent (pid ${alive.pid}) is already running with this state directory; stop it first or use --state-dir`,
      );
    }
    fs.rmSync(socketPath, { force: true });
  }
  const server = net.createServer((socket) => {
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      if (buffer.length > 4096) return socket.destroy();
      const nl = buffer.indexOf("\n");
      if (nl < 0) return;
      socket.pause(); // one request per connection
      const line = buffer.slice(0, nl);
      answer(line, handlers).then((reply) => socket.end(JSON.stringify(reply) + "\n", () => handlers.answered?.(line)));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o600);
  return {
    // Stops listening without waiting for open requests: an upgrade's answer goes out after this.
    close: () => {
      server.close();
      fs.rmSync(socketPath, { force: true });
      return Promise.resolve();
    },
  };
}

/** What the control socket answers: `status` always; `upgrade` where the agent can hand over (agent/upgrade.ts). */
export interface ControlHandlers {
  status(): unknown;
  /** Hands over to the program in `file`, or to the installed one when `file` is absent. */
  upgrade?(file: string | undefined): Promise<unknown>;
  /** Called once the answer to `request` (its line) is written. */
  answered?(request: string): void;
}

/** One request line's answer: `{ ok: true, status }` or `{ ok: false, error }`. */
async function answer(line: string, handlers: ControlHandlers): Promise<unknown> {
  let request: { command?: unknown; file?: unknown };
  try {
    request = JSON.parse(line);
  } catch {
    return { ok: false, error: "malformed request" };
  }
  try {
    if (request.command === "status") return { ok: true, status: handlers.status() };
    if (request.command === "upgrade" && handlers.upgrade) {
      const file = typeof request.file === "string" ? request.file : undefined;
      return { ok: true, status: await handlers.upgrade(file) };
    }
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
  return { ok: false, error: `unknown command ${JSON.stringify(request.command)}` };
}

/** Sends one command and resolves with the agent's answer; {@link NotRunningError} if nobody answers. */
export function requestControl(
  socketPath: string,
  command: string,
  timeoutMs = 5000,
  fields: Record<string, unknown> = {},
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new NotRunningError(`the agent at ${socketPath} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify({ ...fields, command }) + "\n"));
    socket.on("data", (c: string) => (buffer += c));
    socket.on("end", () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(buffer) as { ok: boolean; status?: unknown; error?: string };
        if (reply.ok) resolve(reply.status);
        else reject(new Error(reply.error));
      } catch {
        reject(new Error(`the agent's control socket sent an unreadable reply`));
      }
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === "ENOENT" || e.code === "ECONNREFUSED") {
        reject(new NotRunningError(`no agent is running (no control socket answers at ${socketPath})`, { cause: e }));
      } else if (e.code === "EACCES") {
        reject(new NotRunningError(`permission denied on ${socketPath}: run as the agent's user`, { cause: e }));
      } else reject(e);
    });
  });
}
