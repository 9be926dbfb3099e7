// Least privilege for what the agent starts: launched programs begin from a clean, documented
// environment, and hosts inherit no descriptor but their own. The built agent, real hosts, the
// client over loopback.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Agent, connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import {
  agentCommand,
  hermeticEnv,
  runAgent,
  type RunningAgent,
  startAgent,
  stopAll,
  tempDir,
} from "./helpers/agent-process.ts";

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

const AS_ROOT = process.getuid?.() === 0;

/** A user made for one test (with a group of its own and one supplementary group); `remove` deletes both. */
function testUser() {
  const name = `agt${process.pid % 100000}`, extra = `${name}x`;
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim();
  };
  run("groupadd", [extra]);
  run("useradd", ["-M", "-d", "/nonexistent-agt", "-s", "/bin/sh", "-U", "-G", extra, name]);
  return {
    name,
    uid: Number(run("id", ["-u", name])),
    gid: Number(run("id", ["-g", name])),
    extraGid: Number(run("getent", ["group", extra]).split(":")[2]),
    remove: () => {
      spawnSync("userdel", [name]);
      spawnSync("groupdel", [extra]);
    },
  };
}

/** A /proc/<pid>/status line's numbers ("Uid", "Gid", "Groups"). */
function statusIds(pid: number, field: string): number[] {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`))!;
  return line.slice(field.length + 1).trim().split(/\s+/).filter(Boolean).map(Number);
}

privilege("a product's hosts run as its user, with its group and supplementary groups", async () => {
  if (!AS_ROOT) return console.warn("  (skipped: needs root to start hosts as another user)");
  const user = testUser();
  let agent: RunningAgent | null = null;
  try {
    const stateDir = tempDir();
    fs.writeFileSync(
      path.join(stateDir, "config.json"),
      JSON.stringify({ keys: [KEY.hex], products: { alpha: { user: user.name }, beta: {} } }),
      { mode: 0o600 },
    );
    agent = await startAgent([], { stateDir });
    const c = await client(agent.port);
    const s = await c.openSession("alpha");
    const hostPid = (await s.system.info()).pid;
    assert.equal(statusIds(hostPid, "Uid"), [user.uid, user.uid, user.uid, user.uid], "the host's uids");
    assert.equal(statusIds(hostPid, "Gid"), [user.gid, user.gid, user.gid, user.gid], "the host's gids");
    assert.equal(statusIds(hostPid, "Groups").sort(), [user.gid, user.extraGid].sort(), "supplementary groups");

    const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    assert.is(text((await s.processes.run({ program: "id", args: ["-u"] })).stdout), String(user.uid));
    assert.ok(
      text((await s.processes.run({ program: "id", args: ["-G"] })).stdout).split(" ").includes(String(user.extraGid)),
    );
    const env = await s.system.env();
    assert.is(env.USER, user.name);
    assert.is(env.HOME, "/nonexistent-agt");
    await s.files.writeFile("made.txt", new TextEncoder().encode("x"));
    assert.is(fs.statSync(path.join(s.productRoot, "made.txt")).uid, user.uid, "files it creates are the user's");

    const runDir = path.join(stateDir, "run", String(user.uid));
    const dirStat = fs.statSync(runDir);
    assert.is(dirStat.uid, user.uid);
    assert.is(dirStat.mode & 0o777, 0o700, "its run directory: no other product's user may enter");
    const channels = fs.readdirSync(runDir).filter((f) => f.endsWith(".mmap"));
    assert.ok(channels.length >= 1);
    assert.is(fs.statSync(path.join(runDir, channels[0])).uid, user.uid, "its channel file is the user's");
    assert.is(fs.statSync(stateDir).mode & 0o777, 0o711, "others may pass through the state directory, not list it");
    assert.is(fs.statSync(path.join(stateDir, "config.json")).mode & 0o777, 0o600, "the keys stay private");

    const other = await c.openSession("beta");
    assert.equal(statusIds((await other.system.info()).pid, "Uid")[0], 0, "a product without a user runs as the agent");
    await other.close();
    await s.close();
  } finally {
    await agent?.stop(); // its hosts run as the user: userdel refuses while they do
    user.remove();
  }
});

privilege("start --check refuses a product user that does not exist", () => {
  const stateDir = tempDir();
  fs.writeFileSync(
    path.join(stateDir, "config.json"),
    JSON.stringify({ keys: [KEY.hex], products: { alpha: { user: "no-such-user-agt" } } }),
    { mode: 0o600 },
  );
  const r = runAgent(["start", "--check"], { AGENT_STATE_DIR: stateDir });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, AS_ROOT ? /product alpha: no user "no-such-user-agt"/ : /runs as uid \d+, not root/);
});

privilege("an agent that is not root refuses product users at start --check, and says why", () => {
  if (!AS_ROOT || spawnSync("setpriv", ["--version"]).status !== 0) {
    return console.warn("  (skipped: needs root and setpriv to run the agent as another user)");
  }
  const stateDir = tempDir();
  fs.chownSync(stateDir, 65534, 65534);
  const config = path.join(stateDir, "config.json");
  fs.writeFileSync(config, JSON.stringify({ products: { alpha: { user: "nobody" } } }), { mode: 0o600 });
  fs.chownSync(config, 65534, 65534);
  const r = spawnSync("setpriv", [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...agentCommand(),
    "start",
    "--check",
  ], {
    env: hermeticEnv({ HOME: stateDir, AGENT_STATE_DIR: stateDir }),
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, /"products" names a user for alpha, but the agent runs as uid 65534, not root/);
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
