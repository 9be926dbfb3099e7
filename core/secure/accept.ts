/**
 * The agent's side of the opening: read the hello, answer, check the key
 * proof. The caller (the listener) owns timeouts and admission; this module
 * only speaks the protocol and says precisely why a peer was turned away.
 *
 * @example
 * ```ts
 * const result = await acceptChannel(stream, { keys, provider });
 * if (result.ok) serve(result.channel); else log(result.reason);
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import { Channel, encodeRecord, readRecord } from "../wire/frame-stream.ts";
import type { CryptoProvider } from "./crypto.ts";
import { AgentError } from "../errors.ts";
import { ChannelMode, chooseVersion, decodeHello, encodeReply, HELLO_SIZE, MAX_HANDSHAKE_RECORD, PROTOCOL_VERSIONS, type VersionRange } from "../wire/hello.ts";
import { NoiseHandshake } from "./noise.ts";
import { StreamReader, type ByteStream } from "../wire/stream.ts";

/** Why a connection was turned away during the opening. */
export type RejectReason =
  | "bad-protocol-id" // wrong GUID or not our protocol at all: dropped without a reply
  | "incompatible-version" // replied with version 0, then closed
  | "bad-key" // the key proof failed
  | "malformed" // a handshake record that cannot be one (too long, too short)
  | "closed"; // the peer went away mid-handshake

/** A key the agent accepts, with its public id. */
export interface AcceptedKey {
  id: string;
  bytes: Uint8Array;
}

/** Options for {@link acceptChannel}. */
export interface AcceptOptions {
  keys: readonly AcceptedKey[];
  provider: CryptoProvider;
  /** Plaintext mode (--insecure): no key proof. */
  insecure?: boolean;
  versions?: VersionRange;
}

/** The outcome of the opening. */
export type AcceptResult =
  | { ok: true; channel: Channel; keyId: string | null; version: number }
  | { ok: false; reason: RejectReason; detail: string };

/** Runs the opening exchange on a fresh inbound stream. Never throws; closes the stream on rejection. */
export async function acceptChannel(stream: ByteStream, options: AcceptOptions): Promise<AcceptResult> {
  const versions = options.versions ?? PROTOCOL_VERSIONS;
  const reader = new StreamReader(stream);
  const reject = (reason: RejectReason, detail: string): AcceptResult => {
    stream.close();
    return { ok: false, reason, detail };
  };
  try {
    const hello = await reader.readExactly(HELLO_SIZE);
    let range: VersionRange;
    try {
      range = decodeHello(hello).range;
    } catch (e) {
      return reject("bad-protocol-id", (e as Error).message);
    }
    const version = chooseVersion(versions, range);
    const mode = options.insecure ? ChannelMode.None : ChannelMode.Key;
    const reply = encodeReply({ mode, version, agent: versions });
    await stream.write(reply);
    if (version === 0) {
      return reject("incompatible-version", `client speaks ${range.min}..${range.max}, agent ${versions.min}..${versions.max}`);
    }
    if (options.insecure) return { ok: true, channel: new Channel(reader, null), keyId: null, version };

    let message1: Uint8Array | null;
    try {
      message1 = await readRecord(reader, MAX_HANDSHAKE_RECORD);
    } catch (e) {
      if (e instanceof AgentError && e.code === "frame-too-large") return reject("malformed", e.message);
      throw e;
    }
    if (message1 === null) return reject("closed", "closed before the key exchange");
    const prologue = concat([hello, reply]);
    let found;
    try {
      found = await NoiseHandshake.respond(options.keys.map((k) => k.bytes), prologue, message1, options.provider);
    } catch (e) {
      return reject("malformed", (e as Error).message);
    }
    if (!found) {
      // A zero-length record says "authentication failed" and nothing more.
      await stream.write(encodeRecord(new Uint8Array(0))).catch(() => {});
      return reject("bad-key", "the key proof matched none of the configured keys");
    }
    const { message, keys } = await found.handshake.writeMessage2();
    await stream.write(encodeRecord(message));
    return { ok: true, channel: new Channel(reader, keys), keyId: options.keys[found.keyIndex].id, version };
  } catch (e) {
    return reject("closed", (e as Error).message);
  }
}
