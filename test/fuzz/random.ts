/**
 * The fuzzer's randomness: a seeded generator (the same seed gives the same cases on every
 * runtime), byte mutations of valid messages, and random MessagePack-shaped values.
 * @module
 */
import { encodeFields } from "../../core/wire/messages.ts";

/** A small, fast, seeded generator (xorshift32 after a splitmix scramble of the seed). */
export class Random {
  #state: number;

  constructor(seed: number) {
    let z = (seed >>> 0) + 0x9e3779b9;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    this.#state = (z ^ (z >>> 16)) >>> 0 || 1;
  }

  /** A uint32. */
  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.#state = x >>> 0);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : this.next() % n;
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

/** The random source of case `index` of target `target` in a run seeded `seed`: replayable alone. */
export function caseRandom(seed: number, target: string, index: number): Random {
  let h = seed >>> 0;
  for (let i = 0; i < target.length; i++) h = Math.imul(h ^ target.charCodeAt(i), 0x01000193);
  return new Random(Math.imul(h ^ index, 0x9e3779b1) ^ (index >>> 16));
}

/** Lengths and counts a parser is most likely to get wrong. */
export const EDGE_UINT32 = [
  0,
  1,
  2,
  3,
  4,
  7,
  8,
  11,
  12,
  13,
  15,
  16,
  17,
  23,
  24,
  25,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x3fff,
  0x4000,
  0x4010,
  0xfffe,
  0xffff,
  0x1_0000,
  0x10_0000,
  0x10_000c,
  0x10_000d,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
];

/** One to a few mutations of `input`: bit flips, edge bytes and lengths, truncation, extension, splices. */
export function mutate(rng: Random, input: Uint8Array, others: readonly Uint8Array[] = []): Uint8Array {
  let out: Uint8Array = input.slice();
  const rounds = 1 + rng.int(rng.chance(0.2) ? 8 : 3);
  for (let r = 0; r < rounds; r++) out = mutateOnce(rng, out, others);
  return out;
}

function mutateOnce(rng: Random, b: Uint8Array, others: readonly Uint8Array[]): Uint8Array {
  const at = rng.int(b.length + 1);
  switch (rng.int(9)) {
    case 0: // bit flip
      if (b.length > 0) b[rng.int(b.length)] ^= 1 << rng.int(8);
      return b;
    case 1: // an edge byte
      if (b.length > 0) b[rng.int(b.length)] = rng.pick([0, 1, 0x7f, 0x80, 0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xff]);
      return b;
    case 2: { // a length field (uint32, either byte order) set to an edge value
      if (b.length < 4) return b;
      const i = rng.int(b.length - 3);
      const v = rng.chance(0.3) ? (b.length + rng.int(5) - 2) >>> 0 : rng.pick(EDGE_UINT32);
      new DataView(b.buffer, b.byteOffset).setUint32(i, v, rng.chance(0.7));
      return b;
    }
    case 3: // truncation
      return b.slice(0, rng.int(b.length + 1));
    case 4: // extension with random bytes
      return join(b.subarray(0, at), rng.bytes(1 + rng.int(rng.chance(0.1) ? 4096 : 32)), b.subarray(at));
    case 5: { // a span removed
      const end = Math.min(b.length, at + 1 + rng.int(16));
      return join(b.subarray(0, at), b.subarray(end));
    }
    case 6: { // a span repeated
      const end = Math.min(b.length, at + 1 + rng.int(64));
      const span = b.subarray(at, end);
      return join(b.subarray(0, end), ...Array(1 + rng.int(8)).fill(span), b.subarray(end));
    }
    case 7: { // spliced with another valid message
      if (others.length === 0) return b;
      const o = rng.pick(others);
      return join(b.subarray(0, at), o.subarray(rng.int(o.length + 1)));
    }
    default: // random bytes overwritten
      for (let i = 0, n = 1 + rng.int(8); i < n && b.length > 0; i++) b[rng.int(b.length)] = rng.next() & 0xff;
      return b;
  }
}

function join(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

const STRINGS = ["", ".", "a", "x/y", "\0", "a\0b", "é", "\u{1F600}", "%s%n", "\\", "*", "**/", "?", " ", "\n"];
const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  -(2 ** 31),
  2 ** 32,
  2 ** 53,
  -(2 ** 53),
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  0o7777,
  0o100644,
];

/** A random value MessagePack can carry: of any type, huge, empty, nested. */
export function randomValue(rng: Random, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.chance(0.5) ? rng.pick(NUMBERS) : (rng.next() | 0) * (rng.chance(0.5) ? 1 : 2 ** 20);
    case 3:
      return rng.chance(0.6) ? rng.pick(STRINGS) : randomString(rng, rng.int(rng.chance(0.05) ? 5000 : 24));
    case 4:
      return rng.bytes(rng.int(32));
    case 5:
      return undefined;
    case 6:
      return Array.from({ length: rng.int(rng.chance(0.05) ? 300 : 5) }, () => randomValue(rng, depth + 1));
    case 7:
      return Object.fromEntries(
        Array.from({ length: rng.int(5) }, () => [randomString(rng, rng.int(8)), randomValue(rng, depth + 1)]),
      );
    default:
      return deepNesting(rng.int(2000));
  }
}

/** Arrays inside arrays, `levels` deep. */
function deepNesting(levels: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

function randomString(rng: Random, length: number): string {
  const alphabet = "abcxyz019._-/ *?\0\n";
  let s = "";
  for (let i = 0; i < length; i++) {
    s += rng.chance(0.95) ? alphabet[rng.int(alphabet.length)] : String.fromCharCode(rng.int(0xd800));
  }
  return s;
}

/** `fields` with some values replaced by random ones, some removed, and unknown ones added. */
export function mutateFields(rng: Random, fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fields };
  const keys = Object.keys(out);
  for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
    const choice = rng.int(10);
    if (choice < 6 && keys.length > 0) out[rng.pick(keys)] = randomValue(rng);
    else if (choice < 8 && keys.length > 0) delete out[rng.pick(keys)];
    else out[randomString(rng, 1 + rng.int(6))] = randomValue(rng);
  }
  return out;
}

/** MessagePack of a random shape; bigger than a field map would be only now and then. */
export function randomFieldsBytes(rng: Random): Uint8Array {
  try {
    return encodeFields(rng.chance(0.7) ? mutateFields(rng, {}) : randomValue(rng));
  } catch {
    return rng.bytes(rng.int(64)); // too deep for the encoder: raw bytes instead
  }
}
