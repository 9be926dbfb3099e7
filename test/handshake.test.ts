import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromHex, toHex } from "../core/bytes.ts";
import { ProtocolError } from "../core/errors.ts";
import {
  chooseVersion,
  decodeHello,
  decodeReply,
  encodeHello,
  encodeReply,
  EncryptionMode,
  PROTOCOL_ID,
} from "../core/wire/hello.ts";
import { decodeFrame, encodeFrame } from "../core/wire/frame.ts";

// Test vectors from docs/protocol.md §2 and §4.
test("handshake: hello matches the documented bytes", () => {
  assert.is(toHex(encodeHello({ min: 1, max: 1 })), "5f1c0d3e8a474b9e9c216e0a7d4f2b180100000001000000");
  assert.is(toHex(PROTOCOL_ID), "5f1c0d3e8a474b9e9c216e0a7d4f2b18");
});

test("handshake: reply matches the documented bytes", () => {
  assert.is(
    toHex(encodeReply({ mode: EncryptionMode.Key, version: 1, agent: { min: 1, max: 1 } })),
    "02000000010000000100000001000000",
  );
  assert.equal(decodeReply(fromHex("02000000010000000100000001000000")!), {
    mode: 2,
    version: 1,
    agent: { min: 1, max: 1 },
  });
});

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

test("handshake: a reply that cannot be one is refused", () => {
  assert.throws(
    () => decodeReply(fromHex("48545450312e3120343030204261642052")!.subarray(0, 16)),
    (e: Error) => e instanceof ProtocolError,
  );
  assert.throws(() => decodeReply(new Uint8Array(16)), (e: Error) => e instanceof ProtocolError); // agent range 0..0
});

test("frame: header layout matches the documented bytes", () => {
  const bytes = encodeFrame({ target: 0, code: 1, token: 1, payload: new TextEncoder().encode("ping") });
  assert.is(toHex(bytes), "00000000010000000100000070696e67");
  const f = decodeFrame(bytes);
  assert.equal([f.target, f.code, f.token, new TextDecoder().decode(f.payload)], [0, 1, 1, "ping"]);
  assert.throws(() => decodeFrame(new Uint8Array(11)), (e: Error) => e instanceof ProtocolError);
});

test.run();
