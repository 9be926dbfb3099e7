/**
 * Fuzz targets past the opening: every meta message's fields as a real agent connection reads
 * them, and every service code's request as a real host's request path (host/main.ts `dispatch`)
 * takes it, on a temp directory, so file operations are real but stay inside it.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ServiceCode } from "../../core/session/contract.ts";
import { decodeEnvelope, encodeEnvelope } from "../../core/session/protocol.ts";
import { isErrorCode } from "../../core/errors.ts";
import { decodeError, encodeFields, ERROR_CODE, MetaCode } from "../../core/wire/messages.ts";
import { encodeFrame, type Frame } from "../../core/wire/frame.ts";
import { memoryStreamPair } from "../../core/wire/memory-stream.ts";
import { StreamReader } from "../../core/wire/stream.ts";
import { FrameStream } from "../../core/secure/frame-stream.ts";
import { ClientConnection } from "../../agent/connection.ts";
import { SessionManager, sessionSettings } from "../../agent/sessions.ts";
import { UpdateReceiver } from "../../agent/updates.ts";
import { silent } from "../../runtime/log.ts";
import { InProcessHost } from "../helpers/in-process-host.ts";
import { mutate, mutateFields, type Random, randomValue } from "./random.ts";
import { Finding, type FuzzTarget } from "./wire-targets.ts";

/** Longest a request may take before it counts as a hang. */
export const ANSWER_BOUND_MS = 10_000;

/** Resolves with `promise`, or throws a {@link Finding} after {@link ANSWER_BOUND_MS}. */
async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Finding(`${what}: no answer within ${ANSWER_BOUND_MS} ms`)), ANSWER_BOUND_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An error reply must carry a registered code, and never `failed`: that is an unclassified throw. */
function checkError(error: { code: string; message: string }, what: string): void {
  if (error.code === "failed" || !isErrorCode(error.code)) {
    throw new Finding(`${what}: error reply ${error.code}: ${error.message}`);
  }
}

/** [code, fields, bytes] of a valid request for each service code. */
const SERVICE_SEEDS: Array<[number, Record<string, unknown>, number]> = [
  [ServiceCode.FileStat, { path: "a.txt" }, 0],
  [ServiceCode.FileList, { path: ".", recursive: true, include: ["**/*.txt", "d/?"], exclude: ["d/e/*"] }, 0],
  [ServiceCode.FileMkdir, { path: "d/n/m", recursive: true, mode: 0o755 }, 0],
  [ServiceCode.FileDelete, { path: "d/e", recursive: true }, 0],
  [ServiceCode.FileCopy, { from: "d", to: "d2", overwrite: true }, 0],
  [ServiceCode.FileMove, { from: "a.txt", to: "d/a.txt" }, 0],
  [ServiceCode.FileSetTimes, { path: "a.txt", atimeMs: 1e12, mtimeMs: 2e12 }, 0],
  [ServiceCode.FileSetMode, { path: "a.txt", mode: 0o600 }, 0],
  [ServiceCode.FileSha256, { path: "big.bin" }, 0],
  [ServiceCode.FileOpen, { path: "a.txt", flags: "r+", mode: 0o644, sha256: true }, 0],
  [ServiceCode.FileRead, { handle: 1, length: 100, position: 0 }, 0],
  [ServiceCode.FileWrite, { handle: 1, position: 2 }, 5],
  [ServiceCode.FileSeek, { handle: 1, position: 3, whence: "end" }, 0],
  [ServiceCode.FileClose, { handle: 1 }, 0],
  [ServiceCode.FileWriteBatch, { files: [{ path: "w1", size: 3 }, { path: "d/w2", size: 2, mode: 0o600 }] }, 5],
  [ServiceCode.FileReadBatch, { paths: ["a.txt", "d/x", "big.bin"] }, 0],
  [ServiceCode.ProcessStart, { program: "echo", args: ["hi"], cwd: ".", env: { A: "b" }, clearEnv: false }, 0],
  [ServiceCode.ProcessWrite, { id: 1 }, 3],
  [ServiceCode.ProcessCloseStdin, { id: 1 }, 0],
  [ServiceCode.ProcessSignal, { id: 1, signal: "SIGTERM" }, 0],
  [ServiceCode.ProcessWait, { id: 1 }, 0],
  [ServiceCode.ProcessList, {}, 0],
  [ServiceCode.ProcessRun, { program: "true", args: [] }, 2],
  [ServiceCode.SystemInfo, {}, 0],
  [ServiceCode.SystemEnv, {}, 0],
  [ServiceCode.SystemProductRoot, {}, 0],
  [0x1000, { any: 1 }, 0],
  [0xfff0, {}, 0],
];
/** Codes that start a process: a few percent of the cases, as each costs a fork. */
const STARTS = new Set<number>([ServiceCode.ProcessStart, ServiceCode.ProcessRun]);
/** The only programs the fuzzer lets a request start: any other name becomes one that does not exist. */
const SAFE_PROGRAMS = new Set(["true", "false", "echo"]);

/** A field value that stays inside the product root: absolute paths made relative, `..` spelled out. */
function confineValue(value: unknown, key: string): unknown {
  if (typeof value === "string") {
    const inside = value.replaceAll("..", "__").replace(/^\/+/, "");
    return key === "program" && !SAFE_PROGRAMS.has(value) ? `no-such-program-${inside.replaceAll("/", "_")}` : inside;
  }
  if (Array.isArray(value)) return value.map((v) => confineValue(v, ""));
  if (value && typeof value === "object" && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, confineValue(v, k)]));
  }
  return value;
}

/**
 * The payload the host gets: as generated, unless its fields (read as the host reads them) name
 * something outside the root or a program not on the safe list; then those fields confined. A
 * stopped process is not a hang, so SIGSTOP becomes SIGCONT.
 */
function confine(payload: Uint8Array): Uint8Array {
  let envelope;
  try {
    envelope = decodeEnvelope(payload);
  } catch {
    return payload; // the host refuses it the same way
  }
  const fields = confineValue(envelope.fields, "") as Record<string, unknown>;
  if (fields && typeof fields === "object" && fields.signal === "SIGSTOP") fields.signal = "SIGCONT";
  const same = JSON.stringify(fields, replacer) === JSON.stringify(envelope.fields, replacer);
  return same ? payload : encodeEnvelope(fields, envelope.data);
}

function replacer(_key: string, value: unknown) {
  return typeof value === "number" && !Number.isFinite(value) ? String(value) : value;
}

/** A small tree the cases work on; rebuilt every {@link RESET_EVERY} cases. */
function plantTree(root: string): void {
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(path.join(root, "d/e"), { recursive: true });
  fs.writeFileSync(path.join(root, "a.txt"), "hello");
  fs.writeFileSync(path.join(root, "d/x"), "xyz");
  fs.writeFileSync(path.join(root, "d/e/f.txt"), "f");
  fs.writeFileSync(path.join(root, "big.bin"), new Uint8Array(600 * 1024));
}
const RESET_EVERY = 200;

function serviceInput(rng: Random): Uint8Array {
  let seed = rng.pick(SERVICE_SEEDS);
  while (STARTS.has(seed[0]) && !rng.chance(0.1)) seed = rng.pick(SERVICE_SEEDS);
  const [code, fields, size] = seed;
  const handles = { handle: 1 + rng.int(12), id: 1 + rng.int(4) };
  const base = { ...fields, ...("handle" in fields ? { handle: handles.handle } : {}) };
  const mutated = rng.chance(0.03) ? randomValue(rng) : rng.chance(0.75) ? mutateFields(rng, base) : base;
  let payload: Uint8Array;
  try {
    payload = encodeEnvelope(mutated, rng.bytes(rng.chance(0.8) ? size : rng.int(70_000)));
  } catch {
    payload = rng.bytes(rng.int(64)); // too deep for the encoder
  }
  if (rng.chance(0.3)) payload = mutate(rng, payload);
  const out = new Uint8Array(2 + payload.length);
  new DataView(out.buffer).setUint16(0, rng.chance(0.02) ? rng.next() & 0xffff : code, true);
  out.set(payload, 2);
  return out;
}

/** Every service code's request through the host's real request path. */
export function servicesTarget(): FuzzTarget {
  let root = "", host: InProcessHost, cases = 0;
  return {
    name: "services",
    setUp() {
      root = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "agent-fuzz-")), "root");
      plantTree(root);
      host = new InProcessHost(root);
      return Promise.resolve();
    },
    input: serviceInput,
    async run(input) {
      if (++cases % RESET_EVERY === 0) {
        await host.close();
        plantTree(root);
        host = new InProcessHost(root);
      }
      fs.mkdirSync(root, { recursive: true }); // a case may delete the root itself
      const code = input.length >= 2 ? new DataView(input.buffer, input.byteOffset).getUint16(0, true) : 0;
      const what = `service code 0x${code.toString(16)}`;
      const answer = await bounded(host.send(code, confine(input.subarray(2))), what);
      if (!answer.ok) checkError(answer.error, what);
    },
    async tearDown() {
      await host.close();
      fs.rmSync(path.dirname(root), { recursive: true, force: true });
    },
  };
}

/** [code, fields] of a valid meta request for each meta code. */
const META_SEEDS: Array<[number, unknown]> = [
  [MetaCode.Ping, null],
  [MetaCode.Info, {}],
  [MetaCode.Open, { product: "buildmaster" }],
  [MetaCode.Attach, { sessionId: "0".repeat(32) }],
  [MetaCode.Resume, { sessionId: "0".repeat(32), attachment: 1, resumeToken: "ab".repeat(16), lastReceived: 3 }],
  [MetaCode.Detach, { attachment: 1 }],
  [MetaCode.Close, { sessionId: "0".repeat(32) }],
  [MetaCode.List, {}],
  [MetaCode.Heartbeat, null],
  [MetaCode.Ended, { sessionId: "x", attachment: 1, code: "failed", message: "m" }],
  [MetaCode.UpdateBegin, { size: 1000, sha256: "ab".repeat(32) }],
  [MetaCode.UpdateBegin, { size: 1000, sha256: "ab".repeat(32), signature: "cd".repeat(64) }],
  [MetaCode.UpdateData, null], // raw: update id, offset, bytes
  [MetaCode.UpdateCommit, { updateId: 1 }],
  [MetaCode.UpdateAbort, { updateId: 1 }],
  [99, {}],
];

function metaInput(rng: Random): Uint8Array {
  const [code, fields] = rng.pick(META_SEEDS);
  let payload: Uint8Array;
  try {
    payload = fields === null
      ? rng.bytes(rng.int(rng.chance(0.05) ? 70_000 : 40))
      : encodeFields(rng.chance(0.75) ? mutateFields(rng, fields as Record<string, unknown>) : fields);
  } catch {
    payload = rng.bytes(rng.int(64)); // too deep for the encoder
  }
  if (rng.chance(0.3)) payload = mutate(rng, payload);
  const target = rng.chance(0.05) ? rng.next() : 0;
  return encodeFrame({ target, code: rng.chance(0.02) ? rng.next() : code, token: 0, payload });
}

/** A real agent connection (no product served, so nothing starts a host) and its client's frames. */
function metaConnection(stateDir: string) {
  const [clientSide, agentSide] = memoryStreamPair();
  const config = {
    stateDir,
    products: [],
    idleTimeoutSeconds: 60,
    reconnectGraceSeconds: 0,
    replayLimitMiB: 16,
    processGraceSeconds: 1,
    warmHosts: 0,
  };
  const sessions = new SessionManager(sessionSettings(config, { runDir: stateDir, hostCommand: [], log: silent }));
  const agentFrames = new FrameStream(new StreamReader(agentSide), null);
  // Its key may update: the update messages are read through to the staging directory (no upgrader applies one).
  const updates = new UpdateReceiver(
    { stateDir, maxBytes: 1 << 20, releaseKeys: [] },
    () => [{ id: "fuzz", bytes: new Uint8Array(32), rights: ["update"] }],
    () => null,
    silent,
  );
  const served = new ClientConnection(agentFrames, "fuzz", sessions, Date.now(), "fuzz", updates).serve();
  const client = new FrameStream(new StreamReader(clientSide), null);
  const waiting = new Map<number, { resolve(frame: Frame): void; reject(e: Error): void }>();
  // Once the connection has ended, every request waiting for a reply fails: the finding. (Not a race
  // against one long-lived promise per request: each race would leave a reaction on it.)
  void served.then((reason) => {
    for (const w of waiting.values()) w.reject(new Finding(`the connection ended: ${reason}`));
  });
  const pump = (async () => {
    for (let frame; (frame = await client.receive()) !== null;) waiting.get(frame.token)?.resolve(frame);
  })().catch(() => {});
  return { client, waiting, pump };
}

/** Every meta message's fields as a real agent connection reads them. */
export function metaTarget(): FuzzTarget {
  let stateDir = "", connection: ReturnType<typeof metaConnection>, token = 0;
  return {
    name: "meta",
    setUp() {
      stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-fuzz-meta-"));
      connection = metaConnection(stateDir);
      return Promise.resolve();
    },
    input: metaInput,
    async run(input) {
      const frame = { ...decodeFrameLoose(input), token: ++token };
      const what = `meta code ${frame.code} on target ${frame.target}`;
      const current = connection;
      const answered = new Promise<Frame>((resolve, reject) => current.waiting.set(frame.token, { resolve, reject }));
      answered.catch(() => {}); // an event's never comes; a failure is thrown below where it matters
      try {
        await current.client.send(frame);
        if (frame.target === 0 && frame.code === MetaCode.Heartbeat) return; // an event: never answered
        const reply = await bounded(answered, what);
        if (reply.code === ERROR_CODE) checkError(decodeError(reply.payload), what);
      } catch (e) {
        current.client.close(); // the next case gets a fresh connection
        connection = metaConnection(stateDir);
        throw e instanceof Finding ? new Finding(`${what}: ${e.message}`) : e;
      } finally {
        current.waiting.delete(frame.token);
      }
    },
    async tearDown() {
      connection.client.close();
      await connection.pump;
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** The fuzzer's own framing of a meta input: the first 12 bytes as a frame header, zero-padded. */
function decodeFrameLoose(input: Uint8Array): Frame {
  const head = new Uint8Array(12);
  head.set(input.subarray(0, 12));
  const view = new DataView(head.buffer);
  return { target: view.getUint32(0, true), code: view.getUint32(4, true), token: 0, payload: input.subarray(12) };
}
