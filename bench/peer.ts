/**
 * The OpenSSH peer every benchmark compares against: the project's fixed peer in `shared/peer`
 * beside the repository (issue 32). Its `sshd.sh` starts a neutral sshd on loopback (fresh keys, no
 * PAM, no DNS, a shell that reads no startup files, internal-sftp); clients use
 * `ssh -F CONFIG peer …`, over a multiplexing master where a figure says so; its `transfer.sh`
 * prints ssh's bulk figures (plain redirects, both fast ciphers, transport and integrity).
 *
 * Found by walking up from the repository root for `shared/peer/transfer.sh` (the main checkout
 * has it at `../shared/peer`, a worktree further up), or at `BENCH_PEER_DIR`.
 * @module
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const CIPHERS = ["aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"];
/** What a peer-less section prints. */
export const NO_PEER = "peer not found: no shared/peer/transfer.sh above the repository (or at BENCH_PEER_DIR); " +
  "ssh figures skipped, and no ratio is printed";

export interface Peer {
  /** The folder holding sshd.sh and transfer.sh. */
  dir: string;
  /** The client config sshd.sh wrote (`ssh -F config peer …`). */
  config: string;
  port: number;
  /** The sshd listener's pid. */
  pid: number;
}

/** The peer's folder, or null. */
export function findPeerDir(): string | null {
  const has = (d: string) => fs.existsSync(path.join(d, "transfer.sh")) && fs.existsSync(path.join(d, "sshd.sh"));
  if (process.env.BENCH_PEER_DIR) {
    return has(process.env.BENCH_PEER_DIR) ? path.resolve(process.env.BENCH_PEER_DIR) : null;
  }
  for (let d = path.dirname(ROOT);; d = path.dirname(d)) {
    if (has(path.join(d, "shared/peer"))) return path.join(d, "shared/peer");
    if (path.dirname(d) === d) return null;
  }
}

let started: Peer | null | undefined;

/** Starts the peer's sshd unless it runs (it stays up for others: `sshd.sh stop` ends it); null when absent or failing. */
export function startPeer(): Peer | null {
  if (started !== undefined) return started;
  const dir = findPeerDir();
  if (!dir) return (started = null);
  const run = spawnSync("bash", [path.join(dir, "sshd.sh")], { encoding: "utf8", timeout: 120_000 });
  const port = Number(run.stdout?.trim().split("\n").pop());
  if (run.status !== 0 || !port) {
    console.log(`  peer: ${path.join(dir, "sshd.sh")} failed: ${run.stderr?.trim().split("\n").pop() ?? run.error}`);
    return (started = null);
  }
  const state = process.env.PEER_SSHD_DIR ?? "/tmp/peer-sshd";
  const pid = Number(fs.readFileSync(path.join(state, "sshd.pid"), "utf8").trim());
  return (started = { dir, config: path.join(state, "ssh_config"), port, pid });
}

/** One line naming the peer, for a section's header. */
export const describePeer = (p: Peer) =>
  `peer: ${p.dir} (sshd.sh: neutral sshd on 127.0.0.1:${p.port}, no startup files, internal-sftp)`;

/** A multiplexing master with `cipher`: `args` run a command through it, `pid` is the ssh doing the work. */
export interface Master {
  args: string[];
  pid: number;
  stop(): void;
}

export function muxMaster(peer: Peer, control: string, cipher: string): Master {
  const base = ["-F", peer.config, "-o", `ControlPath=${control}`];
  execFileSync("ssh", [...base, "-c", cipher, "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-fN", "peer"], {
    stdio: "ignore",
    timeout: 30_000,
  });
  const check = spawnSync("ssh", [...base, "-O", "check", "peer"], { encoding: "utf8" });
  const pid = Number(/pid=(\d+)/.exec(check.stderr + check.stdout)?.[1] ?? 0);
  return {
    args: [...base, "peer"],
    pid,
    stop() {
      spawnSync("ssh", [...base, "-O", "exit", "peer"], { stdio: "ignore" });
    },
  };
}

/** `ssh -F config` and the options of a fresh connection with `cipher` (scp and sftp spell them the same). */
export const freshArgs = (peer: Peer, cipher: string) => ["-F", peer.config, "-c", cipher];

/** transfer.sh's figures, "aes256-gcm transport up" → MiB/s, and its closing line. */
export interface PeerFigures {
  mibps: Record<string, number>;
  commands: string;
}

/** Runs the peer's transfer.sh on `src` (remote files under `remoteDir`), `rounds` rounds. */
export function peerTransfer(peer: Peer, src: string, remoteDir: string, rounds: number): PeerFigures {
  const run = spawnSync("bash", [path.join(peer.dir, "transfer.sh"), src, remoteDir, String(rounds)], {
    encoding: "utf8",
    timeout: 1_800_000,
  });
  const out = run.stdout ?? "";
  if (run.status !== 0) throw new Error(`transfer.sh failed (${run.status}): ${out}${run.stderr}`);
  const mibps: Record<string, number> = {};
  let commands = "";
  for (const line of out.split("\n")) {
    const m = /^peer (\S+) (transport|integrity) (up|down) (\d+(?:\.\d+)?) MiB\/s$/.exec(line.trim());
    if (m) mibps[`${m[1]} ${m[2]} ${m[3]}`] = Number(m[4]);
    else if (line.startsWith("commands:")) commands = line;
  }
  if (Object.keys(mibps).length !== 8) throw new Error(`transfer.sh printed no figures: ${out}`);
  return { mibps, commands };
}
