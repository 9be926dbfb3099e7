/**
 * Starts a session's host process and owns its channel: creates the channel
 * file (mode 0600) in the private runtime directory, maps it, writes the
 * launch nonce, and spawns `agent host` in its own process group with only
 * the doorbell pipes and stderr. Ending it removes the file; a crash is
 * cleaned up by signalling the whole process group.
 * @module
 */
import fs from "node:fs";
import type { Readable } from "node:stream";
import path from "node:path";
import { toHex } from "../core/bytes.ts";
import { randomBytes } from "../core/secure/crypto.ts";
import { ChannelEnd, type Doorbell } from "../core/shm/channel-end.ts";
import { nextTurn, pipeDoorbell } from "../runtime/pipe-doorbell.ts";
import { decodeFrame, encodeFrameHeader, type Frame } from "../core/wire/frame.ts";
import {
  ChannelHeader,
  channelSize,
  checkChannel,
  Direction,
  FLAG_AGENT_CLOSED,
  initChannel,
} from "../core/shm/ring.ts";
import { HostControl } from "../core/session/contract.ts";
import { encodeEnvelope } from "../core/session/protocol.ts";
import { createMapFile, mapFile, type Mapping } from "../runtime/mmap.ts";
import { keepFreedMemory } from "../runtime/malloc.ts";
import { type StartedProcess, startProcess } from "../runtime/spawn.ts";
import { currentAccount, launchEnvironment } from "../runtime/environment.ts";
import type { ProductAccount } from "./product-users.ts";
import net from "node:net";
import os from "node:os";

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
  /** The user the host runs as (the agent must be root); by default the agent's. */
  account?: ProductAccount;
}

const READY_TIMEOUT_MS = 20_000;

/**
 * Requests up to this size are small: their replies usually come within {@link REPLY_POLL_MS}, so
 * the agent polls for them (docs/protocol.md §7 "Waiting for a reply"). Bulk chunks are larger.
 */
const QUICK_REQUEST_BYTES = 4096;
/** How long the agent polls the host's ring for a small request's reply before it sleeps. */
const REPLY_POLL_MS = 0.2;

/**
 * What the next agent version needs to carry on with a running host (agent/handover.ts): its pid,
 * its channel file and this side's descriptors of its pipes, which the hand-over passes on.
 */
export interface HostRecord {
  pid: number;
  file: string;
  /** The channel file's device and inode: the next version maps that file and no other. */
  dev: number;
  ino: number;
  capacity: number;
  fds: { stdin: number; stdout: number; stderr: number };
}

/** A running host and its channel. */
export class HostProcess {
  #exited: Promise<{ code: number | null; signal: string | null }>;
  #exitInfo: { code: number | null; signal: string | null } | null = null;
  /** Requests sent with a token whose replies have not come back (see {@link replied}). */
  #repliesAwaited = 0;
  /** Frames on their way into the ring, and who waits for there to be none. */
  #sending = 0;
  #sendsSettled: Array<() => void> = [];
  /** Each attachment's last frame on its way into the ring (by target), while one is. */
  readonly #tails = new Map<number, Promise<void>>();

  private constructor(
    readonly child: StartedProcess,
    public end: ChannelEnd,
    /** The channel header: flags and the held table. */
    readonly header: ChannelHeader,
    readonly mapping: Mapping,
    readonly file: string,
    exited: Promise<{ code: number | null; signal: string | null }>,
  ) {
    this.#exited = exited.then((info) => (this.#exitInfo = info));
  }

  get pid(): number {
    return this.child.pid;
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
    let child: StartedProcess;
    try {
      child = await spawnHost(options, file, nonce);
    } catch (e) {
      mapping.close();
      fs.rmSync(file, { force: true });
      throw new Error(
        `the session's host process did not start: cannot run ${options.command[0]}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const exited = child.exit;
    for (const pipe of [child.stdin, child.stdout, child.stderr]) pipe.on("error", () => {}); // its exit tells the story
    const unfinishedLine = forwardLines(child.stderr, options.onLog);
    const end = agentEnd(mapping, pipeDoorbell(child.stdout, child.stdin));
    const ready = await readyFrame(end, exited);
    if (!ready || ready.code !== HostControl.Ready) {
      killGroup(child.pid, "SIGKILL");
      end.detach();
      mapping.close();
      fs.rmSync(file, { force: true });
      const said = unfinishedLine().trim();
      throw new Error(`the session's host process did not start${said ? `: ${said}` : ""}`);
    }
    return new HostProcess(child, end, header, mapping, file, exited);
  }

  /**
   * Sends a frame into the host's ring after its attachment's earlier frames, waiting while it is
   * full. A frame that a cut connection left waiting for room goes in before what the client sends
   * again on its new one: a small frame would otherwise fit first (a close past its last write).
   */
  send(frame: Frame): Promise<void> {
    this.#sending++;
    const before = this.#tails.get(frame.target);
    const sent = before ? before.then(() => this.#enter(frame)) : this.#enter(frame);
    const tail = sent.catch(() => {}); // the next frame goes in after this one, sent or failed
    this.#tails.set(frame.target, tail);
    return sent.finally(() => {
      if (this.#tails.get(frame.target) === tail) this.#tails.delete(frame.target);
      if (--this.#sending === 0) { for (const done of this.#sendsSettled.splice(0)) done(); }
    });
  }

  /** Writes a frame into the ring, waiting while it is full. */
  async #enter(frame: Frame): Promise<void> {
    // A lone small request's reply usually comes before a wake-up would: look for it rather than
    // sleep. Not while other replies are due (a download's reads): those keep the ring busy anyway.
    // Said before the request goes, so the host finds this end awake when it replies.
    const alone = frame.token !== 0 && ++this.#repliesAwaited === 1;
    if (alone && frame.payload.length <= QUICK_REQUEST_BYTES) this.end.expectRecord(REPLY_POLL_MS);
    await this.end.send([encodeFrameHeader(frame.target, frame.code, frame.token), frame.payload]);
  }

  /** The host answered a request (a frame from it with a token). */
  replied(): void {
    if (this.#repliesAwaited > 0) this.#repliesAwaited--;
  }

  /** Resolves once no frame is on its way into the ring. */
  sendsSettled(): Promise<void> {
    return this.#sending === 0 ? Promise.resolve() : new Promise((r) => this.#sendsSettled.push(r));
  }

  #frozen = false;
  /** True between {@link freeze} and {@link thaw}. */
  get frozen(): boolean {
    return this.#frozen;
  }

  /** What a hand-over carries (see {@link HostRecord}); null where the pipes' descriptors are unknown. */
  record(): HostRecord | null {
    if (!this.child.fds) return null;
    const { dev, ino } = fs.lstatSync(this.file);
    return {
      pid: this.pid,
      file: this.file,
      dev,
      ino,
      capacity: checkChannel(this.mapping.bytes),
      fds: this.child.fds,
    };
  }

  /**
   * Stops using the channel for a hand-over: pending receives return null, the pipes are no longer
   * read (their wake-ups are for the next agent now). The mapping stays, so {@link thaw} can undo it.
   */
  freeze(): void {
    this.#frozen = true;
    this.end.detach();
    this.child.stdout.pause();
    this.child.stderr.pause();
  }

  /** Takes the channel back after a hand-over that did not happen. */
  thaw(): void {
    this.#frozen = false;
    this.end = agentEnd(this.mapping, this.end.doorbell);
    this.child.stdout.resume();
    this.child.stderr.resume();
    this.end.doorbell.ring(); // whatever the host wrote meanwhile
  }

  /**
   * A host another agent version started (a hand-over): maps its channel and takes over its pipes
   * from the descriptors this process inherited. This process is not its parent, so its end shows
   * only as its pipe closing, without an exit status.
   */
  static adopt(record: HostRecord, onLog: (line: string) => void): HostProcess {
    const size = channelSize(record.capacity);
    // Never through a link, and only the file recorded: a product user owns its channels' directory.
    const mapping = mapFile(record.file, size, { dev: record.dev, ino: record.ino });
    checkChannel(mapping.bytes);
    const header = new ChannelHeader(mapping.bytes);
    const stdin = new net.Socket({ fd: record.fds.stdin, readable: false, writable: true });
    const stdout = new net.Socket({ fd: record.fds.stdout, readable: true, writable: false });
    const stderr = new net.Socket({ fd: record.fds.stderr, readable: true, writable: false });
    for (const pipe of [stdin, stdout, stderr]) pipe.on("error", () => {});
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      const gone = () => resolve({ code: null, signal: null });
      stdout.once("end", gone).once("close", gone);
    });
    forwardLines(stderr, onLog);
    const child: StartedProcess = { pid: record.pid, stdin, stdout, stderr, exit, fds: record.fds };
    const end = agentEnd(mapping, pipeDoorbell(stdout, stdin));
    header.agentPid = process.pid;
    return new HostProcess(child, end, header, mapping, record.file, exit);
  }

  /**
   * Ends the host gracefully: asks it to close files and end processes, waits
   * up to `timeoutMs`, then kills what is left of its process group. Removes
   * the channel file either way.
   */
  async shutdown(timeoutMs: number, graceMs: number, processGroups: readonly number[] = []): Promise<void> {
    if (!this.#exitInfo) {
      await this.send({ target: 0, code: HostControl.Shutdown, token: 0, payload: encodeEnvelope({}) }).catch(() => {});
      const timer = setTimeout(() => killGroup(this.child.pid, "SIGKILL"), timeoutMs);
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
    // A group once found empty is never signalled again: by then its id may be a new process's (pids recycle).
    let groups = [this.child.pid, ...processGroups];
    const signalAll = (signal: NodeJS.Signals | 0) => (groups = groups.filter((g) => killGroup(g, signal))).length > 0;
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

/** The agent's end of a host's channel: it polls for the replies to small requests (nextTurn). */
function agentEnd(mapping: Mapping, doorbell: Doorbell): ChannelEnd {
  return new ChannelEnd(mapping.bytes, Direction.AgentToHost, Direction.HostToAgent, doorbell, { nextTurn });
}

/** The channel file (mode 0600), mapped and initialised, with this agent's pid and a fresh launch nonce. */
function createChannel(options: HostLaunch) {
  const file = path.join(channelDir(options), `${options.sessionId}.mmap`);
  const size = channelSize(options.capacity);
  // Sessions bring the bulk transfers, and their channel loads the FFI anyway: an agent that only
  // answers meta messages keeps glibc's defaults and never loads it.
  keepFreedMemory();
  createMapFile(file, size);
  if (options.account) fs.chownSync(file, options.account.uid, options.account.gid);
  const mapping = mapFile(file, size);
  initChannel(mapping.bytes, options.capacity);
  const header = new ChannelHeader(mapping.bytes);
  const nonce = randomBytes(16);
  header.agentPid = process.pid;
  header.nonce = nonce;
  return { file, mapping, header, nonce };
}

/**
 * Where a host's channel file goes: the run directory (0700), or for a product's user its own
 * directory in it (`run/<uid>`, 0700, the user's), which no other product's user can enter.
 */
function channelDir({ runDir, account }: HostLaunch): string {
  fs.mkdirSync(runDir, { recursive: true, mode: account ? 0o711 : 0o700 });
  if (!account) return runDir;
  const dir = path.join(runDir, String(account.uid));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chownSync(dir, account.uid, account.gid);
  fs.chmodSync(dir, 0o700);
  return dir;
}

/**
 * `agent host` on `file`, in its own process group, with only the doorbell pipes and stderr:
 * started like any launched program (runtime/spawn.ts), so no descriptor the agent inherited
 * from its own parent without close-on-exec reaches the host.
 */
function spawnHost(options: HostLaunch, file: string, nonce: Uint8Array): Promise<StartedProcess> {
  const [cmd, ...prefix] = options.command;
  return startProcess(cmd, [
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
    ...(options.account ? identityArgs(options.account) : []),
  ], { environment: hostEnvironment(nonce, options.account) }); // its own process group: ending it ends everything it launched
}

/**
 * What a host's runtime needs of the agent's environment besides the launch base: where Deno and
 * the native module keep their caches, and the spawn mechanism forced for tests.
 */
const RUNTIME_SETTINGS = ["DENO_DIR", "DENO_NO_UPDATE_CHECK", "XDG_CACHE_HOME", "AGENT_SPAWN"];

/**
 * A host's environment: the clean launch base of the user it runs as, its runtime's settings and
 * the launch nonce; nothing else of the agent's. A host that drops to a product's user loads its
 * native code while still root, so from the agent's cache, not from that user's home.
 */
function hostEnvironment(nonce: Uint8Array, account: ProductAccount | undefined): Record<string, string> {
  const env = launchEnvironment(process.env, account ?? currentAccount());
  for (const name of RUNTIME_SETTINGS) if (process.env[name] !== undefined) env[name] = process.env[name]!;
  if (account) env.XDG_CACHE_HOME ??= path.join(os.homedir(), ".cache");
  return { ...env, AGENT_HOST_NONCE: toHex(nonce) };
}

/** The host's arguments that make it drop to `account` before it opens its channel. */
function identityArgs(account: ProductAccount): string[] {
  return ["--uid", String(account.uid), "--gid", String(account.gid), "--groups", account.groups.join(",")];
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

/** Removes channel files a crashed agent left behind, but those in `keep` (sessions handed over). Returns how many. */
export function cleanStaleChannels(runDir: string, keep: ReadonlySet<string> = new Set()): number {
  let n = 0;
  try {
    for (const f of fs.readdirSync(runDir)) {
      const file = path.join(runDir, f);
      // A product user's directory (never through a link a product planted there).
      if (/^\d+$/.test(f) && fs.lstatSync(file).isDirectory()) n += cleanStaleChannels(file, keep);
      // A hand-over's state file left by an agent killed mid-way holds resume tokens: it goes too.
      if ((f.endsWith(".mmap") || /^handover-.*\.state$/.test(f)) && !keep.has(file)) {
        fs.rmSync(file, { force: true });
        n++;
      }
    }
  } catch { /* no run directory yet */ }
  return n;
}
