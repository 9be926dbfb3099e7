/**
 * The opening exchange, one implementation per role (docs/protocol.md §2):
 * the **initiator** sends the 24-byte hello; the **responder** answers with
 * the 16-byte reply naming the mode and version, then the two run the Noise
 * NNpsk0 key proof (docs/security.md). Every connection in this project is
 * one of these, whichever side dialled:
 *
 * | connection           | initiator            | responder          | mode             |
 * |----------------------|----------------------|--------------------|------------------|
 * | inbound              | client library/probe | agent listener     | key (or none)    |
 * | outbound (in TLS)    | product's listener   | agent that dialled | tls              |
 *
 * In TLS mode the responder names its key id after the reply, the prologue
 * also covers that id and the listener certificate's fingerprint (channel
 * binding), and frames then travel unsealed because TLS already seals them.
 *
 * @example
 * ```ts
 * const [a, b] = memoryStreamPair();
 * const key = generateKey().bytes;
 * const responding = respond(b, { mode: EncryptionMode.Key, keys: [{ id: await keyId(key), bytes: key }], provider: webCryptoProvider });
 * const { frames } = await initiate(a, { key, provider: webCryptoProvider });
 * const result = await responding; // result.ok, result.frames, result.keyId
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import {
  AgentError,
  AuthenticationError,
  ConnectionClosedError,
  InsecurePeerError,
  KeyRejectedError,
  ProtocolError,
  VersionMismatchError,
} from "../errors.ts";
import { encodeRecord, FrameStream, readRecord } from "./frame-stream.ts";
import {
  CHALLENGE_SIZE,
  chooseVersion,
  decodeHello,
  decodeReply,
  encodeHello,
  encodeReply,
  EncryptionMode,
  HELLO_SIZE,
  MAX_HANDSHAKE_RECORD,
  PROTOCOL_VERSIONS,
  type Reply,
  REPLY_SIZE,
  type VersionRange,
} from "../wire/hello.ts";
import { type ByteStream, StreamReader } from "../wire/stream.ts";
import { type CryptoProvider, randomBytes } from "./crypto.ts";
import { NoiseHandshake, type TransportKeys } from "./noise.ts";

const encoder = new TextEncoder();
/** Key ids are 12 hex digits (core/secure/keys.ts); a TLS-mode responder announces one. */
const KEY_ID = /^[0-9a-f]{12}$/;
const MAX_KEY_ID_RECORD = 64;
/**
 * Bytes a responder lets a peer have unread before it authenticates: the hello and key proof are
 * under 100, so more is never needed. Past it the socket pauses (one socket read may overshoot).
 */
export const PRE_AUTH_READ_LIMIT = 4096;

/** A key the responder accepts, with its public id. */
export interface AcceptedKey {
  id: string;
  bytes: Uint8Array;
}

/** How the initiator finds the key for a TLS-mode responder's announced key id: null when unknown or revoked. */
export type KeyLookup = (keyId: string) => Uint8Array | null;

/** Options for {@link initiate}. */
export interface InitiateOptions {
  provider: CryptoProvider;
  /** Key mode: the pre-shared key (32 bytes). */
  key?: Uint8Array;
  /** TLS mode: resolves the key id the responder announces. Its presence means only TLS mode is acceptable. */
  lookup?: KeyLookup;
  /** Accept a responder that runs without encryption. Off by default: never a silent fallback. */
  insecure?: boolean;
  /** Bytes both sides add to the prologue (TLS mode: the listener certificate's SHA-256). */
  binding?: Uint8Array;
  versions?: VersionRange;
  /** Called as each stage completes, for diagnostics. */
  onStage?: (stage: "reply" | "authenticated") => void;
}

/** What a completed opening gives the initiator. */
export interface Initiated {
  frames: FrameStream;
  reply: Reply;
  /** The key id a TLS-mode responder announced. */
  keyId: string | null;
}

/** Runs the initiator's side on a fresh stream; throws a typed {@link AgentError} on any failure. */
export async function initiate(stream: ByteStream, options: InitiateOptions): Promise<Initiated> {
  const versions = options.versions ?? PROTOCOL_VERSIONS;
  const reader = new StreamReader(stream);
  const hello = encodeHello(versions);
  await stream.write(hello);
  const replyBytes = await reader.readExactly(REPLY_SIZE).catch((e) => {
    throw reader.buffered > 0 ? new ProtocolError("not an agent: the peer closed after a partial reply") : e;
  });
  const reply = decodeReply(replyBytes);
  if (reply.version === 0) throw new VersionMismatchError(versions, reply.agent);
  options.onStage?.("reply");
  const expected = options.lookup ? EncryptionMode.Tls : EncryptionMode.Key;
  if (reply.mode === EncryptionMode.None && !options.lookup) {
    if (!options.insecure) throw new InsecurePeerError();
    options.onStage?.("authenticated");
    return { frames: new FrameStream(reader, null), reply, keyId: null };
  }
  if (reply.mode !== expected) {
    throw new ProtocolError(
      `the peer asked for encryption mode ${reply.mode}; this side expects mode ${expected} here`,
    );
  }

  // The responder's fresh challenge: the key proof covers it, so a proof recorded on another connection fails here.
  const challenge = await reader.readExactly(CHALLENGE_SIZE).catch((e) => {
    throw reader.buffered > 0 ? new ProtocolError("not an agent: the peer closed after a partial challenge") : e;
  });
  let key = options.key, keyId: string | null = null, announced: Uint8Array = new Uint8Array(0);
  if (options.lookup) {
    const record = await readRecord(reader, MAX_KEY_ID_RECORD);
    if (record === null) throw new ProtocolError("the agent closed before naming its key");
    keyId = new TextDecoder().decode(record);
    if (!KEY_ID.test(keyId)) throw new ProtocolError("the agent announced a malformed key id");
    key = options.lookup(keyId) ?? undefined;
    if (!key) {
      await stream.write(encodeRecord(new Uint8Array(0))).catch(() => {});
      throw new KeyRejectedError(keyId);
    }
    announced = record;
  }
  if (!key) throw new AuthenticationError("the agent requires a key; pass one");

  const prologue = concat([hello, replyBytes, challenge, announced, options.binding ?? new Uint8Array(0)]);
  const noise = await NoiseHandshake.initiator(key, prologue, options.provider);
  await stream.write(encodeRecord(await noise.writeMessage1()));
  // Only an explicit empty record says "wrong key"; a peer that just hangs up has not said so.
  const closedEarly = () =>
    new ConnectionClosedError(
      "the agent closed the connection during the key exchange without answering the key proof " +
        "(the key was not rejected; the agent may be stopping, overloaded, or turning this address away: see its log)",
    );
  const message2 = await readRecord(reader, MAX_HANDSHAKE_RECORD).catch((e) => {
    if (e instanceof ConnectionClosedError) throw closedEarly();
    throw e;
  });
  if (message2 === null) throw closedEarly();
  if (message2.length === 0) throw new AuthenticationError();
  const { keys } = await noise.readMessage2(message2);
  options.onStage?.("authenticated");
  return { frames: new FrameStream(reader, reply.mode === EncryptionMode.Key ? keys : null), reply, keyId };
}

/** Why the responder turned a peer away. */
export type RejectReason =
  | "bad-protocol-id" // wrong GUID or not our protocol at all: dropped without a reply
  | "incompatible-version" // replied with version 0, then closed
  | "bad-key" // the key proof failed
  | "malformed" // a handshake record that cannot be one (too long, too short)
  | "busy" // `admit` turned it away after its hello
  | "closed"; // the peer went away mid-handshake

/** Options for {@link respond}. */
export interface RespondOptions {
  /** Key: Noise then sealed records. Tls: announce `keys[0]`'s id, prove it, unsealed records. None: no proof (--insecure). */
  mode: EncryptionMode;
  /** The keys accepted; a function is asked when the proof is checked, so a reload mid-handshake counts. */
  keys: readonly AcceptedKey[] | (() => readonly AcceptedKey[]);
  provider: CryptoProvider;
  binding?: Uint8Array;
  versions?: VersionRange;
  /**
   * Called once a well-formed hello has arrived, before the reply: the
   * place to wait for a handshake slot, so peers that never send one hold
   * none. False turns the peer away without a reply.
   */
  admit?: () => Promise<boolean>;
  /** The challenge sent after the reply: fixed only in test vectors; otherwise 32 fresh random bytes. */
  challenge?: Uint8Array;
  /** Told when the responder starts (true) and stops (false) waiting for the peer's key proof. */
  waitingForPeer?: (waiting: boolean) => void;
}

/** The responder's outcome. On rejection `error` says the same for callers that throw. */
export type Responded =
  | { ok: true; frames: FrameStream; keyId: string | null; version: number }
  | { ok: false; reason: RejectReason; error: AgentError };

/**
 * Waits for `admit` (a handshake slot). An initiator sends nothing between its hello and the reply, so a peer that
 * does is turned away at once ("early"): while it waits it holds no more than the bytes of one read.
 */
async function admitted(reader: StreamReader, admit?: () => Promise<boolean>): Promise<"yes" | "busy" | "early"> {
  if (reader.buffered > 0) return "early";
  if (!admit) return "yes";
  const early = reader.waitFor(1).then(() => "early" as const, () => "busy" as const);
  const granted = admit().then((ok) => ok ? "yes" as const : "busy" as const);
  return await Promise.race([granted, early]);
}

/**
 * Checks message 1 against `keys` (those current now) and answers it: message 2, or the zero-length record that
 * says "authentication failed" and nothing more.
 */
async function answerProof(
  stream: ByteStream,
  options: RespondOptions,
  keys: readonly AcceptedKey[],
  prologue: Uint8Array,
  message1: Uint8Array,
): Promise<
  { ok: true; transport: TransportKeys; keyId: string } | { ok: false; reason: RejectReason; error: AgentError }
> {
  let found;
  try {
    found = await NoiseHandshake.respond(keys.map((k) => k.bytes), prologue, message1, options.provider);
  } catch (e) {
    return {
      ok: false,
      reason: "malformed",
      error: e instanceof AgentError ? e : new ProtocolError((e as Error).message),
    };
  }
  if (!found) {
    await stream.write(encodeRecord(new Uint8Array(0))).catch(() => {});
    const why = options.mode === EncryptionMode.Tls
      ? "authentication failed: the listener does not hold this agent's key"
      : "the key proof matched none of the configured keys";
    return { ok: false, reason: "bad-key", error: new AuthenticationError(why) };
  }
  const { message, keys: transport } = await found.handshake.writeMessage2();
  await stream.write(encodeRecord(message));
  return { ok: true, transport, keyId: keys[found.keyIndex].id };
}

/** Runs the responder's side on a fresh stream. Never throws; closes the stream on rejection. */
export async function respond(stream: ByteStream, options: RespondOptions): Promise<Responded> {
  const versions = options.versions ?? PROTOCOL_VERSIONS;
  const reader = new StreamReader(stream);
  const currentKeys = () => typeof options.keys === "function" ? options.keys() : options.keys;
  const reject = (reason: RejectReason, error: AgentError): Responded => {
    stream.close();
    return { ok: false, reason, error };
  };
  stream.limitReads?.(PRE_AUTH_READ_LIMIT);
  try {
    const hello = await reader.readExactly(HELLO_SIZE);
    let range: VersionRange;
    try {
      range = decodeHello(hello).range;
    } catch (e) {
      return reject("bad-protocol-id", e as AgentError);
    }
    const admission = await admitted(reader, options.admit);
    if (admission === "early") return reject("malformed", new ProtocolError("the peer sent data before the reply"));
    if (admission === "busy") return reject("busy", new ConnectionClosedError("no handshake slot was free"));
    const version = chooseVersion(versions, range);
    const reply = encodeReply({ mode: options.mode, version, agent: versions });
    if (version === 0) {
      await stream.write(reply);
      return reject("incompatible-version", new VersionMismatchError(versions, range));
    }
    if (options.mode === EncryptionMode.None) {
      await stream.write(reply);
      stream.limitReads?.(null);
      return { ok: true, frames: new FrameStream(reader, null), keyId: null, version };
    }

    // Fresh for this connection and bound into the key proof (the prologue): a replayed message 1 fails.
    const challenge = options.challenge ?? randomBytes(CHALLENGE_SIZE);
    const announced = options.mode === EncryptionMode.Tls ? encoder.encode(currentKeys()[0].id) : new Uint8Array(0);
    await stream.write(concat([reply, challenge, ...(announced.length > 0 ? [encodeRecord(announced)] : [])]));
    let message1: Uint8Array | null;
    try {
      options.waitingForPeer?.(true);
      message1 = await readRecord(reader, MAX_HANDSHAKE_RECORD);
      options.waitingForPeer?.(false);
    } catch (e) {
      if (e instanceof AgentError && e.code === "record-too-large") return reject("malformed", e);
      throw e;
    }
    if (message1 === null) return reject("closed", new ConnectionClosedError("closed before the key exchange"));
    // A zero-length record from an initiator means "I do not accept your key" (TLS mode).
    if (message1.length === 0) return reject("bad-key", new KeyRejectedError(currentKeys()[0]?.id ?? "?"));
    const prologue = concat([hello, reply, challenge, announced, options.binding ?? new Uint8Array(0)]);
    const answered = await answerProof(stream, options, currentKeys(), prologue, message1);
    if (!answered.ok) return reject(answered.reason, answered.error);
    stream.limitReads?.(null);
    const sealed = options.mode === EncryptionMode.Key ? answered.transport : null;
    return { ok: true, frames: new FrameStream(reader, sealed), keyId: answered.keyId, version };
  } catch (e) {
    return reject("closed", e instanceof AgentError ? e : new ConnectionClosedError((e as Error).message));
  }
}
