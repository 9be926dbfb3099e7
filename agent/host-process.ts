/**
 * Starts a session's host process and owns its channel: creates the channel
 * file (mode 0600) in the private runtime directory, maps it, writes the
 * launch nonce, and spawns `agent host` in its own process group with only
 * the doorbell pipes and stderr. Ending it removes the file; a crash is
 * cleaned up by signalling the whole process group.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import type { Readable } from "node:stream";
import path from "node:path";
import { toHex } from "../core/bytes.ts";
import { randomBytes } from "../core/secure/crypto.ts";
import { ChannelEnd } from "../core/shm/channel-end.ts";
import { pipeDoorbell } from "../runtime/pipe-doorbell.ts";
import { decodeFrame, encodeFrameHeader, type Frame } from "../core/wire/frame.ts";
import { ChannelHeader, channelSize, Direction, FLAG_AGENT_CLOSED, initChannel } from "../core/shm/ring.ts";
import { HostControl } from "../core/session/contract.ts";
import { encodeEnvelope } from "../core/session/protocol.ts";
import { createMapFile, mapFile, type Mapping } from "../runtime/mmap.ts";
import { keepFreedMemory } from "../runtime/malloc.ts";

/** Where a host runs and how. */
export interface HostLaunch {
  sessionId: string;
  runDir: string;
  productRoot: string;
  extensionsDir: string;
  /** Bytes per ring. */
  capacity: number;
  /** How long launched processes get between TERM and KILL when the session ends. */
  processGraceMs: number;
  /** argv prefix that runs this agent program (the host is its `host` subcommand). */
  command: string[];
  /** Called with each line the host writes to stderr. */
  onLog(line: string): void;
}

const READY_TIMEOUT_MS = 20_000;

/** A running host and its channel. */
export class HostProcess {
  #exited: Promise<{ code: number | null; signal: string | null }>;
  #exitInfo: { code: number | null; signal: string | null } | null = null;

  private constructor(
    readonly child: ChildProcess,
    readonly end: ChannelEnd,
    /** The channel header: flags and the held table. */
    readonly header: ChannelHeader,
    readonly mapping: Mapping,
    readonly file: string,
    exited: Promise<{ code: number | null; signal: string | null }>,
  ) {
    this.#exited = exited.then((info) => (this.#exitInfo = info));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Set once the process has exited. */
  get exitInfo(): { code: number | null; signal: string | null } | null {
    return this.#exitInfo;
  }

  get exited(): Promise<{ code: number | null; signal: string | null }> {
    return this.#exited;
  }

  /** Creates the channel, starts the host and waits until it reports ready. */
  static async launch(options: HostLaunch): Promise<HostProcess> {
    const { file, mapping, header, nonce } = createChannel(options);
    const child = spawnHost(options, file, nonce);
    let spawnError: Error | undefined; // the program is missing or not executable: "error" comes, "exit" never
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (e) => {
        spawnError = e;
        resolve({ code: null, signal: null });
      });
    });
    for (const pipe of [child.stdin!, child.stdout!, child.stderr!]) pipe.on("error", () => {}); // its exit tells the story
    const unfinishedLine = forwardLines(child.stderr!, options.onLog);
    const end = new ChannelEnd(
      mapping.bytes,
      Direction.AgentToHost,
      Direction.HostToAgent,
      pipeDoorbell(child.stdout!, child.stdin!),
    );
    const ready = await readyFrame(end, exited);
    if (!ready || ready.code !== HostControl.Ready) {
      killGroup(child.pid!, "SIGKILL");
      end.detach();
      mapping.close();
      fs.rmSync(file, { force: true });
      const said = spawnError ? `cannot run ${options.command[0]}: ${spawnError.message}` : unfinishedLine().trim();
      throw new Error(`the session's host process did not start${said ? `: ${said}` : ""}`);
    }
    return new HostProcess(child, end, header, mapping, file, exited);
  }

  /** Sends a frame into the host's ring, waiting while it is full. */
  send(frame: Frame): Promise<void> {
    return this.end.send([encodeFrameHeader(frame.target, frame.code, frame.token), frame.payload]);
  }

  /**
   * Ends the host gracefully: asks it to close files and end processes, waits
   * up to `timeoutMs`, then kills what is left of its process group. Removes
   * the channel file either way.
   */
  async shutdown(timeoutMs: number, graceMs: number, processGroups: readonly number[] = []): Promise<void> {
    if (!this.#exitInfo) {
      await this.send({ target: 0, code: HostControl.Shutdown, token: 0, payload: encodeEnvelope({}) }).catch(() => {});
      const timer = setTimeout(() => killGroup(this.child.pid!, "SIGKILL"), timeoutMs);
      await this.#exited;
      clearTimeout(timer);
    }
    // The host ended its own processes' groups; anything else it left goes now.
    await this.reap(graceMs, processGroups);
  }

  /**
   * Ends whatever is left of the host's process group and of the groups of
   * the processes it launched (`processGroups`, as the host last reported
   * them): TERM, up to `graceMs` to go, then KILL. After a crash this is what
   * ends the session's processes. Removes the channel.
   */
  async reap(graceMs: number, processGroups: readonly number[] = []): Promise<void> {
    const groups = [this.child.pid!, ...processGroups];
    const signalAll = (signal: NodeJS.Signals | 0) => groups.filter((g) => killGroup(g, signal)).length > 0;
    if (signalAll("SIGTERM")) {
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && signalAll(0)) await new Promise((r) => setTimeout(r, 50));
      signalAll("SIGKILL");
    }
    this.dispose();
  }

  #disposed = false;
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    new ChannelHeader(this.mapping.bytes).setFlag(FLAG_AGENT_CLOSED);
    this.end.detach(); // before munmap: nothing may touch the region after it
    this.mapping.close();
    fs.rmSync(this.file, { force: true });
  }
}

/** The channel file (mode 0600), mapped and initialised, with this agent's pid and a fresh launch nonce. */
function createChannel(options: HostLaunch) {
  fs.mkdirSync(options.runDir, { recursive: true, mode: 0o700 });
  const file = path.join(options.runDir, `${options.sessionId}.mmap`);
  const size = channelSize(options.capacity);
  // Sessions bring the bulk transfers, and their channel loads the FFI anyway: an agent that only
  // answers meta messages keeps glibc's defaults and never loads it.
  keepFreedMemory();
  createMapFile(file, size);
  const mapping = mapFile(file, size);
  initChannel(mapping.bytes, options.capacity);
  const header = new ChannelHeader(mapping.bytes);
  const nonce = randomBytes(16);
  header.agentPid = process.pid;
  header.nonce = nonce;
  return { file, mapping, header, nonce };
}

/** `agent host` on `file`, in its own process group, with only the doorbell pipes and stderr. */
function spawnHost(options: HostLaunch, file: string, nonce: Uint8Array): ChildProcess {
  const [cmd, ...prefix] = options.command;
  return spawn(cmd, [
    ...prefix,
    "host",
    "--channel",
    file,
    "--root",
    options.productRoot,
    "--extensions",
    options.extensionsDir,
    "--grace-ms",
    String(options.processGraceMs),
  ], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: true, // its own process group: ending the group ends everything it launched
    env: { ...process.env, AGENT_HOST_NONCE: toHex(nonce) },
  });
}

/** Calls `onLine` with each line `stream` writes; returns what it has written since its last newline. */
function forwardLines(stream: Readable, onLine: (line: string) => void): () => string {
  let rest = "";
  stream.setEncoding("utf8");
  stream.on("data", (d: string) => {
    rest += d;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  });
  return () => rest;
}

/** The host's first frame, or null if it exits, fails or says nothing within READY_TIMEOUT_MS. */
async function readyFrame(end: ChannelEnd, exited: Promise<unknown>): Promise<Frame | null> {
  let readyTimer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      end.receive().then((r) => (r ? decodeFrame(r) : null)),
      exited.then(() => null),
      new Promise<null>((r) => (readyTimer = setTimeout(() => r(null), READY_TIMEOUT_MS))),
    ]);
  } catch {
    return null;
  } finally {
    clearTimeout(readyTimer); // a pending timer would keep a stopping agent alive for its full length
  }
}

/** Signals a whole process group; false when nothing is left in it. */
function killGroup(group: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-group, signal);
    return true;
  } catch {
    return false;
  }
}

/** Removes channel files a crashed agent left behind. Returns how many. */
export function cleanStaleChannels(runDir: string): number {
  let n = 0;
  try {
    for (const f of fs.readdirSync(runDir)) {
      if (f.endsWith(".mmap")) {
        fs.rmSync(path.join(runDir, f), { force: true });
        n++;
      }
    }
  } catch { /* no run directory yet */ }
  return n;
}
