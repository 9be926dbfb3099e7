// `agent upgrade`: a new version takes over the listening socket, every session's host and every
// unacknowledged reply; clients resume and nothing is lost, repeated or refused.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import { notifySocket } from "./helpers/notify-socket.ts";
import { alive, runAgentAsync, type RunningAgent, startAgent, tempDir, until } from "./helpers/agent-process.ts";
import {
  brokenProgram,
  currentStatus,
  installedCopy,
  newVersion,
  ResumingSession,
  stopCurrent,
  stopUpgradeable,
  trackUpgradeable,
} from "./helpers/upgrade.ts";

const upgrade = suite("upgrade");
upgrade.after(() => stopUpgradeable());
const KEY = generateKey();
const MIB = 1024 * 1024;
const TRANSFER_MIB = 256;

/** An agent started from its own copy of the program, which upgrades may replace. */
async function upgradeableAgent(args: string[] = []) {
  const dir = tempDir("agent-upgrade-");
  const program = installedCopy(dir);
  const agent = trackUpgradeable(await startAgent(["--key", KEY.hex, ...args], { command: program.command }));
  return { dir, program, agent };
}

const status = currentStatus;

async function runUpgrade(agent: RunningAgent, file: string) {
  const t0 = performance.now();
  const r = await runAgentAsync(["upgrade", file, "--json"], { AGENT_STATE_DIR: agent.stateDir }, 120_000);
  return { ...r, ms: performance.now() - t0 };
}

/** Connects to `port` every few ms until stopped; counts the attempts that failed. */
function probeConnections(port: number) {
  let stopped = false, attempts = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (!stopped) {
      attempts++;
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, "127.0.0.1");
        socket.once("connect", () => (socket.destroy(), resolve()));
        socket.once("error", (e: NodeJS.ErrnoException) => (failures.push(e.code ?? e.message), resolve()));
      });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return { stop: async () => ((stopped = true), await loop, { attempts, failures }) };
}

/** Times a small request every 20 ms; the longest wait is the stall a client saw. */
function timeRequests(session: ResumingSession) {
  let stopped = false, longest = 0, count = 0;
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      await session.session.files.stat(".");
      longest = Math.max(longest, performance.now() - t0);
      count++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return { stop: async () => ((stopped = true), await loop, { longest, count }) };
}

/** `mib` MiB in fresh 4 MiB chunks: a chunk is kept until the agent has it, and sent again after a resume. */
function* randomChunks(mib: number, hash: crypto.Hash): Generator<Uint8Array> {
  for (let i = 0; i < mib / 4; i++) {
    const block = crypto.randomBytes(4 * MIB);
    hash.update(block);
    yield block;
  }
}

/** Downloads `file`, hashing it; notes the longest gap between chunks. */
async function download(session: ResumingSession, file: string) {
  const hash = crypto.createHash("sha256");
  let last = performance.now(), longestGap = 0;
  for await (const chunk of session.session.files.readStream(file)) {
    hash.update(chunk);
    longestGap = Math.max(longestGap, performance.now() - last);
    last = performance.now();
  }
  return { sha256: hash.digest("hex"), longestGap };
}

upgrade("three upgrades under load: transfers, numbered output and an idle client carry on exactly once", async () => {
  const { dir, agent } = await upgradeableAgent();
  const a = await ResumingSession.open(agent.port, KEY.hex, "alpha");
  const b = await ResumingSession.attach(agent.port, KEY.hex, a.session.id);
  const hostPid = (await a.session.system.info()).pid;
  const printer = await a.session.processes.start({
    program: "sh",
    args: ["-c", "i=0; while [ $i -lt 100000 ]; do echo $i; i=$((i+1)); sleep 0.01; done"],
  });
  const downloadSource = path.join(a.session.productRoot, "down.bin");
  fs.writeFileSync(downloadSource, crypto.randomBytes(TRANSFER_MIB * MIB));
  const downloadSha = crypto.createHash("sha256").update(fs.readFileSync(downloadSource)).digest("hex");
  const uploadHash = crypto.createHash("sha256");
  const uploading = a.session.files.writeFile("up.bin", randomChunks(TRANSFER_MIB, uploadHash));
  const downloading = download(a, "down.bin");
  const probe = probeConnections(agent.port);
  const requests = timeRequests(a);
  await new Promise((r) => setTimeout(r, 300));

  const builds: string[] = [];
  for (let n = 1; n <= 3; n++) {
    const r = await runUpgrade(agent, newVersion(dir, `v${n}`));
    assert.is(r.code, 0, `upgrade ${n}: ${r.stdout}${r.stderr}\n${agent.stderr().slice(-3000)}`);
    const outcome = JSON.parse(r.stdout);
    builds.push(outcome.build);
    console.log(
      `  upgrade ${n}: serving after ${Math.round(outcome.servingAfterMs)} ms (hand-over ${outcome.tookMs} ms)`,
    );
  }
  assert.is(await uploading, TRANSFER_MIB * MIB);
  const down = await downloading;
  const probed = await probe.stop(), timed = await requests.stop();
  assert.is((await a.session.files.sha256("up.bin")).sha256, uploadHash.digest("hex"), "the upload checks out");
  assert.is(down.sha256, downloadSha, "the download checks out");
  assert.equal(probed.failures, [], `no connection attempt refused (${probed.attempts} made)`);
  await printer.signal("SIGTERM");
  const lines = new TextDecoder().decode(await printer.output()).trim().split("\n").map(Number);
  assert.ok(lines.length > 50, `${lines.length} lines`);
  lines.forEach((n, i) => assert.is(n, i, "every line once, in order"));
  assert.is((await a.session.system.info()).pid, hostPid, "the same host process");
  assert.is((await b.session.system.info()).pid, hostPid, "the idle client resumed the same session");
  assert.is((await status(agent)).program.build, builds[2], "status shows the new build");
  console.log(
    `  longest request stall ${Math.round(timed.longest)} ms (${timed.count} requests), longest download gap ` +
      `${Math.round(down.longestGap)} ms, resumes ${a.resumes} + ${b.resumes}, ${probed.attempts} connection attempts`,
  );
  assert.ok(a.resumes >= 3 && b.resumes >= 3, `resumes ${a.resumes}, ${b.resumes}`);
  await a.close();
  await b.close();
  await stopCurrent(agent);
});

upgrade("a new program that exits at start, or never reports prepared, is rolled back; nothing is lost", async () => {
  const { dir, program, agent } = await upgradeableAgent(["--config", writeConfig({ upgradeTimeoutSeconds: 3 })]);
  const a = await ResumingSession.open(agent.port, KEY.hex, "alpha");
  const p = await a.session.processes.start({
    program: "sh",
    args: ["-c", "i=0; while [ $i -lt 400 ]; do echo $i; i=$((i+1)); sleep 0.01; done"],
  });
  const original = fs.readFileSync(program.file);
  for (const kind of ["exits", "hangs"] as const) {
    const r = await runUpgrade(agent, brokenProgram(dir, kind));
    assert.is(r.code, 4, `${kind}: ${r.stdout}${r.stderr}`);
    const reason = kind === "exits" ? /exited before it was prepared/ : /did not report itself prepared within 3 s/;
    assert.match(r.stderr, reason);
    assert.ok(fs.readFileSync(program.file).equals(original), "the previous program is back in place");
    assert.is((await status(agent)).pid, agent.pid, "the old version still serves");
  }
  const lines = new TextDecoder().decode(await p.output()).trim().split("\n").map(Number);
  assert.is(lines.length, 400);
  lines.forEach((n, i) => assert.is(n, i));
  assert.is((await a.session.files.stat(".")).type, "directory", "the session still works");
  assert.ok(a.resumes >= 2, `resumed ${a.resumes} times`);
  await a.close();
  await stopCurrent(agent);
});

upgrade("a program that fails its check is refused before anything stops", async () => {
  const { dir, program, agent } = await upgradeableAgent();
  const bad = path.join(dir, "not-an-agent");
  fs.writeFileSync(bad, "#!/bin/sh\necho 'this is not the agent' >&2\nexit 3\n", { mode: 0o755 });
  const a = await ResumingSession.open(agent.port, KEY.hex, "alpha");
  const before = fs.readFileSync(program.file);
  const r = await runUpgrade(agent, bad);
  assert.is(r.code, 4, r.stderr);
  assert.match(r.stderr, /start --check/);
  assert.ok(fs.readFileSync(program.file).equals(before));
  assert.not.ok(fs.existsSync(`${program.file}.previous`), "nothing installed");
  assert.is(a.resumes, 0, "no connection was cut");
  await a.close();
  await stopCurrent(agent);
});

upgrade("ten upgrades leave nothing behind: no old agent, descriptor, channel file or program", async () => {
  const { dir, program, agent } = await upgradeableAgent();
  const versions = tempDir("agent-versions-");
  const a = await ResumingSession.open(agent.port, KEY.hex, "alpha");
  const pids = [agent.pid];
  const fdsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;
  let first = 0;
  for (let n = 1; n <= 10; n++) {
    const r = await runUpgrade(agent, newVersion(versions, `round${n}`));
    assert.is(r.code, 0, r.stderr);
    const now = await status(agent);
    pids.push(now.pid);
    await a.session.files.stat("."); // the session carries on each time
    if (n === 1) first = fdsOf(now.pid);
  }
  const last = pids[pids.length - 1];
  for (const pid of pids.slice(0, -1)) await until(() => !alive(pid), `agent ${pid} is gone`, 5000);
  assert.ok(fdsOf(last) <= first + 2, `descriptors ${first} after one upgrade, ${fdsOf(last)} after ten`);
  const channels = fs.readdirSync(path.join(agent.stateDir, "run")).filter((f) => !/^\d+$/.test(f));
  assert.equal(channels, [`${a.session.id}.mmap`], "one channel file for the one session, no hand-over state left");
  const beside = fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(program.file)));
  assert.equal(beside.sort(), [path.basename(program.file), `${path.basename(program.file)}.previous`].sort());
  await a.close();
  await stopCurrent(agent);
});

upgrade(
  "SIGHUP after the installed program changed hands over to it (systemctl reload after a package upgrade)",
  async () => {
    const { program, agent } = await upgradeableAgent();
    const a = await ResumingSession.open(agent.port, KEY.hex, "alpha");
    await until(async () => (await status(agent)).program.build !== "", "the running build is hashed");
    const before = await status(agent);
    const replacement = newVersion(tempDir("agent-versions-"), "packaged");
    fs.renameSync(replacement, program.file); // as a package manager replaces it
    process.kill(agent.pid, "SIGHUP");
    await until(
      async () => (await status(agent).catch(() => before)).pid !== before.pid,
      "the new version serves",
      60_000,
    );
    const after = await status(agent);
    assert.is.not(after.program.build, before.program.build);
    assert.is(after.program.previousBuild, before.program.build);
    await a.session.files.stat("."); // the session carried on
    const human = await runAgentAsync(["status"], { AGENT_STATE_DIR: agent.stateDir });
    assert.match(
      human.stdout,
      new RegExp(`build +${after.program.build.slice(0, 12)}, since .* \\(upgraded in place; was`),
    );
    await a.close();
    await stopCurrent(agent);
  },
);

upgrade("under systemd the main pid moves to the new version, which goes on feeding the watchdog", async () => {
  const socket = notifySocket();
  try {
    const dir = tempDir("agent-upgrade-");
    const program = installedCopy(dir);
    const agent = trackUpgradeable(
      await startAgent(["--key", KEY.hex], {
        command: program.command,
        env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "400000" },
      }),
    );
    await socket.waitFor((m) => m.some((x) => x.startsWith("READY=1")));
    const r = await runUpgrade(agent, newVersion(tempDir("agent-versions-"), "systemd"));
    assert.is(r.code, 0, r.stderr);
    const pid = (await status(agent)).pid;
    const mainPidAt = (m: string[]) => m.indexOf(`MAINPID=${pid}`);
    const after = await socket.waitFor(
      (m) => mainPidAt(m) >= 0 && m.slice(mainPidAt(m)).filter((x) => x === "WATCHDOG=1").length >= 3,
      10_000,
    );
    const moved = mainPidAt(after);
    assert.ok(moved >= 0, `systemd is told the new main pid ${pid}: ${JSON.stringify(after)}`);
    assert.ok(after.slice(moved).some((x) => x.startsWith("READY=1")), "the new version reports ready");
    assert.not.ok(after.slice(0, moved).some((x) => x.startsWith("STOPPING=1")), "the old one never says stopping");
    await stopCurrent(agent);
  } finally {
    socket.close();
  }
});

/** A config file with `settings`, in a fresh directory. */
function writeConfig(settings: Record<string, unknown>): string {
  const file = path.join(tempDir("agent-upgrade-config-"), "config.json");
  fs.writeFileSync(file, JSON.stringify(settings));
  return file;
}

upgrade.run();
