// The handshake and connection limits, on the built agent: a key removed by a reload admits nothing whatever stage
// its connection was at, a replayed opening gains nothing, and pre-authentication memory, logs and time stay bounded.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { initiate } from "../core/secure/opening.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { generateKey } from "../core/secure/keys.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { AuthenticationError, VersionMismatchError } from "../core/errors.ts";
import { runAgentAsync, sendSignal, startAgent, stopAll, tempDir, until } from "./helpers/agent-process.ts";
import { dial, rawConnect, recordingRelay } from "./helpers/net.ts";
import { encodeHello, HELLO_SIZE, PROTOCOL_VERSIONS, REPLY_SIZE } from "../core/wire/hello.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { connect } from "../mod.ts";
import { concat } from "../core/bytes.ts";
import { REJECTION_LINES_PER_MINUTE } from "../agent/server.ts";

const limits = suite("handshake and connection limits e2e");
limits.after(() => stopAll());

async function status(dir: string) {
  return JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: dir })).stdout);
}

/** `stream`, whose writes after the first `open` wait until `gate` resolves: the initiator pauses before its proof. */
function heldAfter(stream: ByteStream, open: number, gate: Promise<void>): ByteStream {
  let writes = 0;
  const held: ByteStream = Object.create(stream);
  held.write = async (data) => {
    if (++writes > open) await gate;
    return stream.write(data);
  };
  held.read = () => stream.read();
  held.close = () => stream.close();
  return held;
}

limits("a key removed by a reload mid-handshake admits nothing, though the connection began before", async () => {
  const dir = tempDir();
  const [oldKey, newKey] = [generateKey(), generateKey()];
  const keys = path.join(dir, "keys");
  fs.writeFileSync(keys, `${oldKey.hex}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ keyFiles: ["keys"], handshakeTimeoutSeconds: 20 }));
  const agent = await startAgent(["--config", path.join(dir, "config.json")]);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let replied!: () => void;
  const reply = new Promise<void>((r) => (replied = r));
  // The hello goes out and the reply comes back; the key proof waits for the reload.
  const opening = initiate(heldAfter(await dial(agent.port), 1, gate), {
    key: oldKey.bytes,
    provider: webCryptoProvider,
    onStage: (stage) => stage === "reply" && replied(),
  }).then((i) => (i.frames.close(), null), (e) => e);
  await reply;
  fs.writeFileSync(keys, `${newKey.hex}\n`, { mode: 0o600 });
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/reloaded on SIGHUP: .*removed [0-9a-f]{12}/);
  release();
  const error = await opening;
  assert.instance(error, AuthenticationError, String(error));
  assert.not.match(agent.stderr(), /accepted \(key/);
  assert.is((await status(agent.stateDir)).handshakes.accepted, 0);
  await agent.stop();
});

limits("a flood of rejected connections logs a bounded number of lines; status counts every one", async () => {
  const agent = await startAgent(["--key", generateKey().hex]);
  const flood = REJECTION_LINES_PER_MINUTE + 40;
  const wrongId = encodeHello(PROTOCOL_VERSIONS);
  wrongId[0] ^= 0xff;
  for (let i = 0; i < flood; i += 10) {
    await Promise.all(Array.from({ length: 10 }, async () => {
      const c = await rawConnect(agent.port);
      c.write(wrongId);
      await c.closedWithin(5000);
      c.close();
    }));
  }
  await until(async () => (await status(agent.stateDir)).handshakes.rejected["bad-protocol-id"] === flood, "counted");
  const lines = agent.stderr().split("\n").filter((l) => /rejected: bad-protocol-id/.test(l));
  assert.is(lines.length, REJECTION_LINES_PER_MINUTE, "the first ones are logged one by one, the rest are not");
  await agent.stop();
  assert.match(
    agent.stderr(),
    /40 more connections rejected in the last 60 s, not logged one by one \(bad-protocol-id 40;/,
  );
});

limits("a replayed opening gains nothing: no acceptance logged or counted, no slot or connection held", async () => {
  const key = generateKey();
  const agent = await startAgent(["--key", key.hex, "--handshake-timeout", "2"]);
  // A real client's opening, captured by a relay on loopback as an eavesdropper would.
  const relay = await recordingRelay(agent.port);
  const client = await AgentClient.open(await dial(relay.port), { key: key.bytes, provider: webCryptoProvider });
  await client.ping();
  client.close();
  await relay.close();
  await agent.waitForLog(/closed after/);
  const opening = relay.sentByClients();
  const hello = opening.subarray(0, HELLO_SIZE), proof = opening.subarray(HELLO_SIZE, HELLO_SIZE + 4 + 48);
  const replays = [];
  for (let i = 0; i < 5; i++) {
    // All at once, and as a patient replayer would: the hello, the agent's answer, then the captured proof.
    const burst = await rawConnect(agent.port);
    burst.write(concat([hello, proof]));
    const patient = await rawConnect(agent.port);
    patient.write(hello);
    await until(() => patient.received().length >= REPLY_SIZE, "the agent's answer");
    patient.write(proof);
    replays.push(burst, patient);
  }
  for (const r of replays) assert.ok(await r.closedWithin(5000), "the agent closed the replayed connection");
  const s = await status(agent.stateDir);
  assert.is(s.handshakes.accepted, 1, `only the real client was accepted: ${JSON.stringify(s.handshakes)}`);
  assert.equal(s.connections, { open: 0, handshaking: 0 }, "nothing held");
  assert.is(agent.stderr().match(/ accepted \(key/g)?.length, 1, agent.stderr());
  await agent.stop();
});

limits(
  "a client and agent of this build speak version 4, a version-3 client gets 3; a version-2 client is refused",
  async () => {
    const key = generateKey();
    const agent = await startAgent(["--key", key.hex]);
    const client = await AgentClient.open(await dial(agent.port), { key: key.bytes, provider: webCryptoProvider });
    assert.is(client.version, 4);
    client.close();
    const v3 = await AgentClient.open(await dial(agent.port), {
      key: key.bytes,
      provider: webCryptoProvider,
      versions: { min: 3, max: 3 },
    });
    assert.is(v3.version, 3);
    assert.is((await v3.info()).protocol.max, 4);
    v3.close();
    const old = await initiate(await dial(agent.port), {
      key: key.bytes,
      provider: webCryptoProvider,
      versions: { min: 2, max: 2 },
    }).then(() => null, (e) => e);
    assert.instance(old, VersionMismatchError);
    assert.is(old.message, "no common protocol version: this side speaks 2..2, the peer 3..4");
    await agent.waitForLog(
      /rejected: incompatible-version \(no common protocol version: this side speaks 3..4, the peer 2..2\)/,
    );
    await agent.stop();
  },
);

/** An agent whose config file holds `settings`, and its key. */
async function agentWith(settings: Record<string, unknown>) {
  const dir = tempDir(), key = generateKey();
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(settings));
  return { agent: await startAgent(["--config", path.join(dir, "config.json"), "--key", key.hex]), key };
}

const closedWithin = (closed: Promise<unknown>, ms: number) =>
  Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

limits("an authenticated connection that sends no first frame is closed after firstFrameTimeoutSeconds", async () => {
  const { agent, key } = await agentWith({ firstFrameTimeoutSeconds: 1 });
  const { frames } = await initiate(await dial(agent.port), { key: key.bytes, provider: webCryptoProvider });
  assert.ok(await closedWithin(frames.receive(), 5000), "closed");
  await agent.waitForLog(/closed after [\d.]+ s: no frame within 1 s of authenticating/);
  await agent.stop();
});

limits("an idle connection with no session is closed; one waiting on a long, silent process is not", async () => {
  const { agent, key } = await agentWith({ connectionIdleTimeoutSeconds: 1 });
  const idle = await connect({ host: "127.0.0.1", port: agent.port, key: key.hex });
  await idle.client.ping();
  const busy = await connect({ host: "127.0.0.1", port: agent.port, key: key.hex });
  const session = await busy.openSession("alpha");
  const run = await session.processes.run({ program: "sleep", args: ["3"] });
  assert.is(run.code, 0, "the long process finished and its client heard");
  assert.ok(await closedWithin(idle.closed, 5000), "the idle connection was closed");
  await agent.waitForLog(/closed after [\d.]+ s: idle for 1 s with no session attached/);
  await session.close();
  busy.close();
  await agent.stop();
});

limits("connections per address and per key are capped; other addresses are still served", async () => {
  const { agent, key } = await agentWith({ maxConnectionsPerAddress: 3, maxConnectionsPerKey: 5 });
  const open = async (from: string) =>
    AgentClient.open(await dial(agent.port, from), { key: key.bytes, provider: webCryptoProvider });
  const held = [await open("127.0.0.4"), await open("127.0.0.4"), await open("127.0.0.4")];
  const fourth = await open("127.0.0.4").then((c) => c.ping()).catch((e) => e);
  assert.instance(fourth, Error, "a fourth connection from one address is turned away");
  await agent.waitForLog(/127\.0\.0\.4:\d+ rejected: address-limit/);
  held.push(await open("127.0.0.5"), await open("127.0.0.6"));
  const sixth = await open("127.0.0.7").then((c) => c.ping()).catch((e) => e);
  assert.instance(sixth, Error, "a sixth connection with one key is turned away");
  await agent.waitForLog(/127\.0\.0\.7:\d+ rejected: key-limit \(key [0-9a-f]{12} already has 5 connections open\)/);
  held.pop()!.close();
  await until(async () => (await status(agent.stateDir)).connections.open === 4, "a place freed");
  const again = await open("127.0.0.7");
  assert.ok((await again.ping()).rttMs >= 0, "served once a place is free");
  for (const c of [...held, again]) c.close();
  await agent.stop();
});

limits.run();
