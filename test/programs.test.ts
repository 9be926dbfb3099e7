// build.ts makes two programs: the agent's, and the host's alone, which a session's host runs so
// that it never parses nor keeps the agent's code (docs/operations.md "Memory").
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { hostCommand } from "../runtime/self.ts";
import { IS_DENO, ROOT, tempDir } from "./helpers/agent-process.ts";

const dist = (file: string) => fs.readFileSync(path.join(ROOT, "dist", file), "utf8");

for (const ext of ["cjs", "mjs"]) {
  test(`dist/host.${ext} holds the host and none of the agent's server, command line or client`, () => {
    const host = dist(`host.${ext}`), agent = dist(`agent.${ext}`);
    assert.ok(host.includes("function hostMain("), "the host's code");
    for (const name of ["AgentServer=class", "SessionManager=class", "AgentClient=class", "Run a program on a server"]) {
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
  assert.is(hostCommand(agent)[0], IS_DENO ? (globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath() : process.execPath);
  const sources = path.join(ROOT, "cli/main.ts");
  assert.is(hostCommand(sources).at(-1), sources, "from the sources: cli/main.ts runs the host itself");
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
