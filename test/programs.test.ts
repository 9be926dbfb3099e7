// build.ts makes two programs: the agent's, and the host's alone, which a session's host runs so
// that it never parses nor keeps the agent's code (docs/operations.md "Memory").
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { hostCommand } from "../runtime/self.ts";
import { hermeticEnv, IS_DENO, ROOT, tempDir } from "./helpers/agent-process.ts";

const test = suite("programs");

const dist = (file: string) => fs.readFileSync(path.join(ROOT, "dist", file), "utf8");

for (const ext of ["cjs", "mjs"]) {
  test(`dist/host.${ext} holds the host and none of the agent's server, command line or client`, () => {
    const host = dist(`host.${ext}`), agent = dist(`agent.${ext}`);
    assert.ok(host.includes("function hostMain("), "the host's code");
    for (
      const name of ["AgentServer=class", "SessionManager=class", "AgentClient=class", "Run a program on a server"]
    ) {
      assert.not.ok(host.includes(name), `host.${ext} carries ${name}`);
      assert.ok(agent.includes(name), `agent.${ext} carries ${name}`);
    }
    assert.ok(host.length < agent.length / 3, `host ${host.length} bytes, agent ${agent.length}`);
  });
}

test("the agent starts its hosts with the host program beside its own, where there is one", () => {
  const dir = tempDir("programs-");
  const ext = IS_DENO ? "mjs" : "cjs";
  const agent = path.join(dir, `agent.${ext}`), host = path.join(dir, `host.${ext}`);
  fs.writeFileSync(agent, "");
  assert.is(hostCommand(agent).at(-1), agent, "no host program beside it: the agent's own");
  fs.writeFileSync(host, "");
  assert.is(hostCommand(agent).at(-1), host);
  assert.is(
    hostCommand(agent)[0],
    IS_DENO ? (globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath() : process.execPath,
  );
  const sources = path.join(ROOT, "cli/main.ts");
  assert.is(hostCommand(sources).at(-1), sources, "from the sources: cli/main.ts runs the host itself");
  fs.rmSync(dir, { recursive: true, force: true });
});

// Node lists the built-in modules a process has loaded; Deno has no such list.
if (!IS_DENO) {
  test("the executable's host loads node:crypto, node:child_process and fs promises only when a request needs them", () => {
    // Started by hand, the host refuses at once: by then its program has loaded all it loads at start.
    const report = path.join(tempDir(), "report.cjs");
    fs.writeFileSync(
      report,
      `process.on("exit", () => process.stderr.write("\\nloaded: " + process.moduleLoadList.join(",")));`,
    );
    const r = spawnSync(path.join(ROOT, "dist/agent"), ["host"], {
      env: hermeticEnv({ NODE_OPTIONS: `--require ${report}` }),
      encoding: "utf8",
      stdio: ["pipe", "pipe", "pipe"],
    });
    assert.match(r.stderr, /cannot be started by hand/);
    const loaded = r.stderr.slice(r.stderr.indexOf("loaded: ")).split(",");
    assert.ok(loaded.includes("NativeModule fs"), "the list was read");
    for (const name of ["NativeModule crypto", "NativeModule child_process", "NativeModule internal/fs/promises"]) {
      assert.not.ok(loaded.includes(name), `${name} loaded at start`);
    }
  });
}

test.run();
