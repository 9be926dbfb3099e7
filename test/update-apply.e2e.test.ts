// Pushed updates that are applied by the hand-over (agent/upgrade.ts). A pushed build takes over and
// the agent serves on; a rollout over 20 agents with one broken stops at the canary or at the first failure, as
// configured, and reports every agent's outcome. Each agent runs from its own copy of the program, which the
// update replaces.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { connect, listen, type RemoteError, rollOutUpdate } from "../mod.ts";
import { selfSigned } from "./helpers/certs.ts";
import { generateKey } from "../core/secure/keys.ts";
import { VERSION } from "../core/version.ts";
import { IS_DENO, ROOT, type RunningAgent, startAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

import { currentStatus, installedCopy, stopCurrent, stopUpgradeable, trackUpgradeable } from "./helpers/upgrade.ts";

const test = suite("update apply e2e");

const RIGHT = generateKey(), PLAIN = generateKey();
const sha256Of = (bytes: Uint8Array) => crypto.createHash("sha256").update(bytes).digest("hex");
const PROGRAM = IS_DENO ? "agent.mjs" : "agent";

/** This build's program with bytes added at its end: a different build (SHA-256) that runs the same. */
function newBuild(tag: string): Uint8Array {
  const bytes = fs.readFileSync(path.join(ROOT, "dist", PROGRAM));
  const tail = new TextEncoder().encode(IS_DENO ? `\n// build ${tag}\n` : `build ${tag}`);
  return new Uint8Array(Buffer.concat([bytes, tail]));
}

/** An agent running from its own copy of the program (its flags after "start": `args`), with `keys` in its config file. */
async function agentFromCopy(keys: unknown[], args: string[] = [], ready?: RegExp) {
  const program = installedCopy(tempDir("agent-program-"));
  const stateDir = tempDir();
  fs.writeFileSync(path.join(stateDir, "config.json"), JSON.stringify({ keys }), { mode: 0o600 });
  const options = { stateDir, command: program.command, ...(ready ? { listenFlags: false, ready } : {}) };
  return { agent: trackUpgradeable(await startAgent(args, options)), program: program.file };
}

const WITH_RIGHT = [{ key: RIGHT.hex, rights: ["update"] }];

test.after(async () => {
  await stopUpgradeable(); // first: an upgraded agent is not this process's child
  stopAll();
});

test("a pushed build takes over: the outcome names both builds, the agent serves on, nothing is left staged", async () => {
  const { agent: running, program } = await agentFromCopy(WITH_RIGHT);
  const before = sha256Of(fs.readFileSync(program));
  const agent = await connect({ host: "127.0.0.1", port: running.port, key: RIGHT.hex });
  const session = await agent.openSession("buildmaster");
  await session.files.writeFile("kept.txt", "kept");
  const binary = newBuild("a");
  const outcome = await agent.update(binary);
  assert.is(outcome.version, VERSION);
  assert.is(outcome.build, sha256Of(binary));
  assert.is(outcome.previousBuild, before);
  assert.ok(outcome.tookMs > 0);
  assert.equal(fs.readdirSync(path.join(running.stateDir, "updates")), []);
  const again = await connect({ host: "127.0.0.1", port: running.port, key: RIGHT.hex });
  assert.is((await again.info()).version, VERSION);
  // The session outlives the hand-over: on its connection if that was handed over, else resumed on a new one.
  const read = () => session.files.readFile("kept.txt", { signal: AbortSignal.timeout(5000) });
  const kept = await read().catch(async () => {
    await session.resume(again.client);
    return await read();
  });
  assert.is(new TextDecoder().decode(kept), "kept");
  await session.close();
  again.close();
  agent.close();
  await stopCurrent(running);
});

test("an outbound agent takes a pushed build too: the answer comes back on its own connection", async () => {
  const cert = await selfSigned();
  const listener = await listen({
    host: "127.0.0.1",
    port: 0,
    cert: cert.cert,
    key: cert.key,
    agents: { dialer: RIGHT.hex },
  });
  const trust = ["--connect", `127.0.0.1:${listener.port}`, "--fingerprint", cert.fingerprint, "--no-listen"];
  const { agent: running } = await agentFromCopy(WITH_RIGHT, trust, /outbound \S+: connected/);
  const agent = await listener.waitForAgent("dialer", 10_000);
  const binary = newBuild("outbound");
  const outcome = await agent.update(binary);
  assert.is(outcome.build, sha256Of(binary), "the answer arrived before the old agent left");
  await agent.closed; // the old version left
  const again = await listener.waitForAgent("dialer", 30_000); // the new version dials in
  assert.is((await again.info()).version, VERSION);
  assert.is.not((await currentStatus(running)).pid, running.pid, "a new process serves");
  await stopCurrent(running);
  await listener.close();
});

/** 20 agents, `broken` of which gives the rollout's key no right; their targets in order. */
async function fleetOf20(broken: number) {
  const agents: RunningAgent[] = [];
  for (let batch = 0; batch < 20; batch += 5) { // five at a time: 2 cores
    const started = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => agentFromCopy(batch + i === broken ? [PLAIN.hex, RIGHT.hex] : WITH_RIGHT)),
    );
    agents.push(...started.map((s) => s.agent));
  }
  const targets = agents.map((a, i) => ({ name: `agent${i}`, host: "127.0.0.1", port: a.port, key: RIGHT.hex }));
  return { agents, targets };
}

test("20 agents, one broken: the rollout stops at the first failure, or at a failed canary; all reported", async () => {
  const { agents, targets } = await fleetOf20(7);
  const binary = newBuild("fleet");
  const results = await rollOutUpdate(targets, binary, { canary: 1, maxInFlight: 4, jitterMs: 50 });
  assert.is(results.length, 20);
  const status = results.map((r) => r.status);
  assert.is(status[7], "failed");
  assert.is(results[7].status === "failed" && (results[7].error as RemoteError).code, "update-not-allowed");
  assert.ok(status.slice(0, 7).every((s) => s === "updated"), status.join(" "));
  assert.ok(status.slice(11).every((s) => s === "not-attempted"), status.join(" ")); // at most 3 beside it
  for (const r of results) {
    if (r.status === "updated") assert.is(r.value.build, sha256Of(binary));
    if (r.status === "not-attempted") assert.match(r.reason, /because agent7 failed/);
  }
  // The broken one as the canary: no other agent is tried.
  const canaryFirst = await rollOutUpdate([targets[7], ...targets.slice(11)], newBuild("again"), { canary: 1 });
  assert.equal(canaryFirst.map((r) => r.status), ["failed", ...Array(9).fill("not-attempted")]);
  await Promise.all(agents.map((a) => stopCurrent(a)));
});

test.run();
