/**
 * Fuzz targets for everything a peer's bytes reach before a session: the hello and the reply,
 * the opening exchange on both sides, records and the frame stream (plain and sealed, with their
 * reassembly), frames, and session payloads (header, envelope, error and pong payloads). Seeds
 * are valid messages made by the codecs; every input is a mutation of one, or random bytes.
 * @module
 */
import { AgentError, ProtocolError } from "../../core/errors.ts";
import { decodeHello, decodeReply, encodeHello, encodeReply, EncryptionMode } from "../../core/wire/hello.ts";
import { decodeFrame, encodeFrame } from "../../core/wire/frame.ts";
import { decodeError, decodeFields, decodePong, encodeError, encodePong } from "../../core/wire/messages.ts";
import { decodeEnvelope, decodeSessionHeader, encodeEnvelope } from "../../core/session/protocol.ts";
import { DeliveryLink } from "../../core/session/delivery.ts";
import { memoryStreamPair } from "../../core/wire/memory-stream.ts";
import { type ByteStream, StreamReader } from "../../core/wire/stream.ts";
import { FrameStream } from "../../core/secure/frame-stream.ts";
import { CipherState } from "../../core/secure/noise.ts";
import type { Aead } from "../../core/secure/crypto.ts";
import { initiate, respond } from "../../core/secure/opening.ts";
import { generateKey, keyId } from "../../core/secure/keys.ts";
import { runtimeCryptoProvider } from "../../runtime/crypto.ts";
import { mutate, type Random, randomFieldsBytes } from "./random.ts";

/** What the fuzzer runs: inputs made from a random source, and a run that throws only on a finding. */
export interface FuzzTarget {
  name: string;
  /** Builds the seeds (once). */
  setUp(): Promise<void>;
  input(rng: Random): Uint8Array;
  /** Resolves on any outcome the parser promises (a value, or its typed error); throws otherwise. */
  run(input: Uint8Array): Promise<void>;
  tearDown(): Promise<void>;
}

/** A finding: a parser threw what it does not promise, or answered what it must not. */
export class Finding extends Error {}

/** Runs `parse`; a throw that is not one of `allowed` is a {@link Finding}. */
export function expectTyped(parse: () => unknown, allowed: readonly (abstract new (...a: never[]) => Error)[]): void {
  try {
    parse();
  } catch (e) {
    if (!allowed.some((type) => e instanceof type)) throw e;
  }
}

/** A seed mutated, now and then a seed as it is or random bytes. */
export function fromSeeds(rng: Random, seeds: readonly Uint8Array[]): Uint8Array {
  const seed = rng.pick(seeds);
  if (rng.chance(0.03)) return seed.slice();
  if (rng.chance(0.03)) return rng.bytes(rng.int(64));
  return mutate(rng, seed, seeds);
}

/** A target over a synchronous parser: seeds, and the parse with its typed errors. */
function parserTarget(name: string, makeSeeds: () => Uint8Array[], parse: (input: Uint8Array) => void): FuzzTarget {
  let seeds: Uint8Array[] = [];
  return {
    name,
    setUp: () => Promise.resolve(void (seeds = makeSeeds())),
    input: (rng) => fromSeeds(rng, seeds),
    run: (input) => Promise.resolve(parse(input)),
    tearDown: () => Promise.resolve(),
  };
}

const helloTarget = parserTarget(
  "hello",
  () => [encodeHello({ min: 1, max: 1 }), encodeHello({ min: 2, max: 2 }), encodeHello({ min: 1, max: 0x7fffffff })],
  (input) => expectTyped(() => decodeHello(input), [ProtocolError]),
);

const replyTarget = parserTarget(
  "reply",
  () => [0, 1, 2].map((mode) => encodeReply({ mode, version: 2, agent: { min: 1, max: 2 } })),
  (input) => expectTyped(() => decodeReply(input), [ProtocolError]),
);

const frameTarget = parserTarget(
  "frame",
  () =>
    [0, 1, 12, 300].map((n) => encodeFrame({ target: n, code: 0x100 + n, token: n * 7, payload: new Uint8Array(n) })),
  (input) => {
    expectTyped(() => {
      const frame = decodeFrame(input);
      if (frame.payload.length !== input.length - 12) throw new Finding("payload length disagrees with the frame");
    }, [ProtocolError]);
  },
);

/** Session payloads: the header, then the envelope, read as the agent's delivery link and a host do. */
const sessionTarget = parserTarget("session", () => {
  const header = (seq: number, ack: number) => {
    const h = new Uint8Array(8);
    new DataView(h.buffer).setUint32(0, seq, true);
    new DataView(h.buffer).setUint32(4, ack, true);
    return h;
  };
  const bodies = [
    encodeEnvelope({ path: "a/b" }),
    encodeEnvelope({ files: [{ path: "x", size: 2 }] }, new Uint8Array([1, 2])),
    encodeEnvelope({}),
    encodeError({ code: "not-found", message: "x", detail: "y" }),
    encodePong(1, new Uint8Array([9])),
  ];
  return bodies.flatMap((b) => [concat2(header(1, 0), b), concat2(header(1, 3), b)]);
}, (input) => {
  const link = new DeliveryLink({ transmit: () => {} });
  for (let i = 0; i < 3; i++) link.send(0x100, i + 1, [new Uint8Array(4)]);
  expectTyped(() => {
    const body = link.receive(0x100, input);
    if (body !== null) decodeEnvelope(body);
  }, [ProtocolError]);
  link.close();
  expectTyped(() => decodeSessionHeader(input), [ProtocolError]);
  expectTyped(() => decodeEnvelope(input.subarray(Math.min(8, input.length))), [ProtocolError]);
  expectTyped(() => decodeError(input), [ProtocolError]);
  expectTyped(() => decodePong(input), [ProtocolError]);
  expectTyped(() => decodeFields(input), [ProtocolError]);
});

function concat2(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A stream that records what is written to it into `sink`, and never delivers anything. */
function recording(stream: ByteStream, sink: Uint8Array[]): ByteStream {
  return {
    ...stream,
    read: () => stream.read(),
    write: (d) => (sink.push(d.slice()), stream.write(d)),
    writev: undefined,
    close: () => stream.close(),
    closed: stream.closed,
  };
}

/**
 * A peer that sends `input` in pieces cut at `cuts` (reassembly meets every split), then hangs up;
 * what is written to it is taken and dropped, as a peer that reads and ignores it.
 */
function feed(input: Uint8Array, cuts: number[]): ByteStream {
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const cut of [...cuts.filter((c) => c < input.length).sort((x, y) => x - y), input.length]) {
    if (cut > at) chunks.push(input.slice(at, cut));
    at = Math.max(at, cut);
  }
  let ended = false;
  return {
    read: () => Promise.resolve(ended ? null : chunks.shift() ?? null),
    write: () => Promise.resolve(),
    close: () => void (ended = true),
    closed: new Promise<void>(() => {}),
  };
}

/** Random cut points for an input of `length` bytes, so reassembly meets every split. */
function cutsFor(rng: Random, length: number): number[] {
  return Array.from({ length: rng.int(6) }, () => rng.int(length + 1));
}

/** An input with its cut points in front: 1 byte count, then uint32 LE cuts. */
function withCuts(rng: Random, body: Uint8Array): Uint8Array {
  const cuts = cutsFor(rng, body.length);
  const out = new Uint8Array(1 + cuts.length * 4 + body.length);
  out[0] = cuts.length;
  cuts.forEach((c, i) => new DataView(out.buffer).setUint32(1 + i * 4, c, true));
  out.set(body, 1 + cuts.length * 4);
  return out;
}

function splitCuts(input: Uint8Array): { cuts: number[]; body: Uint8Array } {
  const n = Math.min(input[0] ?? 0, Math.floor((input.length - 1) / 4));
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const cuts = Array.from({ length: n }, (_, i) => view.getUint32(1 + i * 4, true));
  return { cuts, body: input.subarray(1 + n * 4) };
}

/**
 * The opening exchange: the agent's side (respond) fed a mutated initiator's transcript, and
 * the client's side (initiate) fed a mutated responder's. Seeds are real transcripts.
 */
function openingTarget(): FuzzTarget {
  const provider = runtimeCryptoProvider();
  const key = generateKey().bytes;
  let id = "";
  const toAgent: Uint8Array[] = [], toClient: Uint8Array[] = [];
  const record = async (mode: EncryptionMode) => {
    const [a, b] = memoryStreamPair();
    const sentByClient: Uint8Array[] = [], sentByAgent: Uint8Array[] = [];
    const tls = mode === EncryptionMode.Tls;
    const responding = respond(recording(b, sentByAgent), { mode, keys: [{ id, bytes: key }], provider });
    await initiate(recording(a, sentByClient), {
      provider,
      key: tls ? undefined : key,
      lookup: tls ? () => key : undefined,
      insecure: mode === EncryptionMode.None,
    });
    await responding;
    toAgent.push(concat2(Uint8Array.of(mode), sentByClient.reduce(concat2)));
    toClient.push(concat2(Uint8Array.of(mode), sentByAgent.reduce(concat2)));
  };
  return {
    name: "opening",
    async setUp() {
      id = await keyId(key);
      for (const mode of [EncryptionMode.Key, EncryptionMode.Key, EncryptionMode.Tls, EncryptionMode.None]) {
        await record(mode);
      }
    },
    input: (rng) => fromSeeds(rng, rng.chance(0.5) ? toAgent : toClient),
    async run(input) {
      const mode = (input[0] ?? 0) % 3 as EncryptionMode;
      const stream = feed(input.subarray(1), []);
      // The agent's side never throws: every failure is a typed rejection.
      const responded = await respond(stream, { mode, keys: [{ id, bytes: key }], provider });
      if (!responded.ok && !(responded.error instanceof AgentError)) throw responded.error;
      if (responded.ok) responded.frames.close();
      const tls = mode === EncryptionMode.Tls;
      try {
        const initiated = await initiate(feed(input.subarray(1), []), {
          provider,
          key: tls ? undefined : key,
          lookup: tls ? () => key : undefined,
          insecure: mode === EncryptionMode.None,
        });
        initiated.frames.close();
      } catch (e) {
        if (!(e instanceof AgentError)) throw e;
      }
    },
    tearDown: () => Promise.resolve(),
  };
}

/**
 * Records and the frame stream: a stream of records, plain or sealed, read to its end. Seeds
 * are real frames of every size class: small, bulk (one message), and several messages.
 */
function recordsTarget(): FuzzTarget {
  let aead: Aead;
  const seeds: Uint8Array[] = [];
  const keysFor = () => ({ send: new CipherState(aead), receive: new CipherState(aead) });
  const encodeFrames = async (sealed: boolean, sizes: number[]) => {
    const [a, b] = memoryStreamPair();
    const sink: Uint8Array[] = [];
    const frames = new FrameStream(new StreamReader(recording(a, sink)), sealed ? keysFor() : null);
    for (const [i, n] of sizes.entries()) {
      await frames.send({ target: 1, code: 0x100, token: i, payload: new Uint8Array(n) });
    }
    b.close();
    return concat2(Uint8Array.of(sealed ? 1 : 0), sink.reduce(concat2, new Uint8Array(0)));
  };
  return {
    name: "records",
    async setUp() {
      aead = await runtimeCryptoProvider().aesGcm(generateKey().bytes);
      for (const sealed of [false, true]) {
        for (const sizes of [[0], [5, 200], [16 * 1024], [65_519 - 16], [65_519 - 12], [70_000], [0, 3, 140_000]]) {
          seeds.push(await encodeFrames(sealed, sizes));
        }
      }
    },
    input(rng) {
      const seed = fromSeeds(rng, seeds);
      return withCuts(rng, seed);
    },
    async run(input) {
      const { cuts, body } = splitCuts(input);
      const sealed = (body[0] ?? 0) & 1;
      const frames = new FrameStream(new StreamReader(feed(body.subarray(1), cuts)), sealed ? keysFor() : null);
      try {
        for (let frame; (frame = await frames.receive()) !== null;) frames.recycle(frame.payload);
      } catch (e) {
        if (!(e instanceof AgentError)) throw e;
      } finally {
        frames.close();
      }
    },
    tearDown: () => Promise.resolve(),
  };
}

/** Field maps of random shape as any MessagePack parser of ours reads them. */
const fieldsTarget: FuzzTarget = {
  name: "fields",
  setUp: () => Promise.resolve(),
  input: (rng) => (rng.chance(0.5) ? mutate(rng, randomFieldsBytes(rng)) : randomFieldsBytes(rng)),
  run: (input) => Promise.resolve(expectTyped(() => decodeFields(input), [ProtocolError])),
  tearDown: () => Promise.resolve(),
};

/** The wire targets, each new (they hold seeds and keys). */
export function wireTargets(): FuzzTarget[] {
  return [helloTarget, replyTarget, openingTarget(), recordsTarget(), frameTarget, sessionTarget, fieldsTarget];
}
