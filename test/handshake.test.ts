// The documented vectors: every `vectors` block in docs/protocol.md and docs/security.md is read here and each
// line checked against what the code sends (the real opening, both modes, with fixed keys), with every crypto
// provider; a vector outside such a block, or a block line the code does not produce, fails. Also the hello and
// reply rules. `PRINT_VECTORS=1 node --import tsx test/handshake.test.ts` prints every vector the code makes, labelled
// as the docs label them, for a doc that has to change (a new protocol version).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import process from "node:process";
import { concat, fromHex, toHex } from "../core/bytes.ts";
import { ProtocolError } from "../core/errors.ts";
import {
  CHALLENGE_SIZE,
  chooseVersion,
  decodeHello,
  decodeReply,
  encodeHello,
  EncryptionMode,
  PROTOCOL_VERSIONS,
  REPLY_SIZE,
} from "../core/wire/hello.ts";
import { decodeFrame, encodeFrame, MAX_PAYLOAD } from "../core/wire/frame.ts";
import { type CryptoProvider, webCryptoProvider, x25519FromPrivate } from "../core/secure/crypto.ts";
import { keyId } from "../core/secure/keys.ts";
import { NoiseHandshake } from "../core/secure/noise.ts";
import { type FrameStream, readRecord } from "../core/secure/frame-stream.ts";
import { initiate, respond } from "../core/secure/opening.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { type ByteStream, StreamReader } from "../core/wire/stream.ts";
import { nodeCryptoProvider } from "../runtime/crypto.ts";
import { libcryptoProvider } from "../runtime/libcrypto.ts";

const test = suite("handshake");

const DOCS = ["docs/protocol.md", "docs/security.md"];
const PROVIDERS: CryptoProvider[] = [
  webCryptoProvider,
  nodeCryptoProvider,
  ...[libcryptoProvider()].filter((p) => p !== null),
];
const hex = (s: string) => fromHex(s)!;

/** One line of a `vectors` block: `label`, two or more spaces, hex in groups (continued on indented lines). */
interface DocVector {
  where: string;
  label: string;
  hex: string;
}

/** Every vector line of `file`'s `vectors` blocks, and the places where hex appears in any other code block. */
function readVectors(file: string): { vectors: DocVector[]; stray: string[] } {
  const lines = fs.readFileSync(new URL(`../${file}`, import.meta.url), "utf8").split("\n");
  const vectors: DocVector[] = [], stray: string[] = [];
  let fence: string | null = null;
  for (const [i, line] of lines.entries()) {
    const where = `${file}:${i + 1}`;
    const opening = /^```(\S*)\s*$/.exec(line);
    if (opening) {
      fence = fence === null ? opening[1] : null;
      continue;
    }
    if (fence === null || line.trim() === "") continue;
    if (fence !== "vectors") {
      if (/[0-9a-f]{16,}/i.test(line)) stray.push(where);
      continue;
    }
    const continued = /^\s+([0-9a-f][0-9a-f ]*)$/.exec(line);
    const labelled = /^(\S.*?) {2,}([0-9a-f][0-9a-f ]*)$/.exec(line);
    if (continued && vectors.length > 0) vectors[vectors.length - 1].hex += continued[1].replaceAll(" ", "");
    else if (labelled) vectors.push({ where, label: labelled[1], hex: labelled[2].replaceAll(" ", "") });
    else assert.unreachable(`${where}: not "label  hex" in a vectors block: ${line}`);
  }
  return { vectors, stray };
}

// Fixed inputs (docs/security.md "Test vectors"); never use fixed ephemerals outside tests.
const PSK = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
const CLIENT_EPHEMERAL = hex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f");
const AGENT_EPHEMERAL = hex("4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60");
/** The agent's challenge after its reply (random outside tests). */
const CHALLENGE = hex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf");
/** An example listener certificate's SHA-256, for the TLS-mode vectors. */
const CERTIFICATE_SHA256 = hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
const PING = encodeFrame({ target: 0, code: 1, token: 1, payload: new TextEncoder().encode("ping") });

/** `stream`, with every byte this side writes appended to `wire`. */
function tapped(stream: ByteStream, wire: Uint8Array[]): ByteStream {
  return { ...stream, write: (data) => (wire.push(data.slice()), stream.write(data)) };
}

/** `provider`, its ephemeral key pair fixed to the one from `privateKey`. */
async function withEphemeral(provider: CryptoProvider, privateKey: Uint8Array): Promise<CryptoProvider> {
  const pair = await x25519FromPrivate(privateKey);
  return { ...provider, x25519Generate: () => pair };
}

/** Splits what one side wrote into its opening message (`first` bytes) and the records after it, wire bytes each. */
async function messagesOf(wire: Uint8Array[], first: number): Promise<Uint8Array[]> {
  const [a, b] = memoryStreamPair();
  await a.write(concat(wire));
  a.close();
  const reader = new StreamReader(b);
  const out = [await reader.readExactly(first)];
  for (let body = await readRecord(reader, 1 << 20); body !== null; body = await readRecord(reader, 1 << 20)) {
    out.push(concat([le32(body.length), body]));
  }
  return out;
}

/**
 * A whole opening between the real initiator and responder, with the fixed psk and ephemerals; then the
 * initiator's first frame (the ping) and the responder's (the same ping), and optionally more frames first.
 */
async function opening(provider: CryptoProvider, mode: EncryptionMode, before: (frames: FrameStream) => Promise<void>) {
  const [a, b] = memoryStreamPair();
  const initiatorWire: Uint8Array[] = [], responderWire: Uint8Array[] = [];
  const binding = mode === EncryptionMode.Tls ? CERTIFICATE_SHA256 : undefined;
  const responding = respond(tapped(b, responderWire), {
    mode,
    keys: [{ id: await keyId(PSK), bytes: PSK }],
    provider: await withEphemeral(provider, AGENT_EPHEMERAL),
    binding,
    challenge: CHALLENGE,
  });
  const initiated = await initiate(tapped(a, initiatorWire), {
    key: mode === EncryptionMode.Key ? PSK : undefined,
    lookup: mode === EncryptionMode.Tls ? () => PSK : undefined,
    provider: await withEphemeral(provider, CLIENT_EPHEMERAL),
    binding,
  });
  const responded = await responding;
  if (!responded.ok) throw responded.error;
  await before(initiated.frames);
  await initiated.frames.send(decodeFrame(PING));
  await responded.frames.send(decodeFrame(PING));
  // Each side reads the other's ping (after whatever `before` sent): the two sides' keys agree.
  for (const frames of [responded.frames, initiated.frames]) {
    let frame = await frames.receive();
    while (frame && frame.token !== 1) frame = await frames.receive();
    assert.equal(frame?.payload, PING.subarray(12));
  }
  return { initiator: initiatorWire, responder: responderWire };
}

/** The reply the agent's responder writes to `hello`. */
async function replyTo(hello: Uint8Array): Promise<Uint8Array> {
  const [a, b] = memoryStreamPair();
  const responding = respond(b, { mode: EncryptionMode.Key, keys: [], provider: webCryptoProvider });
  await a.write(hello);
  const reply = await new StreamReader(a).readExactly(REPLY_SIZE);
  a.close();
  await responding;
  return reply;
}

/** Every documented vector, by label, as this build computes it with `provider`. */
async function computeVectors(provider: CryptoProvider): Promise<Map<string, Uint8Array>> {
  const v = new Map<string, Uint8Array>();
  const hello = encodeHello(PROTOCOL_VERSIONS);
  const ours = `${PROTOCOL_VERSIONS.min}..${PROTOCOL_VERSIONS.max}`, current = PROTOCOL_VERSIONS.max;
  // docs/protocol.md §2, key mode: each message on the wire, with its record length.
  const key = await opening(provider, EncryptionMode.Key, () => Promise.resolve());
  const [clientHello, message1, clientFirst] = await messagesOf(key.initiator, hello.length);
  const [replyAndChallenge, message2, agentFirst] = await messagesOf(key.responder, REPLY_SIZE + CHALLENGE_SIZE);
  const reply = replyAndChallenge.subarray(0, REPLY_SIZE);
  v.set(`hello (client offers ${ours})`, clientHello);
  v.set(`reply (key mode, version ${current}, agent ${ours})`, reply);
  v.set("challenge (agent)", replyAndChallenge.subarray(REPLY_SIZE));
  v.set("message 1 record (client)", message1);
  v.set("message 2 record (agent)", message2);
  v.set("first record (client, the ping)", clientFirst);
  v.set("first record (agent, the ping)", agentFirst);
  const oldHello = encodeHello({ min: 1, max: 1 });
  v.set("hello (client offers 1..1)", oldHello);
  v.set("reply to it (no version in common)", await replyTo(oldHello));
  v.set("hello (client offers 2..3)", encodeHello({ min: 2, max: 3 }));
  v.set("reply to it (version 3)", await replyTo(encodeHello({ min: 2, max: 3 })));
  const v3Hello = encodeHello({ min: 3, max: 3 });
  v.set("hello (a version-3 client, 3..3)", v3Hello);
  v.set("reply to it (version 3, still served)", await replyTo(v3Hello));
  const v2Hello = encodeHello({ min: 2, max: 2 });
  v.set("hello (a version-2 client, 2..2)", v2Hello);
  v.set("reply to it (version 2 refused)", await replyTo(v2Hello));
  // docs/protocol.md §2, outbound (TLS) mode: the listener initiates, the agent responds.
  const tls = await opening(provider, EncryptionMode.Tls, () => Promise.resolve());
  const [listenerHello, tlsMessage1, listenerFirst] = await messagesOf(tls.initiator, hello.length);
  const [tlsReplyAndChallenge, keyIdRecord, tlsMessage2, agentTlsFirst] = await messagesOf(
    tls.responder,
    REPLY_SIZE + CHALLENGE_SIZE,
  );
  const tlsReply = tlsReplyAndChallenge.subarray(0, REPLY_SIZE);
  v.set(`TLS: hello (listener offers ${ours})`, listenerHello);
  v.set(`TLS: reply (TLS mode, version ${current}, agent ${ours})`, tlsReply);
  v.set("TLS: challenge (agent)", tlsReplyAndChallenge.subarray(REPLY_SIZE));
  v.set("TLS: key id record (agent)", keyIdRecord);
  v.set("TLS: certificate SHA-256 (example)", CERTIFICATE_SHA256);
  v.set("TLS: message 1 record (listener)", tlsMessage1);
  v.set("TLS: message 2 record (agent)", tlsMessage2);
  v.set("TLS: first record (listener, the ping)", listenerFirst);
  v.set("TLS: first record (agent, the ping)", agentTlsFirst);
  // §3 and §4: the frame, and the plaintext a key-mode frame is sealed as.
  v.set("ping frame", PING);
  v.set("ping frame plaintext (frame length, frame)", concat([le32(PING.length), PING]));
  // docs/security.md: the Noise handshake itself, and the transport messages inside the records above.
  const [client, agent] = await Promise.all([x25519FromPrivate(CLIENT_EPHEMERAL), x25519FromPrivate(AGENT_EPHEMERAL)]);
  v.set("psk", PSK);
  v.set("client ephemeral, private", CLIENT_EPHEMERAL);
  v.set("client ephemeral, public", client.publicKey);
  v.set("agent ephemeral, private", AGENT_EPHEMERAL);
  v.set("agent ephemeral, public", agent.publicKey);
  const prologue = concat([clientHello, reply, CHALLENGE]);
  v.set("prologue, key mode", prologue);
  v.set(
    "prologue, TLS mode",
    concat([hello, tlsReply, CHALLENGE, keyIdRecord.subarray(4), CERTIFICATE_SHA256]),
  );
  const init = await NoiseHandshake.initiator(PSK, prologue, provider, client);
  const m1 = await init.writeMessage1();
  const found = (await NoiseHandshake.respond([PSK], prologue, m1, provider, agent))!;
  const { message: m2 } = await found.handshake.writeMessage2();
  const { keys } = await init.readMessage2(m2);
  v.set("message 1", m1);
  v.set("message 2", m2);
  v.set("handshake hash", keys.handshakeHash);
  v.set("first client message", clientFirst.subarray(4));
  v.set("first agent message", agentFirst.subarray(4));
  v.set("key id of the psk", hex(await keyId(PSK)));
  // The counter counts messages: after a 1 MiB frame (17 messages) the ping is sealed with counter 17.
  const after = await opening(
    provider,
    EncryptionMode.Key,
    (frames) => frames.send({ target: 3, code: 0x10b, token: 2, payload: new Uint8Array(MAX_PAYLOAD) }),
  );
  const records = await messagesOf(after.initiator, hello.length);
  assert.is(records.length, 1 + 1 + 17 + 1);
  v.set("ping after a 1 MiB frame (counter 17)", records[records.length - 1].subarray(4));
  return v;
}

/** A uint32 LE. */
function le32(n: number): Uint8Array {
  return new Uint8Array(new Uint32Array([n]).buffer);
}

const documented = DOCS.map(readVectors);

if (process.env.PRINT_VECTORS) {
  for (const [label, value] of await computeVectors(webCryptoProvider)) console.log(`${label}  ${toHex(value)}`);
}

test("vectors: no hex outside a `vectors` block in docs/protocol.md or docs/security.md, where nothing would check it", () => {
  assert.equal(documented.flatMap((d) => d.stray), []);
});

for (const provider of PROVIDERS) {
  test(`vectors (${provider.name}): every line of every vectors block in the two docs is what the code sends, and every vector the code makes is documented`, async () => {
    const computed = await computeVectors(provider);
    const lines = documented.flatMap((d) => d.vectors);
    for (const { where, label, hex } of lines) {
      const value = computed.get(label);
      assert.ok(value, `${where}: no vector "${label}" is computed by test/handshake.test.ts`);
      assert.is(hex, toHex(value!), `${where}: ${label}`);
    }
    const labels = new Set(lines.map((l) => l.label));
    assert.equal([...computed.keys()].filter((label) => !labels.has(label)), [], "computed but documented nowhere");
  });
}

test("handshake: a foreign protocol id is refused", () => {
  const hello = encodeHello({ min: 1, max: 1 });
  hello[3] ^= 1;
  assert.throws(
    () => decodeHello(hello),
    (e: Error) => e instanceof ProtocolError && /wrong protocol id/.test(e.message),
  );
});

test("handshake: an HTTP request is not a hello", () => {
  const http = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n").subarray(0, 24);
  assert.throws(() => decodeHello(http), (e: Error) => e instanceof ProtocolError);
});

test("handshake: version negotiation picks the highest common version or 0", () => {
  assert.is(chooseVersion({ min: 1, max: 3 }, { min: 2, max: 5 }), 3);
  assert.is(chooseVersion({ min: 1, max: 1 }, { min: 1, max: 1 }), 1);
  assert.is(chooseVersion({ min: 1, max: 1 }, { min: 2, max: 4 }), 0);
});

test("handshake: a reply decodes to what it says; one that cannot be a reply is refused", () => {
  assert.equal(decodeReply(hex("02000000020000000200000002000000")), {
    mode: 2,
    version: 2,
    agent: { min: 2, max: 2 },
  });
  assert.throws(
    () => decodeReply(hex("48545450312e3120343030204261642052").subarray(0, 16)),
    (e: Error) => e instanceof ProtocolError,
  );
  assert.throws(() => decodeReply(new Uint8Array(16)), (e: Error) => e instanceof ProtocolError); // agent range 0..0
});

test("frame: a frame decodes to its header and payload; one shorter than its header is refused", () => {
  const f = decodeFrame(PING);
  assert.equal([f.target, f.code, f.token, new TextDecoder().decode(f.payload)], [0, 1, 1, "ping"]);
  assert.throws(() => decodeFrame(new Uint8Array(11)), (e: Error) => e instanceof ProtocolError);
});

test.run();
