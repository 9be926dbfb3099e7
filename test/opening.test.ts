import { suite } from "uvu";
import type net from "node:net";
import * as assert from "uvu/assert";
import { AgentClient } from "../core/client/agent-client.ts";
import { initiate, PRE_AUTH_READ_LIMIT, respond } from "../core/secure/opening.ts";
import { encodeHello, EncryptionMode, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import { fakeServer, rawConnect, socketStream } from "./helpers/net.ts";
import { encodeRecord, MAX_RECORD } from "../core/secure/frame-stream.ts";
import { RecordTooLargeError } from "../core/errors.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { AuthenticationError, InsecurePeerError, VersionMismatchError } from "../core/errors.ts";
import { generateKey, keyId } from "../core/secure/keys.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { StreamReader } from "../core/wire/stream.ts";
import { readRecord } from "../core/secure/frame-stream.ts";
import { VERSION } from "../core/version.ts";
import { serveAgentConnection } from "./helpers/agent-connection.ts";

const test = suite("opening");

async function pair(agentOptions: Partial<Parameters<typeof respond>[1]> = {}, clientKey?: Uint8Array) {
  const key = generateKey().bytes;
  const [a, b] = memoryStreamPair();
  const accepting = respond(b, {
    mode: EncryptionMode.Key,
    keys: [{ id: await keyId(key), bytes: key }],
    provider: webCryptoProvider,
    ...agentOptions,
  });
  const client = AgentClient.open(a, {
    key: clientKey ?? key,
    provider: webCryptoProvider,
    insecure: agentOptions.mode === EncryptionMode.None,
  });
  return { accepting, client };
}

test("opening: client and agent agree, and meta ping and info answer", async () => {
  const { accepting, client: opening } = await pair();
  const result = await accepting;
  assert.ok(result.ok);
  const client = await opening;
  if (!result.ok) return;
  const served = serveAgentConnection(result.frames);
  const { echo } = await client.ping(new Uint8Array([1, 2, 3])).then((r) => ({ echo: r, ...r }));
  assert.ok(echo.rttMs >= 0);
  assert.is((await client.info()).version, VERSION);
  await client.request(0, 999).then(() => assert.unreachable(), (e) => {
    assert.is(e.code, "unknown-code");
    assert.match(e.message, /999/);
  });
  client.close();
  assert.is(await served, null);
});

test("opening: a wrong key fails on both sides, and the agent says only that", async () => {
  const { accepting, client } = await pair({}, generateKey().bytes);
  const [result, error] = await Promise.all([accepting, client.then(() => null, (e) => e)]);
  assert.ok(!result.ok && result.reason === "bad-key");
  assert.instance(error, AuthenticationError);
  assert.not.match(error.message, /[0-9a-f]{64}/);
});

test("opening: no version in common is reported as such", async () => {
  const key = generateKey().bytes;
  const [a, b] = memoryStreamPair();
  const accepting = respond(b, {
    mode: EncryptionMode.Key,
    keys: [{ id: "x", bytes: key }],
    provider: webCryptoProvider,
    versions: { min: 5, max: 6 },
  });
  const error = await AgentClient.open(a, { key, provider: webCryptoProvider }).then(() => null, (e) => e);
  assert.instance(error, VersionMismatchError);
  assert.match(error.message, /5\.\.6/);
  assert.is((await accepting as { reason: string }).reason, "incompatible-version");
});

test("opening: a client never silently accepts a plaintext agent", async () => {
  const [a, b] = memoryStreamPair();
  respond(b, { mode: EncryptionMode.None, keys: [], provider: webCryptoProvider });
  const error = await AgentClient.open(a, { key: generateKey().bytes, provider: webCryptoProvider }).then(
    () => null,
    (e) => e,
  );
  assert.instance(error, InsecurePeerError);
});

test("records: an oversized length prefix is refused before reading the body", async () => {
  const [a, b] = memoryStreamPair();
  await a.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f]));
  const reader = new StreamReader(b);
  const error = await readRecord(reader, MAX_RECORD).then(() => null, (e) => e);
  assert.instance(error, RecordTooLargeError);
  assert.is(error.code, "record-too-large");
  assert.match(error.message, /^record of 2147483647 bytes exceeds the maximum of 1048588$/);
});

test("records: an empty record reads as empty, also when nothing else is buffered", async () => {
  const [a, b] = memoryStreamPair();
  await a.write(encodeRecord(new Uint8Array(0)));
  await a.write(encodeRecord(new Uint8Array([5])));
  const reader = new StreamReader(b);
  assert.equal(await readRecord(reader, 10), new Uint8Array(0));
  assert.equal(await readRecord(reader, 10), new Uint8Array([5]));
});

test("records: round-trip at the maximum size", async () => {
  const [a, b] = memoryStreamPair();
  const body = new Uint8Array(MAX_RECORD).fill(7);
  await a.write(encodeRecord(body));
  assert.equal(await readRecord(new StreamReader(b), MAX_RECORD), body);
});

/** TLS mode (outbound): the agent responds and announces its key id; the listener initiates and looks the key up. */
async function tlsPair(
  agentKey: Uint8Array,
  table: Record<string, Uint8Array>,
  bindings = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(1)],
) {
  const [listenerSide, agentSide] = memoryStreamPair();
  const agent = respond(agentSide, {
    mode: EncryptionMode.Tls,
    keys: [{ id: await keyId(agentKey), bytes: agentKey }],
    provider: webCryptoProvider,
    binding: bindings[0],
  });
  const listener = initiate(listenerSide, {
    lookup: (id) => table[id] ?? null,
    provider: webCryptoProvider,
    binding: bindings[1],
  });
  return { agent, listener: listener.then((r) => r, (e) => e as Error) };
}

test("opening, TLS mode: the listener learns the agent's key id and both sides agree", async () => {
  const key = generateKey().bytes;
  const { agent, listener } = await tlsPair(key, { [await keyId(key)]: key });
  const [a, l] = await Promise.all([agent, listener]);
  assert.ok(a.ok);
  if (l instanceof Error) throw l;
  assert.is(l.keyId, await keyId(key));
  assert.is(l.frames.encrypted, false, "TLS already seals the records");
});

test("opening, TLS mode: an unknown key id is turned away and the agent hears why", async () => {
  const key = generateKey().bytes;
  const { agent, listener } = await tlsPair(key, {});
  const [a, l] = await Promise.all([agent, listener]);
  assert.is((l as Error).name, "KeyRejectedError");
  assert.ok(!a.ok && a.reason === "bad-key" && a.error.code === "key-rejected");
});

test("opening, TLS mode: a different certificate fingerprint (a relay) fails the key proof", async () => {
  const key = generateKey().bytes;
  const { agent, listener } = await tlsPair(key, { [await keyId(key)]: key }, [
    new Uint8Array(32).fill(1),
    new Uint8Array(32).fill(2),
  ]);
  const [a, l] = await Promise.all([agent, listener]);
  assert.ok(!a.ok && a.reason === "bad-key");
  assert.instance(l, AuthenticationError);
});

test("opening: a key-mode client refuses a TLS-mode answer, and a listener refuses a key-mode one", async () => {
  const key = generateKey().bytes;
  const [a, b] = memoryStreamPair();
  respond(b, { mode: EncryptionMode.Tls, keys: [{ id: await keyId(key), bytes: key }], provider: webCryptoProvider });
  const e1 = await initiate(a, { key, provider: webCryptoProvider }).then(() => null, (e) => e);
  assert.match(e1.message, /encryption mode 1/);
  const [c, d] = memoryStreamPair();
  respond(d, { mode: EncryptionMode.Key, keys: [{ id: await keyId(key), bytes: key }], provider: webCryptoProvider });
  const e2 = await initiate(c, { lookup: () => key, provider: webCryptoProvider }).then(() => null, (e) => e);
  assert.match(e2.message, /encryption mode 2/);
});

test("opening: a peer that sends more than its hello while it waits for a slot is read no further, and dropped", async () => {
  const key = generateKey().bytes;
  let serverSocket!: net.Socket;
  let admit!: (ok: boolean) => void;
  const admitted = new Promise<boolean>((r) => (admit = r));
  let responded!: Promise<Awaited<ReturnType<typeof respond>>>;
  const server = await fakeServer((s) => {
    serverSocket = s;
    responded = respond(socketStream(s), {
      mode: EncryptionMode.Key,
      keys: [{ id: "000000000000", bytes: key }],
      provider: webCryptoProvider,
      admit: () => admitted,
    });
  });
  const peer = await rawConnect(server.port);
  peer.write(encodeHello(PROTOCOL_VERSIONS));
  await new Promise((r) => setTimeout(r, 100)); // the hello is in; the peer now waits for a slot
  peer.write(new Uint8Array(4 * 1024 * 1024)); // far more than any handshake needs
  const closed = await peer.closedWithin(2000);
  const read = serverSocket.bytesRead;
  admit(true);
  const result = await responded;
  await server.close();
  assert.ok(closed, "the peer was dropped");
  assert.equal(result.ok ? "ok" : result.reason, "malformed");
  assert.equal(peer.received().length, 0, "no reply");
  // The bound: what one or two socket reads (64 KiB each) bring at once, never the peer's 4 MiB.
  assert.ok(read <= PRE_AUTH_READ_LIMIT + 2 * 64 * 1024, `read ${read} bytes from a peer holding no slot`);
});

test.run();
