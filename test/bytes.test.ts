import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  allocateUninitialized,
  BufferRecycler,
  concat,
  copy,
  equals,
  fromHex,
  indexOfNeedle,
  setUninitializedAllocator,
  takeFront,
  timingSafeEqual,
  toHex,
} from "../core/bytes.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";

const test = suite("bytes");

const b = (...n: number[]) => new Uint8Array(n);

test("bytes: concat joins in order", () => {
  assert.equal(concat([b(1, 2), b(), b(3)]), b(1, 2, 3));
});

test("bytes: the runtime's uninitialized allocation hands out plain arrays, whose slice is a copy", () => {
  useUninitializedAllocation();
  for (const length of [0, 10, 1 << 20]) {
    const a = allocateUninitialized(length);
    assert.is(a.constructor, Uint8Array, "not a Buffer: a Buffer's slice would share memory");
    assert.is(a.length, length);
    assert.is(a.byteOffset, 0);
    if (length === 0) continue;
    a.fill(1);
    const copied = a.slice();
    copied[0] = 2;
    assert.is(a[0], 1);
  }
});

test("bytes: takeFront takes views off the front of a queue, leaving a partly taken array's rest", () => {
  const queue = [b(1, 2), b(3, 4, 5), b(6)];
  assert.equal(takeFront(queue, 3), [b(1, 2), b(3)]);
  assert.equal(queue, [b(4, 5), b(6)]);
  assert.equal(takeFront(queue, 3), [b(4, 5), b(6)]);
  assert.equal(queue, []);
  assert.equal(takeFront(queue, 0), []);
});

test("bytes: a recycler hands back what it was given, keeps the larger when full, and never a buffer shared with others", () => {
  const recycler = new BufferRecycler(1);
  const small = recycler.take(100), large = recycler.take(300);
  recycler.recycle(small);
  recycler.recycle(large);
  assert.is(recycler.take(250).buffer, large.buffer, "full: the larger one replaced the smaller");
  assert.is.not(recycler.take(50).buffer, small.buffer, "the smaller one was let go");
  recycler.recycle(new Uint8Array(500));
  assert.is(recycler.take(400).length, 400);
  assert.not.ok(recycler.owns(new Uint8Array(500)), "not from take: never kept");
  setUninitializedAllocator((length) => new Uint8Array(length + 16).subarray(8, 8 + length)); // views into shared memory
  try {
    const shared = recycler.take(1000);
    recycler.recycle(shared);
    assert.not.ok(recycler.owns(shared));
    assert.is.not(recycler.take(1000).buffer, shared.buffer, "a view into shared memory is never handed out again");
  } finally {
    setUninitializedAllocator((length) => new Uint8Array(length)); // as before: the default, then the runtime's
    useUninitializedAllocation();
  }
});

test("bytes: equals and timingSafeEqual agree", () => {
  for (const [x, y] of [[b(1, 2), b(1, 2)], [b(1, 2), b(1, 3)], [b(1), b(1, 1)]]) {
    assert.is(equals(x, y), timingSafeEqual(x, y));
  }
  assert.ok(equals(b(9, 9), b(9, 9)));
  assert.not.ok(timingSafeEqual(b(9, 9), b(9, 8)));
});

test("bytes: indexOfNeedle finds the first match at or after start", () => {
  assert.is(indexOfNeedle(b(1, 2, 3, 1, 2, 3), b(2, 3)), 1);
  assert.is(indexOfNeedle(b(1, 2, 3, 1, 2, 3), b(2, 3), 2), 4);
  assert.is(indexOfNeedle(b(1, 2, 3), b(3, 4)), -1);
});

test("bytes: copy copies what fits", () => {
  const dst = new Uint8Array(3);
  assert.is(copy(b(7, 8, 9, 10), dst, 1), 2);
  assert.equal(dst, b(0, 7, 8));
});

test("bytes: hex round trip and rejection of bad hex", () => {
  assert.is(toHex(b(0, 255, 16)), "00ff10");
  assert.equal(fromHex("00ff10"), b(0, 255, 16));
  assert.is(fromHex("0g"), null);
  assert.is(fromHex("abc"), null);
});

test.run();
