// `agent cp` on the built binary: what it keeps (modes, times, symlinks), what it reports instead of
// skipping, how an interrupted copy cleans up, and what a hostile server or a planted link cannot make it do.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import {
  agentCommand,
  hermeticEnv,
  ROOT,
  runAgentAsync,
  type RunningAgent,
  scriptCommand,
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
/** The product root of the CLI's sessions on the test agent. */
let root: string;

/** The product root of the CLI's sessions on `a` (it runs as this user, on this machine). */
const cliRoot = (a: RunningAgent) => path.join(a.stateDir, "products", "cli", "work");

cpSuite.before(async () => {
  keyFile = writeKeyFile(tempDir(), KEY.hex);
  agent = await startAgent(["--key", KEY.hex]);
  target = `127.0.0.1:${agent.port}`;
  root = cliRoot(agent);
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

/** A tree with what `cp -r` must keep: modes, times, four kinds of symlink, and a FIFO it cannot copy. */
function richTree(): string {
  const tree = path.join(tempDir(), "rich");
  fs.mkdirSync(path.join(tree, "sub"), { recursive: true });
  fs.writeFileSync(path.join(tree, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  fs.writeFileSync(path.join(tree, "secret"), "s3cret\n", { mode: 0o600 });
  fs.writeFileSync(path.join(tree, "sub", "big.bin"), crypto.randomBytes(300 * 1024), { mode: 0o640 });
  fs.chmodSync(path.join(tree, "run.sh"), 0o755);
  fs.chmodSync(path.join(tree, "secret"), 0o600);
  fs.chmodSync(path.join(tree, "sub", "big.bin"), 0o640);
  fs.symlinkSync("run.sh", path.join(tree, "relative"));
  fs.symlinkSync("/etc/hostname", path.join(tree, "absolute"));
  fs.symlinkSync("sub", path.join(tree, "dirlink"));
  fs.symlinkSync("nowhere", path.join(tree, "dangling"));
  execFileSync("mkfifo", [path.join(tree, "pipe")]);
  return tree;
}

/** Each entry under `dir`: a file's mode and SHA-256, a link's target; the FIFO left out. */
function describe(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const st = fs.lstatSync(path.join(dir, rel));
    if (st.isSymbolicLink()) out[rel] = `-> ${fs.readlinkSync(path.join(dir, rel))}`;
    else if (st.isFile()) {
      const hash = crypto.createHash("sha256").update(fs.readFileSync(path.join(dir, rel))).digest("hex");
      out[rel] = `${(st.mode & 0o777).toString(8)} ${hash.slice(0, 12)}`;
    } else if (st.isDirectory()) out[rel] = "dir";
  }
  return out;
}

cpSuite("cp -r keeps modes and copies symlinks as symlinks, both ways; a FIFO is reported, with exit 28", async () => {
  const tree = richTree();
  const expected = describe(tree);
  const up = await cp("-r", "--json", tree, `${target}:rich-up`);
  assert.is(up.code, 28, up.stderr);
  assert.match(up.stderr, /not copied.*pipe.*FIFO/s);
  const report = JSON.parse(up.stdout);
  assert.equal([report.files, report.symlinks, report.skipped], [3, 4, [path.join(tree, "pipe")]]);
  assert.equal(describe(path.join(root, "rich-up")), expected, "the server has what was sent");

  execFileSync("mkfifo", [path.join(root, "rich-up", "pipe")]);
  const back = path.join(tempDir(), "back");
  const down = await cp("-r", "--json", `${target}:rich-up`, back);
  assert.is(down.code, 28, down.stderr);
  assert.match(down.stderr, /not copied.*pipe/s);
  assert.equal(describe(back), expected, "and it comes back the same");
  assert.equal(fs.readdirSync(back).filter((f) => f.includes(".agent-cp-")), []);
});

cpSuite("cp -rL follows symlinks instead; a dangling one is reported", async () => {
  const tree = richTree();
  fs.rmSync(path.join(tree, "pipe"));
  const up = await cp("-rL", tree, `${target}:rich-follow`);
  assert.is(up.code, 28, up.stderr);
  assert.match(up.stderr, /dangling/);
  const copy = path.join(root, "rich-follow");
  assert.ok(fs.lstatSync(path.join(copy, "relative")).isFile());
  assert.is(fs.readFileSync(path.join(copy, "relative"), "utf8"), "#!/bin/sh\necho hi\n");
  assert.ok(fs.lstatSync(path.join(copy, "dirlink")).isDirectory());
  assert.ok(fs.existsSync(path.join(copy, "dirlink", "big.bin")));
});

cpSuite("cp -p keeps modification times (and exact modes); without it a file is new", async () => {
  const tree = richTree();
  fs.rmSync(path.join(tree, "pipe"));
  const old = new Date("2001-02-03T04:05:06Z");
  for (const f of ["run.sh", "secret", "sub/big.bin", "sub"]) fs.utimesSync(path.join(tree, f), old, old);
  const single = path.join(tempDir(), "single");
  fs.writeFileSync(single, "x");
  fs.utimesSync(single, old, old);
  assert.is((await cp("-rp", tree, `${target}:rich-times`)).code, 0);
  assert.is((await cp("-p", single, `${target}:single-times`)).code, 0);
  for (
    const f of ["rich-times/run.sh", "rich-times/secret", "rich-times/sub/big.bin", "rich-times/sub", "single-times"]
  ) {
    assert.is(fs.statSync(path.join(root, f)).mtimeMs, old.getTime(), f);
  }
  const back = path.join(tempDir(), "back");
  assert.is((await cp("-rp", `${target}:rich-times`, back)).code, 0);
  assert.is(fs.statSync(path.join(back, "sub/big.bin")).mtimeMs, old.getTime());
  assert.is(fs.statSync(path.join(back, "secret")).mode & 0o777, 0o600);
  assert.is((await cp("-r", tree, `${target}:rich-new`)).code, 0);
  assert.ok(fs.statSync(path.join(root, "rich-new/run.sh")).mtimeMs > old.getTime());
});

cpSuite("a single file keeps its mode both ways: a script stays executable, a secret private", async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "tool.sh"), "#!/bin/sh\n", { mode: 0o755 });
  fs.chmodSync(path.join(dir, "tool.sh"), 0o755);
  fs.writeFileSync(path.join(dir, "key"), crypto.randomBytes(100 * 1024));
  fs.chmodSync(path.join(dir, "key"), 0o600);
  for (const name of ["tool.sh", "key"]) {
    assert.is((await cp(path.join(dir, name), `${target}:single-${name}`)).code, 0);
    const there = fs.statSync(path.join(root, `single-${name}`)).mode & 0o777;
    assert.is(there, name === "key" ? 0o600 : 0o755, name);
    const back = path.join(dir, `back-${name}`);
    assert.is((await cp(`${target}:single-${name}`, back)).code, 0);
    assert.is(fs.statSync(back).mode & 0o777, name === "key" ? 0o600 : 0o755, name);
  }
});

cpSuite("a large file copies both ways quietly: stderr stays empty, and it checks out byte for byte", async () => {
  // 24 MiB: 48 reads of 512 KiB, more in flight at once than an AbortSignal's default 10 listeners.
  const dir = tempDir();
  const source = path.join(dir, "large.bin");
  fs.writeFileSync(source, crypto.randomBytes(24 * 1024 * 1024));
  const up = await cp(source, `${target}:large.bin`);
  assert.is(up.code, 0, up.stderr);
  assert.is(up.stderr, "", "nothing on stderr going up");
  const back = path.join(dir, "back.bin");
  const down = await cp(`${target}:large.bin`, back);
  assert.is(down.code, 0, down.stderr);
  assert.is(down.stderr, "", "nothing on stderr coming down");
  assert.ok(fs.readFileSync(back).equals(fs.readFileSync(source)), "the copy is the source");
  assert.equal(temporaries(dir), [], "no temporary left");
});

/**
 * An agent from the sources whose hosts list `entries` for every directory (test/helpers/hostile-agent.ts),
 * with `files` (path under its product root -> content) really there, for the copy to read.
 */
async function compromisedServer(entries: unknown[], files: Record<string, string>): Promise<RunningAgent> {
  const server = await startAgent(["--key", KEY.hex], {
    command: [...scriptCommand(), path.join(ROOT, "test/helpers/hostile-agent.ts")],
    env: { HOSTILE_LISTING: JSON.stringify(entries) },
  });
  for (const [name, content] of Object.entries(files)) {
    const at = path.join(cliRoot(server), name);
    fs.mkdirSync(path.dirname(at), { recursive: true });
    fs.writeFileSync(at, content);
  }
  return server;
}

const file = (p: string) => ({ path: p, type: "file", size: 3, mtimeMs: 0, mode: 0o644 });

cpSuite(
  "a server that lists ../../x gets exit 27 from the binary, and nothing is written anywhere (finding 4)",
  async () => {
    const server = await compromisedServer([file("ok.txt"), file("../../x")], { "dir/ok.txt": "ok\n" });
    try {
      const base = tempDir();
      const into = path.join(base, "a", "b");
      fs.mkdirSync(into, { recursive: true });
      const r = await cp("-r", `127.0.0.1:${server.port}:dir`, path.join(into, "copy"));
      assert.is(r.code, 27, r.stderr);
      assert.match(r.stderr, /not a plain name/);
      assert.equal(fs.readdirSync(base, { recursive: true }), ["a", path.join("a", "b")], "nothing written");
    } finally {
      await server.stop();
    }
  },
);

cpSuite(
  "a server that lists a symlink a -> DIR and then a/passwd never makes the copy write through the link",
  async () => {
    const victim = tempDir();
    const server = await compromisedServer([
      { path: "a", type: "symlink", size: 4, mtimeMs: 0, mode: 0o777, target: victim },
      file("a/passwd"),
    ], { "dir/a/passwd": "pwn\n" });
    try {
      const into = tempDir();
      const r = await cp("-r", `127.0.0.1:${server.port}:dir`, path.join(into, "copy"));
      assert.is(r.code, 27, r.stderr);
      assert.equal(fs.readdirSync(victim), [], "nothing written through the link");
      assert.equal(fs.readdirSync(into), [], "nothing written at all");
    } finally {
      await server.stop();
    }
  },
);

cpSuite(
  "a download never writes through a symlink already in the destination where the server lists a directory",
  async () => {
    const victim = tempDir();
    const server = await compromisedServer([
      { path: "a", type: "directory", size: 0, mtimeMs: 0, mode: 0o755 },
      file("a/passwd"),
    ], { "dir/a/passwd": "pwn\n" });
    try {
      const into = tempDir();
      fs.mkdirSync(path.join(into, "dir"));
      fs.symlinkSync(victim, path.join(into, "dir", "a")); // as an earlier copy of a symlink would have left it
      const r = await cp("-r", `127.0.0.1:${server.port}:dir`, into);
      assert.is(r.code, 27, r.stderr);
      assert.match(r.stderr, /is a symlink here/);
      assert.equal(fs.readdirSync(victim), [], "nothing written through the link");
    } finally {
      await server.stop();
    }
  },
);

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
