/**
 * The OpenSSH peer the benchmarks compare against, at its best: the loopback sshd from
 * bench/sshd.sh (as root, a user whose login shell is dash, which reads no startup files;
 * internal-sftp), both fast ciphers, and a multiplexing master where a bench says so.
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const SSH_DIR = path.join(process.env.TMPDIR ?? "/tmp", "agent-bench-sshd");
export const SSH_PORT = process.env.BENCH_SSH_PORT ?? "2222";
export const CIPHERS = ["aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"];
export const NO_SSH = `skipped: no sshd on 127.0.0.1:${SSH_PORT} (start one with bench/sshd.sh)`;

export interface Ssh {
  user: string;
  /** Options every ssh, scp and sftp call takes (all spell -o the same way; the port is added per tool). */
  options: string[];
  host: string;
  /** The login shell sshd runs commands with. */
  shell: string;
}

/** The bench sshd, or null when none answers. */
export function findSsh(): Ssh | null {
  const key = path.join(SSH_DIR, "client_key");
  if (!fs.existsSync(key)) return null;
  const user = fs.existsSync(path.join(SSH_DIR, "user"))
    ? fs.readFileSync(path.join(SSH_DIR, "user"), "utf8").trim()
    : os.userInfo().username;
  const options = [
    "-i",
    key,
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
  ];
  const host = `${user}@127.0.0.1`;
  const probe = spawnSync("ssh", ["-p", SSH_PORT, ...options, host, "true"], { timeout: 10_000 });
  if (probe.status !== 0) return null;
  const shell = spawnSync("getent", ["passwd", user], { encoding: "utf8" }).stdout.trim().split(":").pop() ?? "?";
  return { user, options, host, shell };
}

/** A ControlMaster connection with `cipher`; `args` are what a multiplexed command adds. */
export async function muxMaster(ssh: Ssh, control: string, cipher: string): Promise<{ args: string[]; stop(): void }> {
  const master = spawn("ssh", [
    "-p",
    SSH_PORT,
    "-c",
    cipher,
    ...ssh.options,
    "-o",
    `ControlPath=${control}`,
    "-o",
    "ControlMaster=yes",
    "-N",
    ssh.host,
  ], { stdio: "ignore" });
  for (
    let i = 0;
    i < 50 && spawnSync("ssh", ["-o", `ControlPath=${control}`, "-O", "check", ssh.host]).status !== 0;
    i++
  ) await new Promise((r) => setTimeout(r, 100));
  return {
    args: ["-o", `ControlPath=${control}`, ssh.host],
    stop() {
      spawnSync("ssh", ["-o", `ControlPath=${control}`, "-O", "exit", ssh.host]);
      master.kill();
    },
  };
}
