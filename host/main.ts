/**
 * `agent host`: one product host process per session, started only by the
 * agent. It maps the session's channel file, proves it was launched by the
 * agent that wrote that file, loads the built-in services and the product's
 * extensions, and serves requests until told to end or until the agent goes.
 * @module
 */
import { fromHex, timingSafeEqual } from "../core/bytes.ts";
import { ChannelEnd } from "../core/shm/channel-end.ts";
import { hostDoorbell } from "../runtime/pipe-doorbell.ts";
import { decodeFrame, encodeFrameHeader, type Frame } from "../core/wire/frame.ts";
import { ServiceError } from "../core/errors.ts";
import { encodeError, ERROR_CODE } from "../core/wire/messages.ts";
import { ChannelHeader, checkChannel, Direction, FLAG_HOST_CLOSED } from "../core/shm/ring.ts";
import { HostControl, REPLY_CODE } from "../core/session/contract.ts";
import { decodeEnvelope, encodeEnvelopeParts, type Envelope } from "../core/session/protocol.ts";
import { Dispatcher } from "./dispatcher.ts";
import { mapFile } from "../runtime/mmap.ts";
import { IdleTrim } from "../runtime/malloc.ts";
import { serializeError } from "../core/wire/error-reply.ts";
import { type ExtensionReport, loadExtensions } from "./extensions.ts";
import { FilesService } from "./services/files.ts";
import { ProcessesService } from "./services/processes.ts";
import { systemHandlers } from "./services/system.ts";
import type { ExtensionHandler, HostContext, ServiceHandlers } from "./services/types.ts";
import fs from "node:fs";
import { currentAccount, launchEnvironment } from "../runtime/environment.ts";
import { dropPrivileges } from "../runtime/privileges.ts";

/** How often a held event looks again if no doorbell comes. */
const HELD_RECHECK_MS = 100;

/** Exit code when the host is started any way but by the agent. */
export const EXIT_NOT_FROM_AGENT = 64;
const REFUSAL =
  "agent host runs only when the agent starts it for a session; it cannot be started by hand (run `agent start`)";

interface HostArgs {
  channel: string;
  root: string;
  extensions: string;
  graceMs: number;
}

function parseArgs(argv: string[]): HostArgs | null {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : undefined;
  };
  const channel = get("channel"), root = get("root"), extensions = get("extensions");
  if (!channel || !root || !extensions) return null;
  return { channel, root, extensions, graceMs: Number(get("grace-ms") ?? 5000) };
}

/** A channel the launch check accepted: the agent that wrote it started this host. */
interface Launch {
  args: HostArgs;
  mapping: ReturnType<typeof mapFile>;
  header: ChannelHeader;
}

/**
 * Whether the agent started this host: its arguments, the nonce it passed, the channel file it
 * wrote and its pid. Null for any other launch (by hand, from a terminal, another parent).
 */
function checkLaunch(argv: string[]): Launch | null {
  const args = parseArgs(argv);
  const nonceHex = process.env.AGENT_HOST_NONCE;
  delete process.env.AGENT_HOST_NONCE; // never passed on to launched processes
  if (!args || !nonceHex || process.stdin.isTTY) return null;
  let size: number;
  try {
    size = fs.statSync(args.channel).size;
  } catch {
    return null;
  }
  const mapping = mapFile(args.channel, size);
  const header = new ChannelHeader(mapping.bytes);
  const nonce = fromHex(nonceHex);
  try {
    checkChannel(mapping.bytes);
  } catch {
    return null;
  }
  if (!nonce || !timingSafeEqual(nonce, header.nonce) || header.agentPid !== process.ppid) return null;
  return { args, mapping, header };
}

/** Exit code when the host cannot become the product's user it was started for. */
const EXIT_NO_IDENTITY = 71;

/**
 * Becomes the product's user the agent named (`--uid`, `--gid`, `--groups`), before the host
 * opens its channel or loads an extension; false if it cannot. Nothing to do without them.
 */
function becomeProductUser(argv: string[]): boolean {
  const at = argv.indexOf("--uid");
  if (at < 0) return true;
  const value = (name: string) => argv[argv.indexOf(`--${name}`) + 1] ?? "";
  const ids = (text: string) => text.split(",").filter(Boolean).map(Number);
  try {
    dropPrivileges({ uid: Number(value("uid")), gid: Number(value("gid")), groups: ids(value("groups")) });
    return true;
  } catch (e) {
    process.stderr.write(`cannot run as the product's user: ${(e as Error).message}\n`);
    return false;
  }
}

/** Runs the host; resolves with the exit code. */
export async function hostMain(argv: string[]): Promise<number> {
  if (!becomeProductUser(argv)) return EXIT_NO_IDENTITY;
  const launch = checkLaunch(argv);
  if (!launch) {
    process.stderr.write(`${REFUSAL}\n`);
    return EXIT_NOT_FROM_AGENT;
  }
  launch.header.hostPid = process.pid;
  const end = new ChannelEnd(
    launch.mapping.bytes,
    Direction.HostToAgent,
    Direction.AgentToHost,
    hostDoorbell(),
  );
  const host = await wire(launch, end);
  return await serve(host, launch, end);
}

/** A wired host: its services, every handler by code, and how it sends a frame to the agent. */
export interface Host {
  files: FilesService;
  processes: ProcessesService;
  handlers: Map<number, ExtensionHandler>;
  send(target: number, code: number, token: number, parts: readonly Uint8Array[]): Promise<void>;
}

/** Builds the services and the product's extensions on `end`, and tells the agent the host is ready. */
async function wire({ args, header }: Launch, end: ChannelEnd): Promise<Host> {
  const send = (target: number, code: number, token: number, parts: readonly Uint8Array[]) =>
    end.send([encodeFrameHeader(target, code, token), ...parts]);
  const emit: HostContext["emit"] = async (attachment, code, fields, data) => {
    // The agent holds this attachment's events while its client is not keeping up (docs/protocol.md §7).
    while (header.isHeld(attachment) && !end.closed) await end.rung(HELD_RECHECK_MS);
    await send(attachment, code, 0, encodeEnvelopeParts(fields, data));
  };
  let extensions: ExtensionReport[] = [];
  const host = builtInHost(args.root, emit, send, () => extensions);
  extensions = loadExtensions(args.extensions, host.handlers, args.root);
  for (const x of extensions) if (!x.ok) process.stderr.write(`extension ${x.name} not loaded: ${x.error}\n`);
  await send(0, HostControl.Ready, 0, encodeEnvelopeParts({ pid: process.pid, extensions }));
  return host;
}

/** The built-in services for `productRoot`, every handler by code; counts go to the agent as they change. */
export function builtInHost(
  productRoot: string,
  emit: HostContext["emit"],
  send: Host["send"],
  extensions: () => ExtensionReport[],
): Host {
  let statsQueued = false;
  const context: HostContext = {
    productRoot,
    environment: launchEnvironment(process.env, currentAccount()),
    emit,
    statsChanged() {
      if (statsQueued) return;
      statsQueued = true;
      setTimeout(() => {
        statsQueued = false;
        const counts = {
          openFiles: files.openCount,
          runningProcesses: processes.runningCount,
          processGroups: processes.processGroups,
        };
        send(0, HostControl.Stats, 0, encodeEnvelopeParts(counts)).catch(() => {});
      }, 0);
    },
  };
  const files = new FilesService(context);
  const processes = new ProcessesService(context);
  const handlers = new Map<number, ExtensionHandler>();
  const builtIn: ServiceHandlers[] = [files.handlers(), processes.handlers(), systemHandlers(context, extensions)];
  for (const table of builtIn) {
    for (const [code, h] of Object.entries(table)) handlers.set(Number(code), h as ExtensionHandler);
  }
  return { files, processes, handlers, send };
}

/** Answers one request with its handler's reply or the error it threw (no reply for token 0). */
async function answer(host: Host, attachment: number, token: number, code: number, request: Envelope | Error) {
  let payload: Uint8Array[], replyCode = REPLY_CODE;
  try {
    if (request instanceof Error) throw request;
    const handler = host.handlers.get(code);
    if (!handler) throw new ServiceError("unknown-code", `this host has no handler for code 0x${code.toString(16)}`);
    const result = await handler({ attachment, token, fields: request.fields, data: request.data });
    payload = encodeEnvelopeParts(result?.fields ?? {}, result?.data);
  } catch (e) {
    replyCode = ERROR_CODE;
    payload = [encodeError(serializeError(e))];
  }
  if (token !== 0) await host.send(attachment, replyCode, token, payload).catch(() => {});
}

/** Serves requests until the agent says to shut down or goes; resolves with the exit code. */
async function serve(host: Host, { args, header }: Launch, end: ChannelEnd): Promise<number> {
  const { files, processes } = host;
  const dispatcher = new Dispatcher();
  const idle = new IdleTrim();
  for (;;) {
    const record = await end.receive();
    if (record === null) break; // the agent is gone
    idle.activity();
    const frame = decodeFrame(record);
    // Target 0 is the agent itself; clients' frames arrive on their attachments' targets, never 0.
    if (frame.target === 0) {
      if (frame.code !== HostControl.Shutdown) continue;
      await shutdown(files, processes, args.graceMs);
      header.setFlag(FLAG_HOST_CLOSED);
      await host.send(0, REPLY_CODE, frame.token, encodeEnvelopeParts({})).catch(() => {});
      return 0;
    }
    await dispatch(host, dispatcher, frame);
  }
  await shutdown(files, processes, args.graceMs);
  return 0;
}

/**
 * Unpacks a client's request and starts answering it, in order with the requests it must follow.
 * Resolves once admitted: it waits while the session is at its cap, so the ring fills and the agent
 * holds further requests.
 */
export async function dispatch(host: Host, dispatcher: Dispatcher, frame: Frame): Promise<void> {
  let request: Envelope | Error;
  try {
    request = decodeEnvelope(frame.payload);
    if (!isMap(request.fields)) throw new ServiceError("invalid-argument", "a request's fields must be a map");
  } catch (e) {
    request = e as Error;
  }
  const key = request instanceof Error
    ? null
    : host.files.orderKey(frame.code, request.fields) ?? host.processes.orderKey(frame.code, request.fields);
  const reply = () => answer(host, frame.target, frame.token, frame.code, request);
  await dispatcher.admit(key, frame.payload.length, reply);
}

/** True for what MessagePack decodes a map to: the only shape request fields may have. */
function isMap(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype;
}

async function shutdown(files: FilesService, processes: ProcessesService, graceMs: number) {
  await files.closeAll();
  await processes.endAll(graceMs);
}
