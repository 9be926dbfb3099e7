// `agent run` and `agent cp` on the built binary, as an operator types them: exit codes, signals,
// standard input, output as it comes, and every way they fail, each with its message and exit code.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import {
  agentCommand,
  closedPort,
  hermeticEnv,
  type RunningAgent,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
  withFullDisk,
  writeKeyFile,
} from "./helpers/agent-process.ts";

const remote = suite("agent run and agent cp e2e");
const KEY = generateKey();
let agent: RunningAgent;
let keyFile: string;
let wrongKeyFile: string;
let target: string;

remote.before(async () => {
  const dir = tempDir();
  keyFile = writeKeyFile(dir, KEY.hex);
  wrongKeyFile = writeKeyFile(dir, generateKey().hex, "wrong.key");
  agent = await startAgent(["--key", KEY.hex, "--product", "cli", "--product", "deploy"]);
  target = `127.0.0.1:${agent.port}`;
});

remote.after(async () => {
  await agent.stop();
  stopAll();
});

interface Run {
  child: ChildProcess;
  /** stdout and stderr chunks with the time each arrived. */
  chunks: Array<{ stream: "stdout" | "stderr"; text: string; at: number }>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; at: number }>;
}

/** Starts the agent CLI with piped stdio, in its own environment, and records what comes out when. */
function cli(args: string[], options: { stdin?: Uint8Array | string | "keep-open" } = {}): Run {
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, ...args], { env: hermeticEnv(), stdio: ["pipe", "pipe", "pipe"] });
  const chunks: Run["chunks"] = [];
  for (const stream of ["stdout", "stderr"] as const) {
    child[stream]!.on("data", (d: Buffer) => chunks.push({ stream, text: d.toString(), at: performance.now() }));
  }
  if (options.stdin === undefined) child.stdin!.end();
  else if (options.stdin !== "keep-open") child.stdin!.end(options.stdin);
  child.stdin!.on("error", () => {});
  const timer = setTimeout(() => sendSignal(child, "SIGKILL"), 60_000);
  const done = new Promise<Awaited<Run["done"]>>((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const text = (s: string) => chunks.filter((c) => c.stream === s).map((c) => c.text).join("");
      resolve({ code, signal, stdout: text("stdout"), stderr: text("stderr"), at: performance.now() });
    })
  );
  return { child, chunks, done };
}

const run = (args: string[], options?: Parameters<typeof cli>[1]) =>
  cli(["run", target, "--key-file", keyFile, ...args], options).done;
const cp = (...args: string[]) => cli(["cp", "--key-file", keyFile, ...args]).done;
const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

// ---- agent run ------------------------------------------------------------------------------------

remote("run: exits with the program's code; stdout and stderr stream as they come, in order", async () => {
  const r = cli([
    "run",
    target,
    "--key-file",
    keyFile,
    "--",
    "sh",
    "-c",
    "echo one; sleep 0.7; echo two >&2; sleep 0.7; echo three; exit 7",
  ]);
  const result = await r.done;
  assert.is(result.code, 7, result.stderr);
  assert.is(result.stdout, "one\nthree\n");
  assert.is(result.stderr, "two\n");
  const when = (text: string) => r.chunks.find((c) => c.text.includes(text))!.at;
  assert.ok(when("one") < when("two") && when("two") < when("three"), "arrival order is the order written");
  assert.ok(
    result.at - when("one") > 900,
    `"one" arrived ${(result.at - when("one")).toFixed(0)} ms before the end, not at it`,
  );
});

remote("run: no shell unless asked; --shell runs one command line through /bin/sh", async () => {
  const plain = await run(["--", "echo", "$HOME", "a;b"]);
  assert.is(plain.stdout, "$HOME a;b\n");
  const shell = await run(["--shell", "--", "echo", "x", "|", "tr", "x", "y"]);
  assert.is(shell.stdout, "y\n");
});

remote("run: piped standard input reaches the program, all of it, and its end closes the program's stdin", async () => {
  const input = crypto.randomBytes(3 * 1024 * 1024);
  const r = await run(["--", "sha256sum"], { stdin: input });
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.split(" ")[0], crypto.createHash("sha256").update(input).digest("hex"));
  const none = await run(["--no-stdin", "--", "cat"], { stdin: "ignored" });
  assert.is(none.stdout, "");
});

remote("run: a program ended by a signal exits 128 + its number", async () => {
  const r = await run(["--", "sh", "-c", "kill -KILL $$"]);
  assert.is(r.code, 137);
  assert.match(r.stderr, /ended by SIGKILL/);
  const json = await run(["--json", "--", "sh", "-c", "echo out; kill -TERM $$"]);
  assert.is(json.code, 143);
  assert.equal(JSON.parse(json.stdout), { code: null, signal: "SIGTERM", exitCode: 143, stdout: "out\n", stderr: "" });
});

remote(
  "run: the program holds no descriptor of the agent's but its own stdin, stdout and stderr, and SIGPIPE is not ignored",
  async () => {
    const fds = await run(["--", "sh", "-c", "ls /proc/$$/fd"]);
    assert.equal(fds.stdout.trim().split("\n").sort(), ["0", "1", "2"]);
    const pipe = await run(["--", "sh", "-c", "kill -PIPE $$; echo survived"]);
    assert.is(pipe.code, 141, pipe.stdout);
  },
);

remote("run: Ctrl-C reaches the program as SIGINT; a second one ends it", async () => {
  const trapping = cli([
    "run",
    target,
    "--key-file",
    keyFile,
    "--",
    "sh",
    "-c",
    "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.1; done",
  ]);
  await until(() => trapping.chunks.some((c) => c.text.includes("ready")), "the program is running");
  sendSignal(trapping.child, "SIGINT");
  const first = await trapping.done;
  assert.is(first.code, 42, first.stderr);
  assert.match(first.stdout, /got-int/);

  const stubborn = cli([
    "run",
    target,
    "--key-file",
    keyFile,
    "--",
    "sh",
    "-c",
    "trap '' INT; echo ready; while :; do sleep 0.1; done",
  ]);
  await until(() => stubborn.chunks.some((c) => c.text.includes("ready")), "the program is running");
  sendSignal(stubborn.child, "SIGINT");
  await new Promise((r) => setTimeout(r, 300));
  assert.is(stubborn.child.exitCode, null, "one Ctrl-C is only a request");
  sendSignal(stubborn.child, "SIGINT");
  const second = await stubborn.done;
  assert.is(second.code, 137, second.stderr);
});

remote("run: a second Ctrl-C ends a program that ignores SIGINT, children and all, at once", async () => {
  const stubborn = cli(["run", target, "--key-file", keyFile, "--", "sh", "-c", "trap '' INT; echo ready; sleep 20"]);
  await until(() => stubborn.chunks.some((c) => c.text.includes("ready")), "the program is running");
  sendSignal(stubborn.child, "SIGINT");
  await new Promise((r) => setTimeout(r, 300));
  const second = performance.now();
  sendSignal(stubborn.child, "SIGINT");
  const r = await stubborn.done;
  assert.is(r.code, 137, r.stderr);
  assert.ok(r.at - second < 3000, `ended ${(r.at - second).toFixed(0)} ms after the second Ctrl-C`);
});

remote("run: everything after the host is the command, as with ssh; a usage error exits 254", async () => {
  const [cmd, ...pre] = agentCommand();
  const bare = (args: string[]) => cli(args).done;
  const listing = await bare(["run", target, "--key-file", keyFile, "ls", "-la", "/"]);
  assert.is(listing.code, 0, listing.stderr);
  assert.match(listing.stdout, /\betc\b/);
  const plain = await bare(["run", "--key-file", keyFile, target, "true"]);
  assert.is(plain.code, 0, plain.stderr);
  const unknown = await bare(["run", target, "--key-file", keyFile, "--frob", "--", "true"]);
  assert.is(unknown.code, 254, `${cmd} ${pre}: ${unknown.stderr}`);
});

remote("run and cp --json print a JSON object when they fail, too", async () => {
  const r = await cli(["run", target, "--key-file", keyFile, "--json", "--", "no-such-program-here"]).done;
  assert.is(r.code, 127);
  const failed = JSON.parse(r.stdout);
  assert.is(failed.ok, false);
  assert.is(failed.exitCode, 127);
  assert.match(failed.error, /no such program/);
  const c = await cli(["cp", "--key-file", keyFile, "--json", `${target}:no-such-file`, tempDir()]).done;
  assert.is(c.code, 20);
  assert.equal([JSON.parse(c.stdout).ok, JSON.parse(c.stdout).exitCode], [false, 20]);
});

remote("run: each failure has its message and exit code", async () => {
  await run(["--shell", "--", "echo data > plain.txt; chmod 644 plain.txt"]);
  const cases: Array<[string, string[], number, RegExp]> = [
    ["wrong key", ["run", target, "--key-file", wrongKeyFile, "--", "true"], 247, /not one the agent accepts/],
    [
      "refused",
      ["run", `127.0.0.1:${await closedPort()}`, "--key-file", keyFile, "--", "true"],
      244,
      /connection refused/,
    ],
    [
      "unknown host name",
      ["run", "no-such-host.invalid", "--key-file", keyFile, "--timeout", "8", "--", "true"],
      243,
      /cannot resolve no-such-host\.invalid/,
    ],
    ["no such program", ["run", target, "--key-file", keyFile, "--", "no-such-program-here"], 127, /no such program/],
    ["not executable", ["run", target, "--key-file", keyFile, "--", "./plain.txt"], 126, /permission|denied/i],
    [
      "a directory where a program was expected",
      ["run", target, "--key-file", keyFile, "--", "/tmp"],
      126,
      /permission|denied/i,
    ],
    ["product refused", ["run", target, "--key-file", keyFile, "--product", "other", "--", "true"], 249, /other/],
    ["no program", ["run", target, "--key-file", keyFile], 254, /needs a server and a program/],
    ["no key", ["run", target, "--", "true"], 254, /no key/],
  ];
  for (const [name, args, code, message] of cases) {
    const r = await cli(args).done;
    assert.is(r.code, code, `${name}: ${r.stderr}`);
    assert.match(r.stderr, message, name);
  }
});

remote(
  "run: a relative --cwd is under the product root, and a missing program or directory is named as such",
  async () => {
    const root = (await run(["--", "pwd"])).stdout.trim();
    await run(["--", "mkdir", "-p", "sub/deeper"]);
    const sub = await run(["--cwd", "sub/deeper", "--", "pwd"]);
    assert.is(sub.code, 0, sub.stderr);
    assert.is(sub.stdout.trim(), path.join(root, "sub/deeper"));
    const noProgram = await run(["--cwd", "sub", "--", "no-such-program-here"]);
    assert.is(noProgram.code, 127);
    assert.match(noProgram.stderr, /no such program/);
    assert.not.match(noProgram.stderr, /working directory/, "the directory exists: say nothing of it");
    const noDir = await run(["--cwd", "not-there", "--", "pwd"]);
    assert.is(noDir.code, 127);
    assert.match(noDir.stderr, /working directory .*not-there.* does not exist/);
  },
);

// ---- agent cp -------------------------------------------------------------------------------------

remote(
  "cp: a file up and back down is byte for byte the same, and --json reports the SHA-256 both ends agreed on",
  async () => {
    const dir = tempDir();
    const original = path.join(dir, "release.bin");
    fs.writeFileSync(original, crypto.randomBytes(9 * 1024 * 1024 + 17));
    const up = await cp("--json", original, `${target}:release.bin`);
    assert.is(up.code, 0, up.stderr);
    const report = JSON.parse(up.stdout);
    assert.is(report.files, 1);
    assert.is(report.copied[0].sha256, sha256(original));
    const back = path.join(dir, "back.bin");
    const down = await cp(`${target}:release.bin`, back);
    assert.is(down.code, 0, down.stderr);
    assert.is(sha256(back), sha256(original));
    assert.is(down.stderr, "", "quiet when no terminal watches");
    const into = await cp(original, `${target}:.`); // into an existing directory: keeps its name
    assert.is(into.code, 0, into.stderr);
  },
);

remote("cp -r: a tree of many small files goes up and comes back the same, with no temporary files left", async () => {
  const dir = tempDir();
  const tree = path.join(dir, "site");
  for (let i = 0; i < 300; i++) {
    const sub = path.join(tree, `d${i % 7}`, i % 2 ? "deep" : "");
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, `f${i}.txt`), crypto.randomBytes(1 + (i * 37) % 2048));
  }
  fs.mkdirSync(path.join(tree, "empty"));
  const up = await cp("-r", tree, `${target}:site-copy`);
  assert.is(up.code, 0, up.stderr);
  const back = path.join(dir, "back");
  const down = await cp("-r", "--json", `${target}:site-copy`, back);
  assert.is(down.code, 0, down.stderr);
  assert.is(JSON.parse(down.stdout).files, 300);
  const listing = (root: string) => (fs.readdirSync(root, { recursive: true }) as string[]).sort();
  assert.equal(listing(back), listing(tree));
  for (const f of listing(tree)) {
    if (fs.statSync(path.join(tree, f)).isFile()) {
      assert.is(sha256(path.join(back, f)), sha256(path.join(tree, f)), f);
    }
  }
  const remoteList = await run(["--", "find", "site-copy", "-name", ".*.agent-*"]);
  assert.is(remoteList.stdout, "", "no temporary names left on the server");
});

remote("cp: each failure has its message and exit code, and leaves the destination as it was", async () => {
  const dir = tempDir();
  const existing = path.join(dir, "keep.txt");
  fs.writeFileSync(existing, "original\n");
  await run(["--", "mkdir", "-p", "adir"]);
  const cases: Array<[string, string[], number, RegExp]> = [
    ["missing remote file", [`${target}:no-such-file`, existing], 20, /no such file/],
    ["directory where a file was expected", [`${target}:adir`, existing], 21, /is a directory on the server \(add -r/],
    ["missing local file", [path.join(dir, "nope"), `${target}:x`], 24, /no such file or directory/],
    ["local directory without -r", [dir, `${target}:x`], 21, /is a directory \(add -r/],
    ["refused", [existing, `127.0.0.1:${await closedPort()}:x`], 4, /connection refused/],
    ["two remote ends", [`${target}:a`, `${target}:b`], 2, /between this machine and one server/],
  ];
  for (const [name, args, code, message] of cases) {
    const r = await cp(...args);
    assert.is(r.code, code, `${name}: ${r.stderr}`);
    assert.match(r.stderr, message, name);
  }
  const wrong = await cli(["cp", "--key-file", wrongKeyFile, existing, `${target}:x`]).done;
  assert.is(wrong.code, 7, wrong.stderr);
  assert.is(fs.readFileSync(existing, "utf8"), "original\n");
  assert.equal(fs.readdirSync(dir), ["keep.txt"], "nothing else was written here");
});

remote(
  "run: output onto a full local disk exits 251 and ends the program; a reader that goes away ends it quietly",
  async () => {
    await withFullDisk(async (dir) => {
      const out = fs.openSync(path.join(dir, "out.txt"), "w");
      const [cmd, ...pre] = agentCommand();
      const child = spawn(cmd, [
        ...pre,
        "run",
        target,
        "--key-file",
        keyFile,
        "--",
        "sh",
        "-c",
        "echo $$ > pid.txt; head -c 8388608 /dev/zero; sleep 30",
      ], { env: hermeticEnv(), stdio: ["ignore", out, "pipe"] });
      let stderr = "";
      child.stderr!.on("data", (d) => (stderr += d));
      const code = await new Promise<number | null>((r) => child.on("close", r));
      fs.closeSync(out);
      assert.is(code, 251, stderr);
      assert.match(stderr, /no space left on the local disk; the program was ended/);
    });
    const [cmd, ...pre] = agentCommand();
    const reader = spawn(cmd, [...pre, "run", target, "--key-file", keyFile, "--", "yes"], {
      env: hermeticEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    reader.stderr!.on("data", (d) => (stderr += d));
    await new Promise((r) => reader.stdout!.once("data", r));
    reader.stdout!.destroy(); // as `| head -1` does once it has its line
    const timer = setTimeout(() => sendSignal(reader, "SIGKILL"), 20_000);
    const code = await new Promise<number | null>((r) => reader.on("close", r));
    clearTimeout(timer);
    assert.is(code, 141, stderr);
    assert.is(stderr, "", "quietly");
  },
);

remote("cp: a download onto a full local disk exits 25 and never replaces the existing file", async () => {
  await withFullDisk(async (dir) => {
    const existing = path.join(dir, "big.bin");
    fs.writeFileSync(existing, "original\n");
    await run(["--", "sh", "-c", "head -c 4194304 /dev/urandom > big4.bin"]);
    const r = await cp(`${target}:big4.bin`, existing);
    assert.is(r.code, 25, r.stderr);
    assert.match(r.stderr, /no space left on the local disk/);
    assert.is(fs.readFileSync(existing, "utf8"), "original\n");
    assert.equal(fs.readdirSync(dir), ["big.bin"], "the partial download was removed");
  });
});

remote.run();
