// Operating the agent as a service, on the built binary: log levels and formats, config errors,
// keys, help, signals. (Issue "Operable as a service".)
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import { agentCommand, hermeticEnv, ROOT, runAgent, runAgentAsync, sendSignal, startAgent, stopAll, tempDir, until } from "./helpers/agent-process.ts";

const ops = suite("operations e2e");
const KEY = generateKey();
ops.after(stopAll);

ops("text logs: every line has a time, the pid and a level", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex]); // a rejection: a warning
  await agent.waitForLog(/rejected: bad-key/);
  await agent.stop();
  const lines = agent.stderr().trim().split("\n");
  assert.ok(lines.length >= 4);
  for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT[\d:.]+Z agent\[\d+\] (info|warn|error): \S/, l);
  assert.ok(lines.some((l) => / warn: connection .* rejected: bad-key/.test(l)));
});

ops("--log-format json: every line is one JSON object with time, level, pid and message", async () => {
  const agent = await startAgent(["--key", KEY.hex, "--log-format", "json"], { ready: /"msg":"listening on \S+:\d+/ });
  await agent.stop();
  const lines = agent.stderr().trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(lines.length >= 3);
  for (const l of lines) assert.equal(Object.keys(l), ["time", "level", "pid", "msg"]);
  assert.ok(lines.some((l) => l.level === "info" && /^listening on/.test(l.msg)));
});

ops("under systemd (JOURNAL_STREAM names standard error) lines carry journald priorities and no time", async () => {
  const dir = tempDir();
  const logFile = path.join(dir, "journal");
  const fd = fs.openSync(logFile, "w");
  const st = fs.fstatSync(fd);
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, "start", "--host", "127.0.0.1", "--port", "0", "--key", KEY.hex, "--insecure"], {
    env: hermeticEnv({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }), stdio: ["ignore", "ignore", fd],
  });
  fs.closeSync(fd);
  try {
    await until(() => /listening on/.test(fs.readFileSync(logFile, "utf8")), "the agent listens");
  } finally {
    sendSignal(child, "SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  const lines = fs.readFileSync(logFile, "utf8").trim().split("\n");
  assert.match(lines.find((l) => l.includes("--insecure"))!, /^<4>--insecure: encryption and authentication are OFF/);
  assert.ok(lines.some((l) => /^<6>listening on /.test(l)));
  for (const l of lines) assert.match(l, /^<[346]>\S/, l);
});

ops("a config file with a setting of the wrong type fails to start, naming the file, the setting and what is allowed", async () => {
  const dir = tempDir();
  const file = path.join(dir, "config.json");
  fs.writeFileSync(file, JSON.stringify({ insecure: "false" }));
  const r = await runAgentAsync(["start", "--config", file]);
  assert.is(r.code, 2);
  assert.is(r.stderr.trim(), `agent: config file ${file}: setting "insecure" is "false" (a string); allowed: true or false (a JSON boolean, not a string)`);
  fs.writeFileSync(file, JSON.stringify({ host: 5 }));
  assert.match((await runAgentAsync(["start", "--config", file])).stderr, /setting "host" is 5 \(a number\)/);
  assert.match((await runAgentAsync(["start", "--log-format", "xml"])).stderr, /--log-format must be one of text, journal, json, not "xml"/);
});

ops("`agent help` and `agent help <command>` teach; an unknown option is named as it was typed", () => {
  const h = runAgent(["help"]);
  assert.is(h.code, 0);
  for (const c of ["start", "status", "keygen", "probe"]) assert.match(h.stdout, new RegExp(`\\n\\s+${c}`));
  const k = runAgent(["help", "keygen"]);
  assert.is(k.code, 0);
  assert.match(k.stdout, /--show <file>/);
  const o = runAgent(["keygen", "--bogus-flag"]);
  assert.is(o.code, 2);
  assert.match(o.stderr, /Unknown option `--bogus-flag`/);
});

ops("a system user with no home directory: under systemd the state goes to its StateDirectory", async () => {
  const dir = tempDir();
  const agent = await startAgent(["--key", KEY.hex], { env: { AGENT_STATE_DIR: "", HOME: "/nonexistent", STATE_DIRECTORY: dir } });
  assert.match(agent.stderr(), new RegExp(`state in ${dir}`));
  assert.ok(fs.existsSync(path.join(dir, "agent.sock")));
  await agent.stop();
});

ops("`deno task start` runs the agent with the Deno from the npm registry", async () => {
  const deno = path.join(ROOT, "node_modules", ".bin", "deno");
  const child = spawn(deno, ["task", "start", "--host", "127.0.0.1", "--port", "0", "--insecure"], {
    cwd: ROOT, env: hermeticEnv(), stdio: ["ignore", "ignore", "pipe"], detached: true,
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  try {
    await until(() => /listening on 127\.0\.0\.1:\d+/.test(err), "deno task start listens", 60_000);
  } finally {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch { /* gone */ }
    await new Promise((r) => child.once("exit", r));
  }
  assert.not.match(err, /SyntaxError/);
});

ops.run();
