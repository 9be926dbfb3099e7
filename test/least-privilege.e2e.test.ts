// Least privilege for what the agent starts: launched programs begin from a clean, documented
// environment, and hosts inherit no descriptor but their own. The built agent, real hosts, the
// client over loopback.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Agent, connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { startAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

const privilege = suite("least privilege e2e");
const KEY = generateKey();
const clients: Agent[] = [];

privilege.after(() => {
  clients.forEach((c) => c.close());
  stopAll();
});

async function client(port: number): Promise<Agent> {
  const c = await connect({ host: "127.0.0.1", port, key: KEY.hex });
  clients.push(c);
  return c;
}

/** `env` output as a map. */
function parseEnv(output: Uint8Array): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of new TextDecoder().decode(output).split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

const SECRETS = {
  HTTPS_PROXY: "http://proxyuser:proxy-secret@proxy.invalid:3128",
  http_proxy: "http://proxyuser:proxy-secret@proxy.invalid:3128",
  AGENT_TEST_SECRET: "agent-secret",
  NOTIFY_SOCKET: "/nonexistent/notify",
  SOME_OTHER_SETTING: "not for launched programs",
};

privilege("launched programs and the system service get the clean base, not the agent's environment", async () => {
  const home = tempDir("agent-home-");
  const agent = await startAgent(["--key", KEY.hex], { env: { ...SECRETS, HOME: home, LANG: "C.UTF-8", TZ: "UTC" } });
  const s = await (await client(agent.port)).openSession("alpha");
  const launched = parseEnv((await s.processes.run({ program: "env" })).stdout);
  const me = os.userInfo();
  assert.equal(
    Object.keys(launched).sort(),
    ["HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TZ", "USER"],
    `launched with: ${Object.keys(launched).join(" ")}`,
  );
  assert.is(launched.USER, me.username);
  assert.is(launched.HOME, home, "the agent's HOME: the same user");
  assert.equal(await s.system.env(), launched, "the system service reports the same environment");

  const added = parseEnv((await s.processes.run({ program: "env", env: { EXTRA: "1" } })).stdout);
  assert.is(added.EXTRA, "1", "a variable the client asks for is added");
  assert.is(added.HOME, home);
  const cleared = parseEnv(
    (await s.processes.run({ program: "/usr/bin/env", env: { ONLY: "this" }, clearEnv: true })).stdout,
  );
  assert.equal(cleared, { ONLY: "this" }, "clearEnv: only what the client gave");

  const info = await s.system.info();
  const hostEnv = fs.readFileSync(`/proc/${info.pid}/environ`, "utf8");
  for (const secret of ["proxy-secret", "agent-secret", "NOTIFY_SOCKET", "SOME_OTHER_SETTING"]) {
    assert.not.ok(hostEnv.includes(secret), `the host's own environment holds no ${secret}`);
  }
  await s.close();
  await agent.stop();
});

privilege("a host inherits no descriptor the agent's parent left open, only its own", async () => {
  const dir = tempDir();
  const leaked = path.join(dir, "left-open-by-the-parent");
  const fd = fs.openSync(leaked, "w");
  const agent = await startAgent(["--key", KEY.hex], { inherit: [fd] });
  fs.closeSync(fd);
  const agentFds = fs.readdirSync(`/proc/${agent.pid}/fd`).map((f) => safeLink(`/proc/${agent.pid}/fd/${f}`));
  assert.ok(agentFds.includes(leaked), "the agent holds it (the premise)");
  const s = await (await client(agent.port)).openSession("alpha");
  const hostPid = (await s.system.info()).pid;
  const agentSockets = fs.readdirSync(`/proc/${agent.pid}/fd`).map((f) => safeLink(`/proc/${agent.pid}/fd/${f}`));
  const hostFds = fs.readdirSync(`/proc/${hostPid}/fd`).map((f) => safeLink(`/proc/${hostPid}/fd/${f}`));
  assert.not.ok(hostFds.includes(leaked), `the host holds: ${hostFds.join(", ")}`);
  const shared = hostFds.filter((f) => f.startsWith("socket:") && agentSockets.includes(f));
  assert.equal(shared, [], "nor any of the agent's sockets (its listener, its clients' connections)");
  await s.close();
  await agent.stop();
});

/** Where a /proc fd link points ("" once gone). */
function safeLink(link: string): string {
  try {
    return fs.readlinkSync(link);
  } catch {
    return "";
  }
}

privilege.run();
