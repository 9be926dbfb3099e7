// Bad input at the agent's port: every case is dropped with a reason, nothing
// leaks, and a legitimate client is still served afterwards.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { initiate } from "../core/secure/opening.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { encodeRecord } from "../core/secure/frame-stream.ts";
import { randomBytes, webCryptoProvider } from "../core/secure/crypto.ts";
import { encodeFrame } from "../core/wire/frame.ts";
import { encodeHello, PROTOCOL_VERSIONS, REPLY_SIZE } from "../core/wire/hello.ts";
import { generateKey } from "../core/secure/keys.ts";
import { MetaCode } from "../core/wire/messages.ts";
import {
  residentKiB,
  runAgentAsync,
  type RunningAgent,
  startAgent,
  stopAll,
  tempDir,
  until,
} from "./helpers/agent-process.ts";
import { dial, rawConnect, recordingRelay } from "./helpers/net.ts";

const hostile = suite("hostile input e2e");
const KEY = generateKey();
let agent: RunningAgent;

hostile.before(async () => {
  agent = await startAgent(["--key", KEY.hex, "--handshake-timeout", "2"]);
});
hostile.after(async () => {
  await agent?.stop();
  stopAll();
});

/** An authenticated channel to the agent, for sending crafted records after the handshake. */
async function authenticated(port = agent.port) {
  const { frames } = await initiate(await dial(port), { key: KEY.bytes, provider: webCryptoProvider });
  return frames;
}

async function legitimateClientWorks(port = agent.port) {
  const client = await AgentClient.open(await dial(port), { key: KEY.bytes, provider: webCryptoProvider });
  const { rttMs } = await client.ping();
  client.close();
  return rttMs >= 0;
}

async function status(dir = agent.stateDir) {
  return JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: dir })).stdout);
}

/** Resolves once the stream has ended (the agent closed), or false after `ms`. */
async function endsWithin(stream: { read(): Promise<Uint8Array | null> }, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const r = await Promise.race([
      stream.read(),
      new Promise<"wait">((res) => setTimeout(() => res("wait"), deadline - Date.now())),
    ]);
    if (r === null) return true;
    if (r === "wait") return false;
  }
  return false;
}

hostile("a wrong protocol id is dropped without a single byte of reply", async () => {
  const c = await rawConnect(agent.port);
  const hello = encodeHello(PROTOCOL_VERSIONS);
  hello[0] ^= 0xff;
  c.write(hello);
  assert.ok(await c.closedWithin(5000), "closed");
  assert.is(c.received().length, 0);
  await agent.waitForLog(/rejected: bad-protocol-id/);
});

hostile("an incompatible version gets a reply saying so, then the connection ends", async () => {
  const c = await rawConnect(agent.port);
  c.write(encodeHello({ min: 7, max: 9 }));
  assert.ok(await c.closedWithin(5000));
  const bytes = c.received();
  assert.is(bytes.length, 16);
  const reply = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  assert.equal([reply.getInt32(4, true), reply.getInt32(8, true), reply.getInt32(12, true)], [
    0,
    PROTOCOL_VERSIONS.min,
    PROTOCOL_VERSIONS.max,
  ]);
});

hostile("a wrong key fails without saying which part was wrong, and is never served in plaintext", async () => {
  const error = await AgentClient.open(await dial(agent.port), {
    key: generateKey().bytes,
    provider: webCryptoProvider,
  }).then(() => null, (e) => e);
  assert.ok(error);
  assert.is(error.code, "authentication");
  assert.is(error.message, "authentication failed: the key is not one the agent accepts");
  await agent.waitForLog(/rejected: bad-key/);
});

hostile("an oversized length prefix closes the connection at once, with no large allocation", async () => {
  const before = residentKiB(agent.pid);
  for (let i = 0; i < 20; i++) {
    // during the key exchange
    const c = await rawConnect(agent.port);
    c.write(encodeHello(PROTOCOL_VERSIONS));
    await until(() => c.received().length >= REPLY_SIZE, "the reply"); // an initiator waits for it
    c.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    assert.ok(await c.closedWithin(5000), "closed during key exchange");
    // after authentication
    const channel = await authenticated();
    await channel.stream.write(new Uint8Array([0xf0, 0xff, 0xff, 0xff]));
    assert.ok(await endsWithin(channel.stream, 5000), "closed after authentication");
  }
  const grownMiB = (residentKiB(agent.pid) - before) / 1024;
  assert.ok(grownMiB < 64, `resident memory grew ${grownMiB.toFixed(1)} MiB after 40 claims of 4 GiB frames`);
  await agent.waitForLog(
    /closed after [\d.]+ s: record-too-large: record of 4294967280 bytes exceeds the maximum of 65535/,
  );
  await agent.waitForLog(/rejected: malformed \(record of 4294967295 bytes exceeds the maximum of 1024/);
});

hostile("bit-flipped, truncated, replayed and reordered records are rejected", async () => {
  const ping = encodeFrame({ target: 0, code: MetaCode.Ping, token: 1, payload: new Uint8Array(8) });
  const cases: Record<string, (c: Awaited<ReturnType<typeof authenticated>>) => Promise<Uint8Array[]>> = {
    "bit flip": async (c) => {
      const r = await c.keys!.send.encrypt(ping);
      r[r.length - 20] ^= 0x04;
      return [r];
    },
    "truncated": async (c) => [(await c.keys!.send.encrypt(ping)).subarray(0, 20)],
    "replayed": async (c) => {
      const r = await c.keys!.send.encrypt(ping);
      return [r, r];
    },
    "reordered": async (c) => {
      const r0 = await c.keys!.send.encrypt(ping);
      const r1 = await c.keys!.send.encrypt(ping);
      return [r1, r0];
    },
  };
  for (const [name, craft] of Object.entries(cases)) {
    const channel = await authenticated();
    const records = await craft(channel);
    for (const r of records) await channel.stream.write(encodeRecord(r)).catch(() => {});
    // A replay's first copy is valid and gets its pong; the agent must close after the bad one.
    let ended = false;
    const deadline = Date.now() + 5000;
    while (!ended && Date.now() < deadline) ended = await endsWithin(channel.stream, deadline - Date.now());
    assert.ok(ended, `${name}: connection closed`);
  }
  await agent.waitForLog(/closed after [\d.]+ s: integrity: a record failed its integrity check/);
});

hostile("a stalled handshake times out", async () => {
  const c = await rawConnect(agent.port);
  c.write(encodeHello(PROTOCOL_VERSIONS).subarray(0, 10)); // then nothing
  assert.ok(await c.closedWithin(10_000), "dropped after the 2 s handshake timeout");
  await agent.waitForLog(/rejected: timeout/);
});

hostile("random bytes at the port never crash the agent", async () => {
  for (let i = 0; i < 30; i++) {
    const c = await rawConnect(agent.port);
    c.write(randomBytes(1 + ((i * 7919) % 70_000)));
    await c.closedWithin(3000);
    c.close();
  }
  assert.ok(await legitimateClientWorks());
});

hostile("after all of the above, a legitimate client still works and status counts each reason", async () => {
  assert.ok(await legitimateClientWorks());
  const s = await status();
  assert.ok(s.handshakes.accepted >= 1);
  for (const reason of ["bad-protocol-id", "incompatible-version", "bad-key", "malformed", "timeout"]) {
    assert.ok(s.handshakes.rejected[reason] >= 1, `${reason} counted: ${JSON.stringify(s.handshakes.rejected)}`);
  }
  assert.not.match(agent.stderr(), new RegExp(KEY.hex), "the key never reaches the log");
});

hostile("peers that never send a hello hold no handshake slot: a good client goes straight through", async () => {
  const dir = tempDir();
  const small = await startAgent(["--key", KEY.hex, "--max-handshakes", "4", "--handshake-timeout", "30"], {
    stateDir: dir,
  });
  const stalled = [];
  for (let i = 0; i < 12; i++) stalled.push(await rawConnect(small.port, "127.0.0.2"));
  assert.ok(await legitimateClientWorks(small.port), "legitimate handshake completed");
  const s = await status(dir);
  assert.ok(s.connections.handshaking >= 12, `the stalled peers are still waiting: ${JSON.stringify(s.connections)}`);
  assert.equal(s.handshakes.rejected, {}, "nobody was dropped to make room");
  stalled.forEach((c) => c.close());
  await small.stop();
});

hostile("peers that send a hello and then stall, holding every slot, are evicted for a good client", async () => {
  const dir = tempDir();
  const small = await startAgent(["--key", KEY.hex, "--max-handshakes", "4", "--handshake-timeout", "30"], {
    stateDir: dir,
  });
  const stalled = [];
  for (let i = 0; i < 12; i++) {
    const c = await rawConnect(small.port, "127.0.0.2");
    c.write(encodeHello(PROTOCOL_VERSIONS)); // a well-formed hello, then nothing
    stalled.push(c);
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(await legitimateClientWorks(small.port), "legitimate handshake completed");
  const s = await status(dir);
  assert.ok(s.handshakes.rejected.evicted >= 1, `stalled handshakes were evicted: ${JSON.stringify(s.handshakes)}`);
  stalled.forEach((c) => c.close());
  await small.stop();
});

hostile(
  "repeated authentication failures from one address are rate-limited; other addresses are still served",
  async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ authFailuresPerMinute: 3 }));
    const limited = await startAgent(["--key", KEY.hex], { stateDir: dir });
    for (let i = 0; i < 3; i++) {
      await AgentClient.open(await dial(limited.port, "127.0.0.3"), {
        key: generateKey().bytes,
        provider: webCryptoProvider,
      }).catch(() => {});
    }
    const blocked = await AgentClient.open(await dial(limited.port, "127.0.0.3"), {
      key: KEY.bytes,
      provider: webCryptoProvider,
    }).then(() => null, (e) => e);
    assert.ok(blocked, "even the right key is turned away from a rate-limited address");
    assert.ok(await legitimateClientWorks(limited.port), "another address is still served");
    await limited.waitForLog(/127\.0\.0\.3:\d+ rejected: rate-limited/);
    await limited.stop();
  },
);

hostile("a capture of the connection shows no key and no plaintext payload", async () => {
  const marker = new TextEncoder().encode("MARKER-7f3a-do-not-leak-" + "x".repeat(40));
  const capture = async (port: number, options: { key?: Uint8Array; insecure?: boolean }) => {
    const relay = await recordingRelay(port);
    const client = await AgentClient.open(await dial(relay.port), { provider: webCryptoProvider, ...options });
    await client.ping(marker);
    await client.info();
    client.close();
    await new Promise((r) => setTimeout(r, 50));
    const bytes = relay.captured();
    await relay.close();
    return bytes;
  };
  const secure = await capture(agent.port, { key: KEY.bytes });
  assert.ok(secure.length > 100, "traffic was captured");
  assert.is(secure.indexOf(Buffer.from(marker)), -1, "marker not visible");
  assert.is(secure.indexOf(Buffer.from(KEY.bytes)), -1, "key bytes not visible");
  assert.is(secure.indexOf(Buffer.from(KEY.hex)), -1, "key hex not visible");
  assert.is(secure.indexOf(Buffer.from("linux")), -1, "agent info not visible");

  // The same capture of an --insecure agent does show the marker: the check can fail.
  const plain = await startAgent(["--insecure"]);
  const exposed = await capture(plain.port, { insecure: true });
  assert.ok(exposed.indexOf(Buffer.from(marker)) >= 0, "marker visible without encryption");
  await plain.stop();
});

hostile.run();
