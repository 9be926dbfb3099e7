// The local agent: a product on the same machine, no network, the same host processes.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NotFoundError } from "../mod.ts";
import { LocalAgent } from "../local.ts";
import { agentCommand, IS_DENO, stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("local");

test.after(stopAll);

test("local agent: sessions, processes and files with no listener at all", async () => {
  const local = await LocalAgent.start({ stateDir: tempDir(), agentCommand: agentCommand() });
  const s = await local.openSession("local");
  const r = await s.processes.run({ program: "sh", args: ["-c", "printf local; exit 2"] });
  assert.equal([new TextDecoder().decode(r.stdout), r.code], ["local", 2]);
  await s.files.writeFile("note.txt", new TextEncoder().encode("kept"));
  assert.is(new TextDecoder().decode(await s.files.readFile("note.txt")), "kept");
  assert.instance(await s.files.stat("missing").catch((e) => e), NotFoundError);
  const hostPid = (await s.system.info()).pid;
  assert.is((await local.listSessions()).length, 1);
  await local.stop();
  let alive = true;
  for (let i = 0; i < 100 && alive; i++) {
    try {
      process.kill(hostPid, 0);
      await new Promise((r) => setTimeout(r, 50));
    } catch {
      alive = false;
    }
  }
  assert.not.ok(alive, "stopping the local agent ends its hosts");
});

test("local agent: info counts its uptime from its start, as an agent does, not from the process's", async () => {
  const processUp = Math.max(0, 3 - process.uptime()) * 1000;
  await new Promise((r) => setTimeout(r, processUp)); // this process has run 3 s or more
  const local = await LocalAgent.start({ stateDir: tempDir(), agentCommand: agentCommand() });
  const info = await local.info();
  await local.stop();
  assert.ok(info.uptimeSeconds <= 1, `uptime ${info.uptimeSeconds} s`);
});

test("its hosts inherit the tests' private HOME: native code they unpack never lands in the user's cache", async () => {
  assert.ok(os.homedir().startsWith(os.tmpdir()), `HOME is ${os.homedir()}`);
  assert.is(process.env.XDG_CACHE_HOME, undefined);
  const local = await LocalAgent.start({ stateDir: tempDir(), agentCommand: agentCommand() });
  await (await local.openSession("local")).system.info();
  await local.stop();
  // The single executable (Node) unpacks koffi into ~/.cache/agent; Deno needs nothing unpacked.
  if (!IS_DENO) assert.ok(fs.readdirSync(path.join(os.homedir(), ".cache/agent")).some((f) => f.startsWith("koffi-")));
});

test("local agent without the agent program: a clear error, no crash; close() leaves no run directory", async () => {
  const stateDir = tempDir();
  const local = await LocalAgent.start({ stateDir, agentCommand: ["no-such-agent-program"] });
  const failed = await local.openSession("local").catch((e) => e);
  assert.match(String(failed?.message), /cannot run no-such-agent-program/);
  await local.close();
  assert.equal(fs.readdirSync(stateDir).filter((f) => f.startsWith("run-local-")), [], "run directory removed");
});

test.run();
