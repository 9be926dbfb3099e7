/**
 * The connecting side's opening: hello, reply, key proof. Used by the client
 * library and by `agent probe`, which reports each stage on its own.
 *
 * @example
 * ```ts
 * const { channel, reply } = await openChannel(stream, { key, provider: webCryptoProvider });
 * ```
 * @module
 */
import { encodeRecord, readRecord, Channel } from "../wire/frame-stream.ts";
import type { CryptoProvider } from "./crypto.ts";
import { AuthenticationError, InsecurePeerError, ProtocolError, VersionMismatchError } from "../errors.ts";
import { ChannelMode, decodeReply, encodeHello, MAX_HANDSHAKE_RECORD, PROTOCOL_VERSIONS, type Reply, REPLY_SIZE, type VersionRange } from "../wire/hello.ts";
import { NoiseHandshake } from "./noise.ts";
import { StreamReader, type ByteStream } from "../wire/stream.ts";
import { concat } from "../bytes.ts";

/** Options for {@link openChannel}. */
export interface OpenOptions {
  /** The pre-shared key (32 bytes); required unless the agent runs --insecure and `insecure` is set. */
  key?: Uint8Array;
  provider: CryptoProvider;
  /** Accept an agent that runs without encryption. Off by default: never a silent fallback. */
  insecure?: boolean;
  versions?: VersionRange;
  /** Called as each stage completes, for diagnostics. */
  onStage?: (stage: "reply" | "authenticated") => void;
}

/** Runs the opening exchange on a fresh stream and returns the ready channel. */
export async function openChannel(stream: ByteStream, options: OpenOptions): Promise<{ channel: Channel; reply: Reply }> {
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

  if (reply.mode === ChannelMode.None) {
    if (!options.insecure) throw new InsecurePeerError();
    options.onStage?.("authenticated");
    return { channel: new Channel(reader, null), reply };
  }
  if (reply.mode !== ChannelMode.Key) throw new ProtocolError(`the agent asked for channel mode ${reply.mode}, which this client does not support here`);
  if (!options.key) throw new AuthenticationError("the agent requires a key; pass one");

  const prologue = concat([hello, replyBytes]);
  const noise = await NoiseHandshake.initiator(options.key, prologue, options.provider);
  await stream.write(encodeRecord(await noise.writeMessage1()));
  const message2 = await readRecord(reader, MAX_HANDSHAKE_RECORD).catch((e) => {
    if (e instanceof ProtocolError || e instanceof AuthenticationError) throw e;
    throw new AuthenticationError("authentication failed: the agent closed the connection during the key exchange");
  });
  if (message2 === null || message2.length === 0) throw new AuthenticationError();
  const { keys } = await noise.readMessage2(message2);
  options.onStage?.("authenticated");
  return { channel: new Channel(reader, keys), reply };
}
