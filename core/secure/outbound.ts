/**
 * The opening exchange in outbound (TLS) mode, run inside a TLS connection
 * that the agent dialled. The product's listener plays the client, as in
 * inbound mode; the agent announces its key id, and the two run the same
 * Noise NNpsk0 key proof with the listener as initiator. The proof's
 * prologue includes the listener certificate's SHA-256 fingerprint, so it
 * cannot be relayed through a different TLS endpoint. Frames then travel as
 * plain records: TLS already encrypts them. docs/protocol.md §2.
 *
 * @example
 * ```ts
 * // agent side, after TLS verified the listener:
 * const channel = await answerListener(tlsStream, { key, provider, listenerFingerprint });
 * // listener side:
 * const { client, keyId } = await greetAgent(tlsStream, { lookup, provider, listenerFingerprint });
 * ```
 * @module
 */
import { concat } from "../bytes.ts";
import { Channel, encodeRecord, readRecord } from "../wire/frame-stream.ts";
import { AgentClient } from "../client/agent-client.ts";
import type { CryptoProvider } from "./crypto.ts";
import { AgentError, AuthenticationError, ProtocolError, VersionMismatchError } from "../errors.ts";
import {
  ChannelMode, chooseVersion, decodeHello, decodeReply, encodeHello, encodeReply, HELLO_SIZE, MAX_HANDSHAKE_RECORD,
  PROTOCOL_VERSIONS, REPLY_SIZE,
} from "../wire/hello.ts";
import { NoiseHandshake } from "./noise.ts";
import { type ByteStream, StreamReader } from "../wire/stream.ts";

const encoder = new TextEncoder();

/** The listener did not accept this agent's key. */
export class KeyRejectedError extends AgentError {
  constructor(keyId: string) {
    super("key-rejected", `the listener does not accept this agent's key (key id ${keyId}): register it there, or check it was not revoked`);
  }
}

/** Agent side: answers the listener's hello, announces the key id and proves the key. */
export async function answerListener(
  stream: ByteStream,
  options: { key: { id: string; bytes: Uint8Array }; provider: CryptoProvider; listenerFingerprint: Uint8Array },
): Promise<Channel> {
  const reader = new StreamReader(stream);
  const hello = await reader.readExactly(HELLO_SIZE);
  const { range } = decodeHello(hello);
  const version = chooseVersion(PROTOCOL_VERSIONS, range);
  const reply = encodeReply({ mode: ChannelMode.Tls, version, agent: PROTOCOL_VERSIONS });
  const keyId = encoder.encode(options.key.id);
  await stream.write(concat([reply, encodeRecord(keyId)]));
  if (version === 0) throw new VersionMismatchError(PROTOCOL_VERSIONS, range);
  const message1 = await readRecord(reader, MAX_HANDSHAKE_RECORD);
  if (message1 === null || message1.length === 0) throw new KeyRejectedError(options.key.id);
  const prologue = concat([hello, reply, keyId, options.listenerFingerprint]);
  const found = await NoiseHandshake.respond([options.key.bytes], prologue, message1, options.provider);
  if (!found) throw new AuthenticationError("authentication failed: the listener does not hold this agent's key");
  const { message } = await found.handshake.writeMessage2();
  await stream.write(encodeRecord(message));
  return new Channel(reader, null);
}

/** How the listener resolves an announced key id: the key, or null when unknown or revoked. */
export type KeyLookup = (keyId: string) => Uint8Array | null;

/** Listener side: greets a freshly accepted agent, checks its key, and returns a ready client. */
export async function greetAgent(
  stream: ByteStream,
  options: { lookup: KeyLookup; provider: CryptoProvider; listenerFingerprint: Uint8Array },
): Promise<{ client: AgentClient; keyId: string }> {
  const reader = new StreamReader(stream);
  const hello = encodeHello(PROTOCOL_VERSIONS);
  await stream.write(hello);
  const replyBytes = await reader.readExactly(REPLY_SIZE);
  const reply = decodeReply(replyBytes);
  if (reply.version === 0) throw new VersionMismatchError(PROTOCOL_VERSIONS, reply.agent);
  if (reply.mode !== ChannelMode.Tls) throw new ProtocolError(`an outbound agent must answer in TLS mode, not mode ${reply.mode}`);
  const keyIdBytes = await readRecord(reader, 64);
  if (keyIdBytes === null) throw new ProtocolError("the agent closed before naming its key");
  const keyId = new TextDecoder().decode(keyIdBytes);
  if (!/^[0-9a-f]{12}$/.test(keyId)) throw new ProtocolError("the agent announced a malformed key id");
  const key = options.lookup(keyId);
  if (!key) {
    await stream.write(encodeRecord(new Uint8Array(0))).catch(() => {});
    throw new KeyRejectedError(keyId);
  }
  const prologue = concat([hello, replyBytes, keyIdBytes, options.listenerFingerprint]);
  const noise = await NoiseHandshake.initiator(key, prologue, options.provider);
  await stream.write(encodeRecord(await noise.writeMessage1()));
  const message2 = await readRecord(reader, MAX_HANDSHAKE_RECORD);
  if (message2 === null || message2.length === 0) throw new AuthenticationError();
  await noise.readMessage2(message2);
  return { client: AgentClient.wrap(new Channel(reader, null), reply), keyId };
}
