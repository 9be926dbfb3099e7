/**
 * What `agent run` and `agent cp` share: the key to use, the connection and
 * session through the client library, and one exit code per way that fails.
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { connect, DialError } from "../../client/connect.ts";
import type { Agent } from "../../client/agent.ts";
import {
  AuthenticationError,
  ConnectionClosedError,
  InvalidArgumentError,
  IsADirectoryError,
  KeyRejectedError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  ProtocolError,
  SessionEndedError,
  TimeoutError,
  UnknownProductError,
  VersionMismatchError,
} from "../../core/errors.ts";
import { parseKey } from "../../core/secure/keys.ts";
import type { RemoteSession } from "../../core/client/remote-session.ts";
import { resolveConfig } from "../../agent/config.ts";
import { type Flags, str } from "../flags.ts";
import { DEFAULT_KEY_FILE, readKeyFile } from "../../agent/keystore.ts";
import { CommandFailure, ExitError, type Failure } from "../errors.ts";
import { DEFAULT_PORT } from "../../core/wire/hello.ts";
import { CLI_PRODUCT } from "./product.ts";

/** The agent's key: --key, --key-file, AGENT_KEY_FILE, or this machine's own agent key when readable. */
export function keyFromFlags(flags: Flags): Uint8Array | undefined {
  const inline = str(flags.key);
  if (inline !== undefined) return parseKey(inline, "--key").bytes;
  const file = str(flags.keyFile) ?? process.env.AGENT_KEY_FILE;
  if (file !== undefined) return parseKey(readKeyFile(file)[0], file).bytes;
  // On the agent's own machine, its key file is the natural default.
  const local = path.join(resolveConfig(flags, process.env).stateDir, DEFAULT_KEY_FILE);
  if (fs.existsSync(local)) return parseKey(readKeyFile(local)[0], local).bytes;
  return undefined;
}

/** Deno reports some system errors by number in the message ("… (os error 28)") where Node sets `code`. */
const OS_ERRORS: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  13: "EACCES",
  28: "ENOSPC",
  32: "EPIPE",
  122: "EDQUOT",
};

/** The system error code of `e` ("ENOSPC", "EPIPE", …) on either runtime, if it has one. */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string") return code;
  const n = /\(os error (\d+)\)/.exec((e as Error | null)?.message ?? "")?.[1];
  return n === undefined ? undefined : OS_ERRORS[Number(n)];
}

/** Which {@link Failure} an error from the library (or the local file system) is. */
export function failureOf(e: unknown): Failure {
  if (e instanceof DialError) {
    return e.stage === "unresolved" ? "unresolved" : e.stage === "timeout" ? "timeout" : "refused";
  }
  if (e instanceof AuthenticationError || e instanceof KeyRejectedError) return "wrong-key";
  if (e instanceof VersionMismatchError) return "incompatible";
  if (e instanceof UnknownProductError) return "unknown-product";
  if (e instanceof NotFoundError) return "remote-not-found";
  if (e instanceof IsADirectoryError) return "remote-is-directory";
  if (e instanceof NotADirectoryError) return "remote-not-directory";
  if (e instanceof PermissionDeniedError) return "permission-denied";
  if (e instanceof InvalidArgumentError) return "invalid-argument";
  if (e instanceof ConnectionClosedError || e instanceof SessionEndedError) return "connection-lost";
  if (e instanceof TimeoutError) return "timeout";
  if (e instanceof ProtocolError) return "not-an-agent";
  const code = errorCode(e);
  if (code === "ENOSPC" || code === "EDQUOT") return "local-disk-full";
  if (code === "ENOENT") return "local-not-found";
  if (code === "EACCES" || code === "EPERM") return "permission-denied";
  return "failed";
}

/** Rethrows `e` as the command's {@link CommandFailure}, prefixing `what` failed. */
export function fail(e: unknown, codes: Record<Failure, number>, what?: string): never {
  if (e instanceof ExitError) throw e;
  const failure = failureOf(e);
  let message = (e as Error).message ?? String(e);
  if (failure === "wrong-key") {
    message = `${message} (check --key-file; \`agent keygen --show FILE\` names a file's key id)`;
  }
  if (failure === "local-disk-full") message = `no space left on the local disk: ${message}`;
  throw new CommandFailure(failure, what ? `${what}: ${message}` : message, codes, { cause: e });
}

/** Splits "host:port", "[v6]:port" or "host" (default port); a bad one exits with `usageCode`. */
export function parseAddress(target: string, usageCode: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(target) ?? /^([^:]+)(?::(\d+))?$/.exec(target);
  if (!m) throw new ExitError(usageCode, `"${target}" is not host:port (write IPv6 addresses as [::1]:46336)`);
  const port = m[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ExitError(usageCode, `port in "${target}" must be 1-65535`);
  }
  return { host: m[1], port };
}

/** Connects and opens a session for --product (default {@link CLI_PRODUCT}); failures become exit codes. */
export async function openRemote(
  address: { host: string; port: number },
  flags: Flags,
  codes: Record<Failure, number>,
): Promise<{ agent: Agent; session: RemoteSession }> {
  let key: Uint8Array | undefined;
  try {
    key = keyFromFlags(flags);
  } catch (e) {
    throw new CommandFailure("usage", (e as Error).message, codes);
  }
  if (!key) {
    throw new CommandFailure("usage", "no key: pass --key-file FILE (the agent's key; see `agent keygen`)", codes);
  }
  const timeoutMs = Number(flags.timeout ?? 10) * 1000;
  const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
  let agent: Agent;
  try {
    agent = await connect({ ...address, key, timeoutMs });
  } catch (e) {
    fail(e, codes, e instanceof DialError ? undefined : where); // a dial error names the address itself
  }
  try {
    return { agent, session: await agent.openSession(str(flags.product) ?? CLI_PRODUCT) };
  } catch (e) {
    agent.close();
    fail(e, codes, `${where}: opening a session`);
  }
}
