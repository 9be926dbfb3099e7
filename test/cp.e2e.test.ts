// `agent cp` on the built binary: what it keeps (modes, times, symlinks), what it reports instead of
// skipping, how an interrupted copy cleans up, and what a hostile server or a planted link cannot make it do.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import {
  agentCommand,
  hermeticEnv,
  runAgentAsync,
  type RunningAgent,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
  writeKeyFile,
} from "./helpers/agent-process.ts";

const cpSuite = suite("agent cp e2e");
const KEY = generateKey();
let agent: RunningAgent;
let keyFile: string;
let target: string;
/** The product root of the CLI's sessions on the test agent (it runs as this user, on this machine). */
let root: string;

cpSuite.before(async () => {
  keyFile = writeKeyFile(tempDir(), KEY.hex);
  agent = await startAgent(["--key", KEY.hex]);
  target = `127.0.0.1:${agent.port}`;
  root = path.join(agent.stateDir, "products", "cli", "work");
});

cpSuite.after(async () => {
  await agent.stop();
  stopAll();
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `agent cp --key-file KEY ...args`, bounded to a minute. */
function cp(...args: string[]): Promise<Result> {
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, "cp", "--key-file", keyFile, ...args], {
    env: hermeticEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "", stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => sendSignal(child, "SIGKILL"), 60_000);
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    })
  );
}

/** Starts `agent cp`; `done` resolves with its exit code and stderr. */
function cpStarted(...args: string[]) {
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, "cp", "--key-file", keyFile, ...args], {
    env: hermeticEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => sendSignal(child, "SIGKILL"), 60_000);
  const done = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    })
  );
  return { child, done };
}

/** The agent's sessions, from `agent status --json`. */
async function sessions(): Promise<Array<{ product: string; clients: number; openFiles: number }>> {
  const r = await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: agent.stateDir });
  return JSON.parse(r.stdout).sessions;
}

const temporaries = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes(".agent-cp-"));

cpSuite("an upload never writes through a symlink planted at a temporary name (security finding 5)", async () => {
  fs.mkdirSync(root, { recursive: true });
  const victim = path.join(tempDir(), "victim");
  fs.writeFileSync(victim, "precious\n");
  // The old names were .NAME.agent-cp-PID-0: plant one for each pid the copy may get.
  const last = Number(fs.readFileSync("/proc/sys/kernel/ns_last_pid", "utf8"));
  for (let pid = last + 1; pid < last + 3000; pid++) {
    fs.symlinkSync(victim, path.join(root, `.planted.bin.agent-cp-${pid}-0`));
  }
  const source = path.join(tempDir(), "planted.bin");
  fs.writeFileSync(source, crypto.randomBytes(200 * 1024)); // over 64 KiB: streamed, not batched
  const r = await cp(source, `${target}:planted.bin`);
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.readFileSync(victim, "utf8") === "precious\n", "the link's target is untouched");
  assert.not.ok(fs.lstatSync(path.join(root, "planted.bin")).isSymbolicLink());
  assert.ok(fs.readFileSync(path.join(root, "planted.bin")).equals(fs.readFileSync(source)));
  for (const f of fs.readdirSync(root)) if (f.startsWith(".planted.bin.agent-cp-")) fs.rmSync(path.join(root, f));
});

for (const [direction, signal] of [["upload", "SIGINT"], ["download", "SIGTERM"]] as const) {
  cpSuite(
    `${
      direction === "upload" ? "an" : "a"
    } ${direction} interrupted by ${signal} removes its temporary file and ends its session`,
    async () => {
      const local = tempDir();
      const big = path.join(local, "big.bin");
      fs.writeFileSync(big, "");
      fs.truncateSync(big, 1024 * 1024 * 1024); // sparse: quick to read, slow enough to copy
      fs.mkdirSync(root, { recursive: true });
      if (direction === "download") fs.renameSync(big, path.join(root, "big.bin"));
      const into = path.join(local, "back");
      fs.mkdirSync(into);
      const copy = direction === "upload"
        ? cpStarted(big, `${target}:big-up.bin`)
        : cpStarted(`${target}:big.bin`, path.join(into, "big.bin"));
      const tempDirectory = direction === "upload" ? root : into;
      await until(() => temporaries(tempDirectory).length > 0, "the copy has begun");
      sendSignal(copy.child, signal);
      const r = await copy.done;
      assert.is(r.code, signal === "SIGINT" ? 130 : 143, `${r.signal} ${r.stderr}`);
      assert.equal(temporaries(tempDirectory), [], "no temporary file left");
      assert.equal(temporaries(root), [], "none on the server either");
      assert.equal((await sessions()).filter((s) => s.product === "cli"), [], "its session ended");
    },
  );
}

cpSuite.run();
