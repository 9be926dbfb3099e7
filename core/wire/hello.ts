/**
 * The opening exchange, before any encryption: a 24-byte hello from the
 * connecting side and a 16-byte reply from the agent, then (key and TLS modes) the agent's 32-byte challenge. Layout in
 * docs/protocol.md §2.
 *
 * @example
 * ```ts
 * const hello = encodeHello({ min: 1, max: 1 });
 * const { range } = decodeHello(hello);
 * ```
 * @module
 */
import { equals } from "../bytes.ts";
import { ProtocolError } from "../errors.ts";

/** Our protocol id: GUID 5f1c0d3e-8a47-4b9e-9c21-6e0a7d4f2b18, as its 16 bytes in string order. */
export const PROTOCOL_ID: Uint8Array = new Uint8Array([
  0x5f,
  0x1c,
  0x0d,
  0x3e,
  0x8a,
  0x47,
  0x4b,
  0x9e,
  0x9c,
  0x21,
  0x6e,
  0x0a,
  0x7d,
  0x4f,
  0x2b,
  0x18,
]);

/** The TCP port agents listen on unless told otherwise (as the Inedo Agent's). */
export const DEFAULT_PORT = 46336;

/**
 * Protocol versions this build speaks. Version 3: the agent follows its reply with a fresh challenge the key
 * proof covers, so a recorded opening cannot be replayed; keys may be limited to products; file listings carry
 * modes and symlinks, and processes may run on a terminal. Version 4 adds the meta messages that push a new agent
 * binary (UpdateBegin, UpdateData, UpdateCommit, UpdateAbort) and their error codes, and nothing else: a version-3
 * peer never sends them, so an agent and a client of this build still speak 3 with an older peer
 * (docs/protocol.md §2 lists every version's changes). Version 2 (no challenge) is refused: its first key message
 * could be replayed by anyone who had seen one connection (docs/security.md, "Replay").
 */
export const PROTOCOL_VERSIONS: VersionRange = { min: 3, max: 4 };

/** Size of the hello: protocol id, lowest and highest version. */
export const HELLO_SIZE = 24;
/** Size of the reply: mode, chosen version, agent's lowest and highest version. */
export const REPLY_SIZE = 16;
/** Size of the responder's challenge after a reply that chose a version (key and TLS modes). */
export const CHALLENGE_SIZE = 32;
/** Largest key-exchange record either side accepts (the real ones are 48 bytes). */
export const MAX_HANDSHAKE_RECORD = 1024;

/** An inclusive range of protocol versions. */
export interface VersionRange {
  min: number;
  max: number;
}

/** How the channel is protected after the reply. */
export enum EncryptionMode {
  /** No encryption; only with --insecure on both sides, loopback only. */
  None = 0,
  /** TLS wraps the connection (outbound mode); the key proof runs inside it. */
  Tls = 1,
  /** Noise NNpsk0 with the pre-shared key, then AES-256-GCM records. */
  Key = 2,
}

/** The agent's answer to a hello. `version` 0 means no version in common. */
export interface Reply {
  mode: EncryptionMode;
  version: number;
  agent: VersionRange;
}

/** Encodes the 24-byte hello. */
export function encodeHello(range: VersionRange, id: Uint8Array = PROTOCOL_ID): Uint8Array {
  const out = new Uint8Array(HELLO_SIZE);
  out.set(id, 0);
  const view = new DataView(out.buffer);
  view.setInt32(16, range.min, true);
  view.setInt32(20, range.max, true);
  return out;
}

/** Decodes a hello; throws {@link ProtocolError} on a foreign protocol id or a nonsensical range. */
export function decodeHello(bytes: Uint8Array): { range: VersionRange } {
  if (bytes.length !== HELLO_SIZE || !equals(bytes.subarray(0, 16), PROTOCOL_ID)) {
    throw new ProtocolError("not an agent client: wrong protocol id");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const range = { min: view.getInt32(16, true), max: view.getInt32(20, true) };
  if (range.min < 1 || range.max < range.min) {
    throw new ProtocolError(`invalid version range ${range.min}..${range.max}`);
  }
  return { range };
}

/** Encodes the 16-byte reply. */
export function encodeReply(reply: Reply): Uint8Array {
  const out = new Uint8Array(REPLY_SIZE);
  const view = new DataView(out.buffer);
  view.setInt32(0, reply.mode, true);
  view.setInt32(4, reply.version, true);
  view.setInt32(8, reply.agent.min, true);
  view.setInt32(12, reply.agent.max, true);
  return out;
}

/** Decodes a reply; throws {@link ProtocolError} when the bytes cannot be one. */
export function decodeReply(bytes: Uint8Array): Reply {
  if (bytes.length !== REPLY_SIZE) throw new ProtocolError("not an agent: short reply");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const mode = view.getInt32(0, true);
  const version = view.getInt32(4, true);
  const agent = { min: view.getInt32(8, true), max: view.getInt32(12, true) };
  const sane = (mode === 0 || mode === 1 || mode === 2) && agent.min >= 1 && agent.max >= agent.min &&
    (version === 0 || (version >= agent.min && version <= agent.max));
  if (!sane) throw new ProtocolError("not an agent: the reply is not a valid handshake reply");
  return { mode, version, agent };
}

/** The highest version both ranges contain, or 0 when they do not overlap. */
export function chooseVersion(ours: VersionRange, theirs: VersionRange): number {
  const v = Math.min(ours.max, theirs.max);
  return v >= Math.max(ours.min, theirs.min) ? v : 0;
}
