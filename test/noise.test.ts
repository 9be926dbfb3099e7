import { suite } from "uvu";
import * as assert from "uvu/assert";
import { fromHex, toHex } from "../core/bytes.ts";
import {
  type CryptoProvider,
  webCryptoProvider,
  x25519,
  x25519FromPrivate,
  x25519Generate,
} from "../core/secure/crypto.ts";
import { AuthenticationError, IntegrityError, ProtocolError } from "../core/errors.ts";
import { encodeFrame } from "../core/wire/frame.ts";
import { encodeHello, encodeReply, EncryptionMode, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import { InvalidKeyError } from "../core/errors.ts";
import { generateKey, keyId, parseKey } from "../core/secure/keys.ts";
import { NOISE_PROTOCOL_NAME, NoiseHandshake, type TransportKeys } from "../core/secure/noise.ts";
import {
  encodeRecord,
  FrameStream,
  MAX_NOISE_MESSAGE,
  MAX_NOISE_PLAINTEXT,
  readRecord,
} from "../core/secure/frame-stream.ts";
import { MAX_PAYLOAD } from "../core/wire/frame.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { StreamReader } from "../core/wire/stream.ts";
import { concat } from "../core/bytes.ts";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { dialTcp, READ_TURN_BUDGET, socketStream } from "../runtime/tcp.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { nodeCryptoProvider } from "../runtime/crypto.ts";
import { libcryptoProvider } from "../runtime/libcrypto.ts";
import { DENO_HEAP_FLAGS } from "../runtime/heap.ts";
import { IS_DENO, ROOT, scriptCommand } from "./helpers/agent-process.ts";

const test = suite("noise");

/** Every provider this runtime can use, libcrypto through FFI where it loads (on Node through koffi). */
const PROVIDERS: CryptoProvider[] = [
  webCryptoProvider,
  nodeCryptoProvider,
  ...[libcryptoProvider()].filter((p) => p !== null),
];

test("libcrypto loads through this runtime's FFI: koffi on Node, Deno.dlopen on Deno", () => {
  assert.ok(libcryptoProvider(), "libcrypto.so.3 is installed here, so the provider must load");
});

const hex = (s: string) => fromHex(s)!;

test("x25519: RFC 7748 §6.1 vector", async () => {
  const alice = await x25519FromPrivate(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  const bob = await x25519FromPrivate(hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  assert.is(toHex(alice.publicKey), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  assert.is(toHex(bob.publicKey), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  assert.is(toHex(await x25519(alice.privateKey, bob.publicKey)), shared);
  assert.is(toHex(await x25519(bob.privateKey, alice.publicKey)), shared);
});

// Fixed inputs from docs/security.md "Test vectors".
const PSK = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
const PROLOGUE = new Uint8Array([
  ...encodeHello(PROTOCOL_VERSIONS),
  ...encodeReply({ mode: EncryptionMode.Key, version: PROTOCOL_VERSIONS.max, agent: PROTOCOL_VERSIONS }),
]);
/** A uint32 LE. */
const le32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
const PING = encodeFrame({ target: 0, code: 1, token: 1, payload: new TextEncoder().encode("ping") });

async function handshake(provider: CryptoProvider, psks = [PSK], clientPsk = PSK) {
  const ie = await x25519FromPrivate(hex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"));
  const re = await x25519FromPrivate(hex("4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60"));
  const init = await NoiseHandshake.initiator(clientPsk, PROLOGUE, provider, ie);
  const msg1 = await init.writeMessage1();
  const found = await NoiseHandshake.respond(psks, PROLOGUE, msg1, provider, re);
  return { init, msg1, found };
}

// The documented vectors (docs/security.md, docs/protocol.md §2) are checked, with every provider, by
// test/handshake.test.ts, which reads them from the docs.

test("x25519 (node:crypto): agrees with WebCrypto both ways, and a handshake across the two providers completes", async () => {
  const node = nodeCryptoProvider.x25519Generate!(), web = await x25519Generate();
  assert.is(toHex(await node.agree(web.publicKey)), toHex(await web.agree(node.publicKey)));
  const init = await NoiseHandshake.initiator(PSK, PROLOGUE, nodeCryptoProvider);
  const found = await NoiseHandshake.respond([PSK], PROLOGUE, await init.writeMessage1(), webCryptoProvider);
  const { message, keys } = await found!.handshake.writeMessage2();
  const { keys: clientKeys } = await init.readMessage2(message);
  assert.equal(clientKeys.handshakeHash, keys.handshakeHash);
  assert.throws(
    () => node.agree(new Uint8Array(32)),
    /all-zero|failed during derivation/,
    "a small-order point is refused (by OpenSSL itself, or by the all-zero check)",
  );
});

// Node 20's generateKeyPairSync leaves a job behind that locks the new key when collected; a
// collection during the key's export, which holds that lock, then hung the process for good (seen:
// an agent in CI stopped answering every connection, stuck in KeyGenJob's destructor).
test("x25519 (node:crypto): making 20,000 pairs while collections fall at every point finishes", () => {
  const [cmd, ...prefix] = scriptCommand();
  const run = spawnSync(cmd, [
    ...prefix,
    ...(IS_DENO ? DENO_HEAP_FLAGS : []),
    path.join(ROOT, "test/helpers/x25519-churn.ts"),
  ], { encoding: "utf8", timeout: 60_000 });
  assert.is(run.signal, null, "it hung (killed after 60 s)");
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, /^done/);
});

test("noise: the agent finds the right key among several (rotation)", async () => {
  const other = generateKey().bytes;
  const { found } = await handshake(webCryptoProvider, [other, PSK, generateKey().bytes]);
  assert.is(found?.keyIndex, 1);
});

test("noise: a wrong key matches nothing on the agent's side", async () => {
  const { found } = await handshake(webCryptoProvider, [PSK], generateKey().bytes);
  assert.is(found, null);
});

test("noise: an agent without the key cannot answer convincingly", async () => {
  // A fake agent that knows the prologue but not the key: its message 2 fails the client's check.
  const { init } = await handshake(webCryptoProvider);
  const imposter = await NoiseHandshake.initiator(generateKey().bytes, PROLOGUE, webCryptoProvider);
  const forged = await imposter.writeMessage1(); // 48 bytes of the right shape, wrong key
  try {
    await init.readMessage2(forged);
    assert.unreachable("forged message 2 accepted");
  } catch (e) {
    assert.instance(e, AuthenticationError);
  }
});

test("noise: altered, replayed, reordered and truncated records are rejected", async () => {
  const { init, found } = await handshake(webCryptoProvider);
  const { message, keys: agent } = await found!.handshake.writeMessage2();
  const { keys: client } = await init.readMessage2(message);
  const r0 = await client.send.encrypt(PING);
  const r1 = await client.send.encrypt(PING);
  const flipped = r0.slice();
  flipped[5] ^= 0x01;
  const rejects = async (c: Uint8Array) => {
    try {
      await agent.receive.decrypt(c);
      return false;
    } catch (e) {
      return e instanceof IntegrityError;
    }
  };
  assert.ok(await rejects(flipped), "bit flip");
  assert.ok(await rejects(r0.subarray(0, r0.length - 1)), "truncated");
  assert.ok(await rejects(r1), "reordered (1 before 0)");
  assert.equal(await agent.receive.decrypt(r0), PING);
  assert.ok(await rejects(r0), "replayed");
  assert.equal(await agent.receive.decrypt(r1), PING);
});

test("keys: parse, id, and clear errors for malformed keys", async () => {
  assert.is(await keyId(PSK), "269970d8136b");
  assert.equal(parseKey(" " + toHex(PSK).toUpperCase() + "\n").bytes, PSK);
  for (const bad of ["", "abc", toHex(PSK).slice(2), toHex(PSK) + "00", "zz" + toHex(PSK).slice(2)]) {
    assert.throws(() => parseKey(bad), (e: Error) => e instanceof InvalidKeyError && /64 hex digits/.test(e.message));
  }
  const a = generateKey(), b = generateKey();
  assert.is.not(a.hex, b.hex);
  assert.match(a.hex, /^[0-9a-f]{64}$/);
});

// The Cacophony project's published vector for exactly this protocol name: an independent Noise
// implementation's handshake and transport messages, byte for byte (test/vectors, source inside).
const CACOPHONY = JSON.parse(
  fs.readFileSync(new URL("./vectors/noise-nnpsk0-25519-aesgcm-sha256.json", import.meta.url), "utf8"),
);

for (const provider of PROVIDERS) {
  test(`noise NNpsk0 (${provider.name}): interoperates with Cacophony's published vector`, async () => {
    const v = CACOPHONY;
    assert.is(v.protocol_name, NOISE_PROTOCOL_NAME);
    const [m1, m2, ...transport] = v.messages as Array<{ payload: string; ciphertext: string }>;
    const init = await NoiseHandshake.initiator(
      hex(v.init_psks[0]),
      hex(v.init_prologue),
      provider,
      await x25519FromPrivate(hex(v.init_ephemeral)),
    );
    assert.is(toHex(await init.writeMessage1(hex(m1.payload))), m1.ciphertext);
    const found = await NoiseHandshake.respond(
      [hex(v.resp_psks[0])],
      hex(v.resp_prologue),
      hex(m1.ciphertext),
      provider,
      await x25519FromPrivate(hex(v.resp_ephemeral)),
    );
    assert.is(toHex(found!.payload), m1.payload);
    const { message, keys: responder } = await found!.handshake.writeMessage2(hex(m2.payload));
    assert.is(toHex(message), m2.ciphertext);
    const { payload, keys: initiator } = await init.readMessage2(hex(m2.ciphertext));
    assert.is(toHex(payload), m2.payload);
    assert.is(toHex(initiator.handshakeHash), v.handshake_hash);
    // Transport messages alternate, initiator first.
    for (const [i, m] of transport.entries()) {
      const [from, to] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
      assert.is(toHex(await from.send.encrypt(hex(m.payload))), m.ciphertext, `transport message ${i}`);
      assert.is(toHex(await to.receive.decrypt(hex(m.ciphertext))), m.payload);
    }
  });
}

/** Both ends' transport keys after a real handshake. */
async function transportKeys(): Promise<{ client: TransportKeys; agent: TransportKeys }> {
  const init = await NoiseHandshake.initiator(PSK, PROLOGUE, nodeCryptoProvider);
  const found = await NoiseHandshake.respond([PSK], PROLOGUE, await init.writeMessage1(), nodeCryptoProvider);
  const { message, keys } = await found!.handshake.writeMessage2();
  return { client: (await init.readMessage2(message)).keys, agent: keys };
}

test("frames in key mode travel as Noise transport messages of at most 65,535 bytes, each a plain Noise message", async () => {
  const { client: clientKeys, agent: agentKeys } = await transportKeys();
  const [a, b] = memoryStreamPair();
  const sender = new FrameStream(new StreamReader(a), clientKeys);
  const payload = new Uint8Array(MAX_PAYLOAD).map((_, i) => (i * 7919) >>> 3);
  await sender.send({ target: 3, code: 0x10b, token: 9, payload });
  // Read the records off the wire by hand: each is one standalone Noise message under the next nonce.
  const wire = new StreamReader(b);
  const plain: Uint8Array[] = [];
  let total = 0, records = 0;
  while (total < 4 + 12 + MAX_PAYLOAD) {
    const record = (await readRecord(wire, 1 << 30))!;
    assert.ok(record.length <= MAX_NOISE_MESSAGE, `record of ${record.length} bytes`);
    const piece = await agentKeys.receive.decrypt(record);
    plain.push(piece);
    total += piece.length;
    records++;
  }
  assert.is(records, Math.ceil((4 + 12 + MAX_PAYLOAD) / MAX_NOISE_PLAINTEXT));
  const joined = concat(plain);
  assert.is(
    new DataView(joined.buffer).getUint32(0, true),
    12 + MAX_PAYLOAD,
    "the plaintext starts with the frame's length",
  );
  assert.equal(joined.subarray(16), payload);
});

test("frames in key mode: a record over 65,535 bytes, a message past its frame, or a frame over the maximum is refused", async () => {
  const seal = async (keys: TransportKeys, plain: Uint8Array) => encodeRecord(await keys.send.encrypt(plain));
  const cases: Array<[string, (k: TransportKeys) => Promise<Uint8Array>, RegExp]> = [
    [
      "oversized record",
      () => Promise.resolve(new Uint8Array([0x00, 0x00, 0x01, 0x00])),
      /^record of 65536 bytes exceeds the maximum of 65535$/,
    ],
    [
      "frame over the maximum",
      (k) => seal(k, concat([le32(12 + MAX_PAYLOAD + 1), new Uint8Array(100)])),
      /^frame of 1048589 bytes exceeds the maximum of 1048588$/,
    ],
    [
      "message past its frame",
      (k) => seal(k, concat([le32(12), new Uint8Array(20)])),
      /runs past the end of its frame/,
    ],
  ];
  for (const [what, record, error] of cases) {
    const { client, agent } = await transportKeys();
    const [a, b] = memoryStreamPair();
    await a.write(await record(client));
    const e = await new FrameStream(new StreamReader(b), agent).receive().then(() => null, (x) => x);
    assert.match(String(e?.message), error, what);
  }
});

// docs/protocol.md §3: the receiver's rules for how a frame is cut into messages, and for lengths below the minimum.

/** The frame the agent's FrameStream receives from `records` (each sealed by the client in turn); the stream stays open. */
async function receiveFrom(records: (keys: TransportKeys) => Promise<Uint8Array[]>): Promise<unknown> {
  const { client, agent } = await transportKeys();
  const [a, b] = memoryStreamPair();
  for (const record of await records(client)) await a.write(record);
  const receiving = new FrameStream(new StreamReader(b), agent).receive().then((f) => f, (e) => e);
  const waited = new Promise((r) => setTimeout(() => r("still waiting after 500 ms"), 500));
  return await Promise.race([receiving, waited]);
}

/** Seals each plaintext piece as one message, in order, each after its record length. */
const sealPieces = (pieces: Uint8Array[]) => async (keys: TransportKeys) => {
  const out = [];
  for (const piece of pieces) out.push(encodeRecord(await keys.send.encrypt(piece)));
  return out;
};

test("frames in key mode (receiver): a first message of 0-3 bytes, which cannot hold the frame length, closes the connection", async () => {
  for (let size = 0; size < 4; size++) {
    const e = await receiveFrom(sealPieces([new Uint8Array(size)]));
    assert.instance(e, ProtocolError, `${size} bytes`);
    assert.match(String((e as Error).message), /first message .* fewer than the 4 bytes of its length/);
  }
});

test("frames in key mode (receiver): any cut is accepted, pieces smaller than full and empty messages in the middle included", async () => {
  const frame = encodeFrame({ target: 3, code: 0x10b, token: 9, payload: new Uint8Array(3000).map((_, i) => i * 7) });
  const plain = concat([le32(frame.length), frame]);
  const cuts = [
    [4], // the first message holds only the frame length
    [5, 0, 1000, 0, 0, 1], // pieces of every size, empty ones among them
    [4 + 12], // the first message ends with the header
  ];
  for (const cut of cuts) {
    const pieces: Uint8Array[] = [];
    let at = 0;
    for (const size of cut) pieces.push(plain.subarray(at, at += size));
    while (at < plain.length) pieces.push(plain.subarray(at, at += 1000));
    const received = await receiveFrom(sealPieces(pieces)) as { payload: Uint8Array; token: number };
    assert.equal(received.payload, frame.subarray(12), `cut ${cut}`);
    assert.is(received.token, 9);
  }
});

test("frames in key mode (receiver): an empty message after a frame's last byte is the next frame's first, and closes the connection", async () => {
  const { client, agent } = await transportKeys();
  const [a, b] = memoryStreamPair();
  for (const piece of [concat([le32(PING.length), PING]), new Uint8Array(0)]) {
    await a.write(encodeRecord(await client.send.encrypt(piece)));
  }
  const frames = new FrameStream(new StreamReader(b), agent);
  assert.equal((await frames.receive())?.payload, PING.subarray(12));
  assert.instance(await frames.receive().then(() => null, (e) => e), ProtocolError);
});

test("frames in key mode (receiver): a frame length of 0-11, below the 12-byte header, closes the connection at once, before the rest arrives", async () => {
  for (let length = 0; length < 12; length++) {
    const e = await receiveFrom(sealPieces([le32(length)]));
    assert.instance(e, ProtocolError, `frame length ${length}`);
    assert.match(String((e as Error).message), new RegExp(`frame length of ${length} is below the minimum of 12`));
  }
  const e = await receiveFrom(sealPieces([concat([le32(11), new Uint8Array(5)])]));
  assert.instance(e, ProtocolError, "frame length 11 with 5 of its bytes");
});

test("frames in plain records (receiver): a record length of 0-11, below the 12-byte header, closes the connection at once", async () => {
  for (let length = 0; length < 12; length++) {
    const [a, b] = memoryStreamPair();
    await a.write(le32(length));
    const receiving = new FrameStream(new StreamReader(b), null).receive().then((f) => f, (e) => e);
    const e = await Promise.race([receiving, new Promise((r) => setTimeout(() => r("still waiting"), 500))]);
    assert.instance(e, ProtocolError, `record length ${length}`);
    assert.match(String((e as Error).message), new RegExp(`frame length of ${length} is below the minimum of 12`));
  }
});

test("frames in key mode (receiver): a record body under 16 bytes, the tag's size, is an integrity failure at once, first or later in a frame", async () => {
  for (let length = 0; length < 16; length++) {
    const first = await receiveFrom(() => Promise.resolve([le32(length)]));
    assert.instance(first, IntegrityError, `a first record of ${length} bytes`);
    const later = await receiveFrom(async (k) => [
      encodeRecord(await k.send.encrypt(concat([le32(PING.length), PING.subarray(0, 6)]))),
      le32(length),
    ]);
    assert.instance(later, IntegrityError, `a second record of ${length} bytes`);
  }
  const empty = await receiveFrom(() => Promise.resolve([encodeRecord(new Uint8Array(0))]));
  assert.instance(empty, IntegrityError, "a zero-length record after the handshake");
});

test("frames in key mode (sender): every message but a frame's last is full; the nonce counter advances per message, 17 for a 1 MiB frame", async () => {
  const { client, agent } = await transportKeys();
  const [a, b] = memoryStreamPair();
  const sender = new FrameStream(new StreamReader(a), client), receiver = new FrameStream(new StreamReader(b), agent);
  const payload = new Uint8Array(MAX_PAYLOAD).fill(3);
  await sender.send({ target: 3, code: 0x10b, token: 9, payload });
  assert.is(client.send.counter, 17);
  assert.equal((await receiver.receive())?.payload, payload);
  assert.is(agent.receive.counter, 17);
  // The next frame's message is sealed with counter 17: a standalone Noise message under that nonce.
  await sender.send({ target: 0, code: 1, token: 1, payload: new TextEncoder().encode("ping") });
  const raw = await new StreamReader(b).readExactly(4 + 4 + 16 + 16);
  const record = raw.subarray(4);
  assert.equal(await agent.receive.decrypt(record), concat([le32(PING.length), PING]));
  assert.is(agent.receive.counter, 18);
});

test("frames in key mode (sender): a 1 MiB frame goes as 16 messages of 65,519 plaintext bytes and one of the rest", async () => {
  const { client, agent } = await transportKeys();
  const [a, b] = memoryStreamPair();
  await new FrameStream(new StreamReader(a), client).send({
    target: 3,
    code: 0x10b,
    token: 9,
    payload: new Uint8Array(MAX_PAYLOAD),
  });
  const wire = new StreamReader(b), sizes: number[] = [];
  for (let total = 0; total < 4 + 12 + MAX_PAYLOAD;) {
    const piece = await agent.receive.decrypt((await readRecord(wire, MAX_NOISE_MESSAGE))!);
    sizes.push(piece.length);
    total += piece.length;
  }
  assert.equal(sizes, [...Array(16).fill(MAX_NOISE_PLAINTEXT), 4 + 12 + MAX_PAYLOAD - 16 * MAX_NOISE_PLAINTEXT]);
});

for (const provider of PROVIDERS) {
  test(`aes-256-gcm (${provider.name}): same bytes as WebCrypto; a changed byte, tag or associated data opens to nothing`, async () => {
    const key = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    const nonce = hex("000000000000000000000007"), ad = new TextEncoder().encode("ad");
    const plain = new Uint8Array(70_000).map((_, i) => i * 31);
    const [mine, web] = [await provider.aesGcm(key), await webCryptoProvider.aesGcm(key)];
    const sealed = await mine.seal(nonce, plain, ad);
    assert.equal(sealed, await web.seal(nonce, plain, ad));
    assert.equal(await mine.open(nonce, sealed, ad), plain);
    for (const at of [5, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[at] ^= 1;
      assert.is(await mine.open(nonce, bad, ad), null, `byte ${at} changed`);
    }
    assert.is(await mine.open(nonce, sealed, new Uint8Array(0)), null, "other associated data");
    assert.equal(await mine.open(nonce, sealed, ad), plain, "a failed open leaves the key usable");
  });
}

for (const provider of PROVIDERS) {
  test(`aes-256-gcm (${provider.name}): sealing into and opening from pieces gives WebCrypto's bytes, small and bulk; any changed byte fails`, async () => {
    const key = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    const nonce = hex("000000000000000000000009"), none = new Uint8Array(0);
    const [mine, web] = [await provider.aesGcm(key), await webCryptoProvider.aesGcm(key)];
    if (!mine.sealInto || !mine.openInto) return; // optional: CipherState falls back to seal and open
    for (const size of [100, 40_000, 65_519]) { // below and above node:crypto's hand-over to libcrypto
      const plain = new Uint8Array(size).map((_, i) => i * 13);
      const expected = await web.seal(nonce, plain, none);
      const out = new Uint8Array(size + 16).fill(0xee);
      mine.sealInto(nonce, [plain.subarray(0, 7), plain.subarray(7, 7), plain.subarray(7)], none, out);
      assert.equal(out, expected, `sealed ${size}`);
      // Pieces cut as a socket might: inside the ciphertext and inside the tag.
      const cuts = [[expected], [expected.subarray(0, 1), expected.subarray(1)], [
        expected.subarray(0, size + 5),
        expected.subarray(size + 5, size + 9),
        expected.subarray(size + 9),
      ]];
      for (const pieces of cuts) {
        const opened = new Uint8Array(size).fill(0xee);
        assert.ok(mine.openInto(nonce, pieces, none, opened), `${size} in ${pieces.length} pieces`);
        assert.equal(opened, plain);
      }
      for (const at of [0, size - 1, size + 15]) {
        const bad = expected.slice();
        bad[at] ^= 1;
        assert.not.ok(
          mine.openInto(nonce, [bad.subarray(0, 3), bad.subarray(3)], none, new Uint8Array(size)),
          `byte ${at} changed`,
        );
      }
      assert.not.ok(mine.openInto(nonce, [expected.subarray(0, size + 15)], none, new Uint8Array(size)), "a short tag");
      assert.ok(mine.openInto(nonce, [expected], none, new Uint8Array(size)), "a failed open leaves the key usable");
    }
  });
}

test("frames in key mode: a 1 MiB frame arriving in odd pieces comes out whole; a changed byte in any message delivers nothing", async () => {
  const payload = new Uint8Array(MAX_PAYLOAD).map((_, i) => (i * 7919) >>> 5);
  const wireOf = async (keys: TransportKeys) => {
    const [a, b] = memoryStreamPair();
    await new FrameStream(new StreamReader(a), keys).send({ target: 3, code: 0x10b, token: 9, payload });
    a.close();
    const chunks: Uint8Array[] = [];
    for (let c = await b.read(); c; c = await b.read()) chunks.push(c);
    return concat(chunks);
  };
  const deliver = async (wire: Uint8Array, keys: TransportKeys) => {
    const [a, b] = memoryStreamPair();
    for (let at = 0, step = 1; at < wire.length; at += step, step = (step * 37 + 11) % 90_001 + 1) {
      await a.write(wire.subarray(at, at + step));
    }
    a.close();
    return await new FrameStream(new StreamReader(b), keys).receive();
  };
  let { client, agent } = await transportKeys();
  const frame = await deliver(await wireOf(client), agent);
  assert.equal(frame?.payload, payload);
  assert.is(frame?.token, 9);
  for (const at of [100, 5 * 65_539 + 100]) { // inside the first message, and inside the sixth
    ({ client, agent } = await transportKeys());
    const wire = await wireOf(client);
    wire[at] ^= 1;
    const e = await deliver(wire, agent).then(() => null, (x) => x);
    assert.instance(e, IntegrityError, `byte ${at} changed`);
  }
});

test("frames in key mode: a recycled frame's buffer carries the next large frame, which arrives intact", async () => {
  const { client: clientKeys, agent: agentKeys } = await transportKeys();
  const [a, b] = memoryStreamPair();
  const sender = new FrameStream(new StreamReader(a), clientKeys),
    receiver = new FrameStream(new StreamReader(b), agentKeys);
  const payloads = [1, 3, 2].map((k) => new Uint8Array(300_000 * k).map((_, i) => (i * k) >>> 2));
  for (const payload of payloads) await sender.send({ target: 3, code: 0x10b, token: 9, payload });
  const first = (await receiver.receive())!;
  assert.equal(first.payload, payloads[0]);
  receiver.recycle(first.payload);
  const second = (await receiver.receive())!;
  assert.equal(second.payload, payloads[1]);
  assert.is.not(second.payload.buffer, first.payload.buffer, "too small for the second frame: a new buffer");
  receiver.recycle(second.payload);
  const third = (await receiver.receive())!;
  assert.is(third.payload.buffer, second.payload.buffer, "large enough: reused");
  assert.equal(third.payload, payloads[2]);
});

/** A connected loopback pair: `outgoing` dialled, `incoming` accepted and paused. */
async function loopbackPair(): Promise<{ outgoing: net.Socket; incoming: net.Socket; close(): Promise<void> }> {
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const outgoing = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  const incoming = await accepted;
  incoming.pause();
  return {
    outgoing,
    incoming,
    close: async () => {
      outgoing.destroy();
      incoming.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Reads `size` bytes from `stream`, counting what each event-loop turn delivered. */
async function readByTurns(
  stream: ByteStream,
  size: number,
): Promise<{ received: Uint8Array[]; mostInOneTurn: number }> {
  let turn = 0, done = false;
  const tick = () => {
    turn++;
    if (!done) setImmediate(tick);
  };
  tick();
  const perTurn = new Map<number, number>();
  const received: Uint8Array[] = [];
  let total = 0;
  while (total < size) {
    const chunk = await stream.read();
    if (chunk === null) break;
    received.push(chunk);
    total += chunk.length;
    perTurn.set(turn, (perTurn.get(turn) ?? 0) + chunk.length);
  }
  done = true;
  return { received, mostInOneTurn: Math.max(...perTurn.values()) };
}

test("TCP transport: one connection's flood is read a bounded slice per event-loop turn, so other connections get their turn; every byte arrives in order", async () => {
  const { outgoing, incoming, close } = await loopbackPair();
  try {
    const size = 16 << 20;
    const sent = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) sent[i] = (i >> 12) & 255;
    outgoing.write(sent);
    const stream = socketStream(incoming);
    incoming.resume();
    const { received, mostInOneTurn: most } = await readByTurns(stream, size);
    assert.ok(Buffer.from(concat(received)).equals(sent), "every byte, in order");
    assert.ok(
      most <= READ_TURN_BUDGET + 64 * 1024,
      `${most} bytes read in one turn, budget ${READ_TURN_BUDGET} (plus one read)`,
    );
  } finally {
    await close();
  }
});

test("TCP transport, a connection this side dials: reads land in shared slabs, not a new buffer each; every byte in order, the same bound per turn", async () => {
  const size = 16 << 20;
  const sent = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) sent[i] = (i >> 12) & 255;
  const server = net.createServer((socket) => socket.end(sent));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const stream = await dialTcp("127.0.0.1", (server.address() as net.AddressInfo).port, { timeoutMs: 5000 });
  try {
    const { received, mostInOneTurn: most } = await readByTurns(stream, size);
    assert.ok(Buffer.from(concat(received)).equals(sent), "every byte, in order");
    assert.ok(
      most <= READ_TURN_BUDGET + 64 * 1024,
      `${most} bytes read in one turn, budget ${READ_TURN_BUDGET} (plus one read)`,
    );
    const buffers = new Set(received.map((c) => c.buffer)).size;
    assert.ok(buffers * 2 <= received.length, `${received.length} reads landed in ${buffers} buffers`);
  } finally {
    stream.close();
    await new Promise((r) => server.close(r));
  }
});

/** `stream` as it is, recording the memory each chunk it delivers lies in. */
function recordingSlabs(stream: ByteStream): { stream: ByteStream; slabs: Set<ArrayBufferLike> } {
  const slabs = new Set<ArrayBufferLike>();
  const read = async () => {
    const chunk = await stream.read();
    if (chunk) slabs.add(chunk.buffer);
    return chunk;
  };
  return { stream: overriding(stream, { read }), slabs };
}

/** `stream` with the members in `own` in place of its own (a class's methods do not spread). */
function overriding(stream: ByteStream, own: Partial<ByteStream>): ByteStream {
  return {
    read: () => stream.read(),
    write: (data) => stream.write(data),
    writev: stream.writev && ((parts, recycle) => stream.writev!(parts, recycle)),
    recycle: stream.recycle && ((piece) => stream.recycle!(piece)),
    close: () => stream.close(),
    remote: stream.remote,
    closed: stream.closed,
    ...own,
  };
}

test("TCP transport, a connection this side dials: a reader that recycles what it read gets its slabs back, so 16 MiB pass through a handful; no byte is read over before the reader is done with it", async () => {
  const size = 16 << 20;
  const sent = new Uint8Array(size).map((_, i) => (i * 131) >>> 9);
  const server = net.createServer((socket) => socket.end(sent));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const dialed = await dialTcp("127.0.0.1", (server.address() as net.AddressInfo).port, { timeoutMs: 5000 });
  const { stream, slabs } = recordingSlabs(dialed);
  const reader = new StreamReader(stream);
  try {
    reader.recycleConsumed();
    const received = new Uint8Array(size);
    for (let at = 0, n = 0; at < size; n++) {
      const length = Math.min([65_539, 4, 17, 200_000][n % 4], size - at);
      const pieces = await reader.readPieces(length);
      // More reads land while the pieces are still the reader's: they must not go over them.
      if (n % 3 === 0) await new Promise((r) => setTimeout(r, 1));
      received.set(concat(pieces), at);
      at += length;
    }
    assert.ok(Buffer.from(received).equals(sent), "every byte, in order");
    assert.ok(slabs.size <= 12, `16 MiB were read into ${slabs.size} slabs of 256 KiB`);
  } finally {
    dialed.close();
    await new Promise((r) => server.close(r));
  }
});

test("frames in key mode over a dialed TCP connection: frames of every size arrive intact and stay so while the socket's slabs are read into again", async () => {
  const { client: clientKeys, agent: agentKeys } = await transportKeys();
  const sizes = Array.from({ length: 40 }, (_, k) => [512 * 1024, 60_000, 20, 300_000, 16 * 1024][k % 5]);
  const payloads = sizes.map((size, k) => new Uint8Array(size).map((_, i) => (i * (k + 5)) >>> 4));
  const server = net.createServer(async (socket) => {
    const sender = new FrameStream(new StreamReader(socketStream(socket)), agentKeys);
    for (const [token, payload] of payloads.entries()) await sender.send({ target: 3, code: 0x10b, token, payload });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const dialed = await dialTcp("127.0.0.1", (server.address() as net.AddressInfo).port, { timeoutMs: 5000 });
  const { stream, slabs } = recordingSlabs(dialed);
  const receiver = new FrameStream(new StreamReader(stream), clientKeys);
  try {
    const kept = [];
    for (let token = 0; token < payloads.length; token++) kept.push((await receiver.receive())!);
    for (const [token, frame] of kept.entries()) {
      assert.ok(Buffer.from(frame.payload).equals(payloads[token]), `frame ${token} intact at the end`);
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(slabs.size * 256 * 1024 < total / 2, `${total} bytes were read into ${slabs.size} slabs of 256 KiB`);
  } finally {
    receiver.close();
    await new Promise((r) => server.close(r));
  }
});

test("TCP transport: a write's recycle comes once the socket let go of its bytes, not when it accepted them", async () => {
  const { outgoing, incoming, close } = await loopbackPair();
  try {
    let recycled = false;
    // More than the kernel buffers on both ends hold while the reader waits.
    await Promise.race([
      socketStream(outgoing).writev!([new Uint8Array(48 << 20)], () => (recycled = true)),
      new Promise((r) => setTimeout(r, 200)),
    ]);
    assert.not.ok(recycled, "recycled while the bytes still wait in the process");
    let received = 0;
    incoming.on("data", (d: Uint8Array) => (received += d.length));
    incoming.resume();
    for (let i = 0; i < 500 && !recycled; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(recycled, `recycled once the reader took the bytes (${received} read)`);
  } finally {
    await close();
  }
});

test("frames in key mode over TCP: a sealed frame's buffer is sealed into again only once the socket let go of it; every frame arrives intact", async () => {
  const { client: clientKeys, agent: agentKeys } = await transportKeys();
  const { outgoing, incoming, close } = await loopbackPair(); // the reader waits: sealed frames queue in the socket, unwritten
  try {
    const tcp = socketStream(outgoing);
    const held = new Set<ArrayBufferLike>(), seen = new Set<ArrayBufferLike>();
    let reused = 0;
    const watched = overriding(tcp, {
      writev(parts, recycle) {
        const buffer = parts[0].buffer;
        assert.not.ok(held.has(buffer), "a buffer the socket still holds was sealed into");
        if (seen.has(buffer)) reused++;
        held.add(buffer);
        seen.add(buffer);
        return tcp.writev!(parts, () => {
          held.delete(buffer);
          recycle?.();
        });
      },
    });
    const sender = new FrameStream(new StreamReader(watched), clientKeys);
    const payloads = Array.from(
      { length: 24 },
      (_, k) => new Uint8Array(512 * 1024).map((_, i) => (i * (k + 3)) >>> 3),
    );
    const sent = Promise.all(payloads.map((payload, token) => sender.send({ target: 3, code: 0x10b, token, payload })));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(held.size > 0, "the socket holds frames while the reader waits");
    incoming.resume();
    const receiver = new FrameStream(new StreamReader(socketStream(incoming)), agentKeys);
    for (const [token, payload] of payloads.entries()) {
      const frame = (await receiver.receive())!;
      assert.is(frame.token, token);
      assert.ok(Buffer.from(frame.payload).equals(payload), `frame ${token} intact`);
    }
    await sent;
    assert.ok(
      reused >= payloads.length - 4,
      `written-out buffers were sealed into again (${reused} of ${payloads.length})`,
    );
  } finally {
    await close();
  }
});

test.run();
