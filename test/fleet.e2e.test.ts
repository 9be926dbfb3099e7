// runOnAgents: one operation on many agents, a bounded number at a time, one result per agent in the
// order given, and a failing server (refused, wrong key, too slow) reported by name, never hiding the rest.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AbortedError, AuthenticationError, DialError, runOnAgents, TimeoutError } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { closedPort, type RunningAgent, startAgent, stopAll } from "./helpers/agent-process.ts";

const test = suite("fleet e2e");

const agents: RunningAgent[] = [];
test.after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  stopAll();
});

test("runOnAgents: results in the order given, each server's error by name, never more than `concurrency` at once", async () => {
  const keys = [generateKey().hex, generateKey().hex, generateKey().hex];
  agents.push(...(await Promise.all(keys.map((k) => startAgent(["--key", k])))));
  const targets = [
    { name: "web1", host: "127.0.0.1", port: agents[0].port, key: keys[0] },
    { name: "down", host: "127.0.0.1", port: await closedPort(), key: keys[0] },
    { name: "web2", host: "127.0.0.1", port: agents[1].port, key: keys[1] },
    { name: "wrongkey", host: "127.0.0.1", port: agents[2].port, key: keys[0] },
    { name: "web3", host: "127.0.0.1", port: agents[2].port, key: keys[2] },
  ];
  let inFlight = 0, most = 0;
  const finished: string[] = [];
  const results = await runOnAgents(targets, async (agent, name) => {
    most = Math.max(most, ++inFlight);
    try {
      const session = await agent.openSession("fleet");
      const r = await session.processes.run({ program: "sh", args: ["-c", `sleep 0.2; echo ${name}`] });
      await session.close();
      return new TextDecoder().decode(r.stdout).trim();
    } finally {
      inFlight--;
    }
  }, { concurrency: 2, onResult: (r) => finished.push(r.name) });

  assert.equal(results.map((r) => r.name), ["web1", "down", "web2", "wrongkey", "web3"]);
  assert.equal(results.map((r) => (r.ok ? r.value : null)), ["web1", null, "web2", null, "web3"]);
  const down = results[1], wrong = results[3];
  assert.ok(
    !down.ok && down.error instanceof DialError && down.error.stage === "refused",
    String(!down.ok && down.error),
  );
  assert.ok(!wrong.ok && wrong.error instanceof AuthenticationError, String(!wrong.ok && wrong.error));
  assert.ok(most <= 2 && most >= 1, `at most 2 at once, saw ${most}`);
  assert.is(finished.length, 5);
});

test("runOnAgents: a server slower than timeoutMs fails with TimeoutError while the others finish", async () => {
  const key = generateKey().hex;
  const a = await startAgent(["--key", key]);
  agents.push(a);
  const started = performance.now();
  const results = await runOnAgents(
    [{ name: "slow", host: "127.0.0.1", port: a.port, key }, { name: "quick", host: "127.0.0.1", port: a.port, key }],
    async (agent, name) => {
      if (name === "slow") await new Promise((r) => setTimeout(r, 5000));
      return (await agent.info()).version;
    },
    { timeoutMs: 1000 },
  );
  assert.ok(!results[0].ok && results[0].error instanceof TimeoutError, String(!results[0].ok && results[0].error));
  assert.ok(results[1].ok);
  assert.ok(performance.now() - started < 4000, "the slow one did not hold up the result");
});

test("runOnAgents: aborting its signal fails the targets in progress at once and starts no more", async () => {
  const key = generateKey().hex;
  const a = await startAgent(["--key", key]);
  agents.push(a);
  const target = (name: string) => ({ name, host: "127.0.0.1", port: a.port, key });
  const controller = new AbortController(), reason = new Error("operator pressed Ctrl-C");
  const operated: string[] = [], signalled: string[] = [];
  // Abort once both operations run their program, however long connecting took (a fixed timer raced it under load).
  let running = 0, abortedAt = 0;
  const results = await runOnAgents(
    [target("web1"), target("web2"), target("web3")],
    async (agent, name, signal) => {
      operated.push(name);
      signal.addEventListener("abort", () => signalled.push(name));
      const session = await agent.openSession("fleet");
      const p = await session.processes.start({ program: "sleep", args: ["30"], signal });
      if (++running === 2) (abortedAt = performance.now(), controller.abort(reason));
      return await p.wait({ signal });
    },
    { concurrency: 2, signal: controller.signal },
  );
  assert.ok(abortedAt > 0 && performance.now() - abortedAt < 5000, "the run ended soon after the abort");
  for (const r of results) {
    assert.ok(!r.ok && r.error instanceof AbortedError && r.error.cause === reason, `${r.name}: ${!r.ok && r.error}`);
  }
  assert.equal(operated.sort(), ["web1", "web2"], "web3 was never started"); // the first two start in either order
  assert.equal(signalled.sort(), ["web1", "web2"], "the operations' own signal aborted too");
});

test.run();
