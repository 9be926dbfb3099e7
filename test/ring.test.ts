// The ring logic over a plain byte region: order, wrap-around, full rings, corruption.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ChannelCorruptError } from "../core/errors.ts";
import { crc32 } from "../core/shm/crc32.ts";
import {
  CHANNEL_HEADER_SIZE,
  channelSize,
  checkChannel,
  Direction,
  initChannel,
  RingReader,
  RingWriter,
} from "../core/shm/ring.ts";

const test = suite("ring");

const CAP = 4096;
function fresh() {
  const region = new Uint8Array(channelSize(CAP));
  initChannel(region, CAP);
  return { region, w: new RingWriter(region, Direction.AgentToHost), r: new RingReader(region, Direction.AgentToHost) };
}
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

test("crc32: the standard check value", () => {
  assert.is(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const a = new TextEncoder().encode("1234"), b = new TextEncoder().encode("56789");
  assert.is(crc32(b, crc32(a)), 0xcbf43926);
});

test("ring: records come out whole and in order, across many wrap-arounds", () => {
  const { w, r } = fresh();
  let written = 0, read = 0;
  const drain = () => {
    let rec;
    while ((rec = r.tryRead())) {
      assert.equal(rec, bytes((read * 97) % 1500, read));
      read++;
    }
  };
  for (let round = 0; round < 500; round++) {
    const payload = bytes((round * 97) % 1500, round);
    if (!w.tryWrite(payload)) {
      drain();
      assert.ok(w.tryWrite(payload), "fits once drained");
    }
    written++;
    if (round % 3 === 0) drain();
  }
  drain();
  assert.is(read, written);
  assert.is(r.tryRead(), null);
});

test("ring: a full ring refuses, flags the producer as waiting, and accepts after a read", () => {
  const { w, r } = fresh();
  let n = 0;
  while (w.tryWrite(bytes(1000, n))) n++;
  assert.ok(n >= 3 && n <= 4);
  assert.ok(r.takeProducerWaiting(), "producer marked as waiting");
  assert.ok(r.tryRead());
  assert.ok(w.tryWrite(bytes(1000, 99)));
  assert.throws(
    () => w.tryWrite(new Uint8Array(CAP)),
    (e: Error) => e instanceof RangeError && /exceeds the ring's maximum/.test(e.message),
  );
});

test("ring: a record whose header is corrupt is refused and never delivered", () => {
  for (const at of [0, 1, 3, 4, 6]) { // a length byte or a sequence byte
    const { region, w, r } = fresh();
    w.tryWrite(bytes(100, 1));
    region[CHANNEL_HEADER_SIZE + at] ^= 0x10;
    assert.throws(() => r.tryRead(), (e: Error) => e instanceof ChannelCorruptError && /checksum/.test(e.message));
    assert.throws(() => r.tryRead(), (e: Error) => e instanceof ChannelCorruptError, "still not delivered on retry");
  }
});

test("ring: a torn record (head published before the record) is refused", () => {
  const { region, w, r } = fresh();
  w.tryWrite(bytes(64, 2));
  // A reader that sees the head move but none of the record: header and payload still zero.
  region.fill(0, CHANNEL_HEADER_SIZE, CHANNEL_HEADER_SIZE + 16 + 64);
  assert.throws(() => r.tryRead(), (e: Error) => e instanceof ChannelCorruptError);
});

test("ring: a record left from an earlier lap is refused by its sequence", () => {
  const { region, w, r } = fresh();
  assert.ok(w.tryWrite(bytes(2000, 1)));
  assert.equal(r.tryRead(), bytes(2000, 1));
  const lap1 = region.slice(CHANNEL_HEADER_SIZE, CHANNEL_HEADER_SIZE + 2016);
  assert.ok(w.tryWrite(bytes(2000, 2)));
  assert.ok(w.tryWrite(bytes(2000, 3))); // wraps to the start of the ring
  assert.equal(r.tryRead(), bytes(2000, 2));
  // The head moved past the third record, but the reader sees the first one's stale bytes there.
  region.set(lap1.subarray(0, 16), CHANNEL_HEADER_SIZE + 2 * 2016); // where the third record's header is
  assert.throws(() => r.tryRead(), (e: Error) => e instanceof ChannelCorruptError && /out of sequence/.test(e.message));
});

test("ring: a record is read into memory the consumer provides, whole across the wrap-around", () => {
  const { w, r } = fresh();
  const mine = new Uint8Array(4096);
  const asked: number[] = [];
  const into = (length: number) => (asked.push(length), mine.subarray(0, length));
  for (let round = 0; round < 20; round++) {
    const payload = bytes(1000 + round, round);
    assert.ok(w.tryWrite(payload));
    const rec = r.tryRead(into)!;
    assert.is(rec.buffer, mine.buffer, "the consumer's memory, not a new buffer");
    assert.equal(rec, payload);
  }
  assert.equal(asked, Array.from({ length: 20 }, (_, i) => 1000 + i), "asked once per record, for its payload length");
});

test("ring: a header that is not a channel is refused", () => {
  const region = new Uint8Array(channelSize(CAP));
  assert.throws(
    () => checkChannel(region),
    (e: Error) => e instanceof ChannelCorruptError && /bad magic/.test(e.message),
  );
  initChannel(region, CAP);
  region[4] = 9;
  assert.throws(() => checkChannel(region), (e: Error) => /layout version 9/.test(e.message));
});

test("ring: the two directions are independent", () => {
  const { region } = fresh();
  const a = new RingWriter(region, Direction.AgentToHost), b = new RingWriter(region, Direction.HostToAgent);
  a.tryWrite(bytes(10, 1));
  b.tryWrite(bytes(20, 2));
  assert.equal(new RingReader(region, Direction.HostToAgent).tryRead(), bytes(20, 2));
  assert.equal(new RingReader(region, Direction.AgentToHost).tryRead(), bytes(10, 1));
});

test.run();
