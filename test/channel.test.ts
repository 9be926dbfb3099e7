import { test } from "uvu";
import * as assert from "uvu/assert";
import { AgentClient } from "../core/client/agent-client.ts";
import { acceptChannel } from "../core/secure/accept.ts";
import { encodeRecord, MAX_RECORD } from "../core/wire/frame-stream.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { AuthenticationError, FrameTooLargeError, InsecurePeerError, VersionMismatchError } from "../core/errors.ts";
import { generateKey, keyId } from "../core/secure/keys.ts";
import { answerMeta } from "../core/wire/meta.ts";
import { MetaCode } from "../core/wire/messages.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { StreamReader } from "../core/wire/stream.ts";
import { readRecord } from "../core/wire/frame-stream.ts";

const INFO = {
  version: "t", protocol: { min: 1, max: 1, current: 1 }, os: "x", arch: "y", hostname: "h", uptimeSeconds: 0,
  runtime: { name: "r", version: "0" },
};

async function pair(agentOptions: Partial<Parameters<typeof acceptChannel>[1]> = {}, clientKey?: Uint8Array) {
  const key = generateKey().bytes;
  const [a, b] = memoryStreamPair();
  const accepting = acceptChannel(b, { keys: [{ id: await keyId(key), bytes: key }], provider: webCryptoProvider, ...agentOptions });
  const client = AgentClient.open(a, { key: clientKey ?? key, provider: webCryptoProvider, insecure: agentOptions.insecure });
  return { accepting, client };
}

test("channel: client and agent agree, and meta ping and info answer", async () => {
  const { accepting, client: opening } = await pair();
  const result = await accepting;
  assert.ok(result.ok);
  const client = await opening;
  if (!result.ok) return;
  (async () => {
    for (;;) {
      const f = await result.channel.receive().catch(() => null);
      if (!f) return;
      await result.channel.send(answerMeta(f, { info: () => INFO }));
    }
  })();
  const { echo } = await client.ping(new Uint8Array([1, 2, 3])).then(async (r) => ({ echo: r, ...r }));
  assert.ok(echo.rttMs >= 0);
  assert.equal(await client.info(), INFO);
  await client.request(0, 999).then(() => assert.unreachable(), (e) => {
    assert.is(e.code, "unknown-code");
    assert.match(e.message, /999/);
  });
  client.close();
});

test("channel: a wrong key fails on both sides, and the agent says only that", async () => {
  const { accepting, client } = await pair({}, generateKey().bytes);
  const [result, error] = await Promise.all([accepting, client.then(() => null, (e) => e)]);
  assert.ok(!result.ok && result.reason === "bad-key");
  assert.instance(error, AuthenticationError);
  assert.not.match(error.message, /[0-9a-f]{64}/);
});

test("channel: no version in common is reported as such", async () => {
  const key = generateKey().bytes;
  const [a, b] = memoryStreamPair();
  const accepting = acceptChannel(b, { keys: [{ id: "x", bytes: key }], provider: webCryptoProvider, versions: { min: 5, max: 6 } });
  const error = await AgentClient.open(a, { key, provider: webCryptoProvider }).then(() => null, (e) => e);
  assert.instance(error, VersionMismatchError);
  assert.match(error.message, /5\.\.6/);
  assert.is((await accepting as { reason: string }).reason, "incompatible-version");
});

test("channel: a client never silently accepts a plaintext agent", async () => {
  const [a, b] = memoryStreamPair();
  acceptChannel(b, { keys: [], provider: webCryptoProvider, insecure: true });
  const error = await AgentClient.open(a, { key: generateKey().bytes, provider: webCryptoProvider }).then(() => null, (e) => e);
  assert.instance(error, InsecurePeerError);
});

test("channel: an oversized length prefix is refused before reading the body", async () => {
  const [a, b] = memoryStreamPair();
  await a.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f]));
  const reader = new StreamReader(b);
  const error = await readRecord(reader, MAX_RECORD).then(() => null, (e) => e);
  assert.instance(error, FrameTooLargeError);
  assert.match(error.message, /2147483647 bytes exceeds the maximum/);
});

test("channel: an empty record reads as empty, also when nothing else is buffered", async () => {
  const [a, b] = memoryStreamPair();
  await a.write(encodeRecord(new Uint8Array(0)));
  await a.write(encodeRecord(new Uint8Array([5])));
  const reader = new StreamReader(b);
  assert.equal(await readRecord(reader, 10), new Uint8Array(0));
  assert.equal(await readRecord(reader, 10), new Uint8Array([5]));
});

test("channel: records round-trip at the maximum size", async () => {
  const [a, b] = memoryStreamPair();
  const body = new Uint8Array(MAX_RECORD).fill(7);
  await a.write(encodeRecord(body));
  assert.equal(await readRecord(new StreamReader(b), MAX_RECORD), body);
});

test.run();
