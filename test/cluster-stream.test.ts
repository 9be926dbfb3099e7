// The byte stream between two listener nodes (client/cluster-stream.ts), its two ends linked
// directly: what goes out as engine messages, how many, and the window that bounds what is in flight.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { chunkBytesFor, EngineStream } from "../client/cluster-stream.ts";
import { FrameStream } from "../core/secure/frame-stream.ts";
import { StreamReader } from "../core/wire/stream.ts";

const test = suite("cluster engine stream");
const MiB = 1024 * 1024;

/** Two ends whose messages reach each other in order; `sent` counts each end's messages. */
function linked(window: number, chunkBytes: number) {
  const sent = { a: [] as Uint8Array[], b: [] as Uint8Array[] };
  const a: EngineStream = new EngineStream((m) => (sent.a.push(m), b.deliver(m)), "node b", window, chunkBytes);
  const b: EngineStream = new EngineStream((m) => (sent.b.push(m), a.deliver(m)), "node a", window, chunkBytes);
  return { a, b, sent };
}

const pattern = (n: number) => new Uint8Array(n).map((_, i) => (i * 31) & 0xff);

test("a file transfer's frame (512 KiB and headers) travels as one engine message of NATS's default size", async () => {
  const { a, b, sent } = linked(4 * MiB, chunkBytesFor(MiB));
  const payload = pattern(512 * 1024);
  await new FrameStream(new StreamReader(a), null).send({ target: 3, code: 9, token: 0, payload });
  assert.is(sent.a.length, 1, "one message for the frame, its length and its header");
  assert.ok(sent.a[0].length <= MiB, "within max_payload");
  const frame = await new FrameStream(new StreamReader(b), null).receive();
  assert.equal([frame!.target, frame!.code, frame!.payload.length], [3, 9, payload.length]);
  assert.ok(frame!.payload.every((x, i) => x === payload[i]), "the payload arrived whole");
});

test("a write larger than the engine's message limit is cut into messages within it, in order", async () => {
  const limit = 64 * 1024;
  const { a, b, sent } = linked(4 * MiB, chunkBytesFor(limit));
  const data = pattern(300 * 1024);
  await a.writev([data.subarray(0, 1000), data.subarray(1000)]);
  assert.is(sent.a.length, Math.ceil(data.length / (limit - 5)));
  assert.ok(sent.a.every((m) => m.length <= limit));
  const reader = new StreamReader(b);
  const back = await reader.readExactly(data.length);
  assert.ok(back.every((x, i) => x === data[i]));
});

test("the writer stops at the window until the reader consumes, which it says with a credit", async () => {
  const window = 256 * 1024;
  const { a, b, sent } = linked(window, chunkBytesFor(MiB));
  let done = false;
  const writing = a.write(pattern(3 * window)).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.is(done, false, "blocked with a window's worth unconsumed");
  assert.is(sent.a.reduce((n, m) => n + m.length - 5, 0), window, "a window in flight, not a byte more");
  const reader = new StreamReader(b);
  await reader.readExactly(3 * window);
  await writing;
  assert.ok(sent.b.length >= 2, "credits came back");
});

test("a message lost on the way ends the stream with the reason instead of corrupting it", async () => {
  let drop = true;
  const b = new EngineStream(() => {}, "node a");
  const a = new EngineStream((m) => (drop ? (drop = false) : b.deliver(m)), "node b");
  await a.write(pattern(10));
  await a.write(pattern(10));
  assert.is(await b.read(), null);
  assert.match(b.reason!, /lost or reordered/);
});

test.run();
