// Starting programs (runtime/spawn.ts) through posix_spawn and through the
// child_process fallback: the same child either way, real processes and pipes.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { type StartBackend, startBackend, type StartedProcess, startProcess } from "../runtime/spawn.ts";
import { procStat, tempDir } from "./helpers/agent-process.ts";

const ENV = { PATH: "/usr/bin:/bin" };

function text(stream: Readable): Promise<string> {
  return new Promise((resolve) => {
    let all = "";
    stream.on("data", (d) => (all += d));
    stream.once("close", () => resolve(all));
  });
}

/** Runs to the end: stdout, stderr, and how it ended. */
async function finish(child: StartedProcess, stdin = "") {
  child.stdin.end(stdin);
  const [stdout, stderr, status] = await Promise.all([text(child.stdout), text(child.stderr), child.exit]);
  return { stdout, stderr, ...status };
}

async function startError(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code!;
  }
  throw new Error("the start did not fail");
}

const mechanism = suite("process start mechanism");
mechanism("is posix_spawn on Linux, where both runtimes have an FFI", () => {
  assert.is(startBackend(), process.platform === "linux" ? "posix_spawn" : "child_process");
});
mechanism.run();

for (const via of ["posix_spawn", "child_process"] as StartBackend[]) {
  const it = suite(`start a process through ${via}`);
  const start = (program: string, args: string[] = [], env: Record<string, string> = ENV, cwd?: string) =>
    startProcess(program, args, { environment: env, cwd, via });

  it("feeds stdin and returns stdout, stderr and the exit code", async () => {
    const r = await finish(await start("sh", ["-c", "tr a-z A-Z; echo oops >&2; exit 3"]), "hello\n");
    assert.equal(r, { stdout: "HELLO\n", stderr: "oops\n", code: 3, signal: null });
  });

  it("names the signal that ended it, with every signal at its default (SIGPIPE is not left ignored)", async () => {
    const r = await finish(await start("sh", ["-c", "kill -PIPE $$; echo survived"]));
    assert.equal([r.stdout, r.code, r.signal], ["", null, "SIGPIPE"]);
  });

  it("finds the program on the child's own PATH, runs it in the given directory, with exactly the given environment", async () => {
    const dir = tempDir();
    fs.writeFileSync(
      path.join(dir, "greet"),
      '#!/bin/sh\necho "$GREETING from $(/bin/pwd), PATH=$PATH, HOME=${HOME-unset}"\n',
      { mode: 0o755 },
    );
    const r = await finish(await start("greet", [], { PATH: `${dir}:/bin`, GREETING: "hi" }, "/usr"));
    assert.is(r.stdout, `hi from /usr, PATH=${dir}:/bin, HOME=unset\n`);
  });

  it("fails with ENOENT for a missing program or working directory, and EACCES for a file that is not executable", async () => {
    assert.is(await startError(start("no-such-program-here")), "ENOENT");
    assert.is(await startError(start("/no/such/program")), "ENOENT");
    assert.is(await startError(start("true", [], ENV, "/no/such/directory")), "ENOENT");
    const file = path.join(tempDir(), "data.txt");
    fs.writeFileSync(file, "not a program\n", { mode: 0o644 });
    assert.is(await startError(start(file)), "EACCES");
  });

  it("leads its own process group, so signalling the group reaches its children", async () => {
    const child = await start("sh", ["-c", "sleep 30 & echo $!; wait"]);
    const pgid = Number(procStat(child.pid)[2]);
    assert.is(pgid, child.pid);
    const sleeper = Number(
      (await new Promise<string>((resolve) => child.stdout.once("data", (d) => resolve(String(d))))).trim(),
    );
    process.kill(-child.pid, "SIGTERM");
    assert.equal((await child.exit).signal, "SIGTERM");
    for (
      let i = 0;
      i < 100 && fs.existsSync(`/proc/${sleeper}`) && !/\) Z/.test(fs.readFileSync(`/proc/${sleeper}/stat`, "utf8"));
      i++
    ) await new Promise((r) => setTimeout(r, 20));
    assert.not.ok(
      fs.existsSync(`/proc/${sleeper}`) && !/\) Z/.test(fs.readFileSync(`/proc/${sleeper}/stat`, "utf8")),
      "the group's child was ended too",
    );
  });

  it("reaps many children ending together, each with its own code", async () => {
    const children = await Promise.all(Array.from({ length: 40 }, (_, i) => start("sh", ["-c", `exit ${i}`])));
    const results = await Promise.all(children.map((c) => finish(c)));
    assert.equal(results.map((r) => r.code), Array.from({ length: 40 }, (_, i) => i));
  });

  if (via === "posix_spawn") {
    it("passes the child no file descriptor but 0, 1 and 2", async () => {
      const held = fs.openSync(path.join(tempDir(), "held"), "w"); // this process holds it; the child must not
      try {
        const r = await finish(await start("sh", ["-c", "ls /proc/$$/fd"]));
        assert.equal(r.stdout.trim().split("\n").sort(), ["0", "1", "2"]);
      } finally {
        fs.closeSync(held);
      }
    });
  }

  it.run();
}
