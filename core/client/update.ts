/**
 * Pushing a new agent binary (docs/protocol.md §5 "Pushed updates"): announce
 * its size, SHA-256 and signature, stream it in chunks with several in flight
 * (as file writes stream), then commit; the agent checks the digest as the
 * bytes pass and answers once the new binary has taken over, or says why not.
 * Runtime-free: the digest is WebCrypto's.
 *
 * @example
 * ```ts
 * const outcome = await pushUpdate(client, binary, { signature });
 * console.log(outcome.version, outcome.build.slice(0, 12));
 * ```
 * @module
 */
import { concat, toHex } from "../bytes.ts";
import { AbortedError, AgentError, ProtocolError } from "../errors.ts";
import { META_TARGET } from "../wire/frame.ts";
import {
  decodeFields,
  encodeFields,
  encodeUpdateData,
  MetaCode,
  UPDATE_PROTOCOL_VERSION,
  type UpgradeOutcome,
} from "../wire/messages.ts";
import { abortable, type CallOptions, throwIfAborted } from "./abort.ts";
import type { AgentClient } from "./agent-client.ts";
import { TRANSFER_CHUNK, TRANSFER_WINDOW_MAX_BYTES } from "./files.ts";
import { TransferWindow } from "./window.ts";

/**
 * How {@link pushUpdate} sends the binary.
 *
 * @example
 * ```ts
 * const options: UpdateOptions = { signature: process.env.RELEASE_SIGNATURE, onProgress: (sent, size) => console.log(sent, size) };
 * console.log(options.signature === undefined); // true where no release signature is at hand
 * ```
 */
export interface UpdateOptions extends CallOptions {
  /**
   * The release signature (128 hex digits, from `agent release sign FILE`): required by agents whose
   * operator configured release keys, ignored by the others.
   */
  signature?: string;
  /** The binary's SHA-256 as hex, when already known (else computed here). */
  sha256?: string;
  /** Called as the agent confirms bytes written: bytes so far, and the total. */
  onProgress?: (sent: number, size: number) => void;
}

/** Sends `binary` to the agent at the other end of `client` as its new program; resolves once it has taken over. */
export async function pushUpdate(
  client: AgentClient,
  binary: Uint8Array,
  options: UpdateOptions = {},
): Promise<UpgradeOutcome> {
  const { signal } = options;
  if (client.version < UPDATE_PROTOCOL_VERSION) {
    throw new AgentError(
      "incompatible-version",
      `the agent speaks protocol version ${client.version}, which has no pushed updates (they need version ` +
        `${UPDATE_PROTOCOL_VERSION}): install this one by hand on the server`,
    );
  }
  throwIfAborted(signal);
  const sha256 = options.sha256?.toLowerCase() ?? await sha256Hex(binary);
  const begin = { size: binary.length, sha256, ...(options.signature ? { signature: options.signature.trim() } : {}) };
  const started = await abortable(client.request(META_TARGET, MetaCode.UpdateBegin, encodeFields(begin)), signal);
  const { updateId, maxChunkBytes } = decodeFields<{ updateId: number; maxChunkBytes: number }>(started.payload);
  if (typeof updateId !== "number" || typeof maxChunkBytes !== "number" || maxChunkBytes < 1) {
    throw new ProtocolError("the agent's UpdateBegin reply lacks updateId or maxChunkBytes");
  }
  try {
    await sendChunks(client, updateId, binary, Math.min(TRANSFER_CHUNK, maxChunkBytes), options);
  } catch (e) {
    // Refused or cut: the agent dropped it already; aborted here: tell it to.
    if (e instanceof AbortedError) {
      void client.request(META_TARGET, MetaCode.UpdateAbort, encodeFields({ updateId })).catch(() => {});
    }
    throw e;
  }
  const committed = client.request(META_TARGET, MetaCode.UpdateCommit, encodeFields({ updateId }));
  const reply = await abortable(committed, signal);
  return decodeFields<UpgradeOutcome>(reply.payload);
}

/** The SHA-256 of `bytes`, as hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)));
}

/** Streams the binary as UpdateData, keeping the window's worth of chunks in flight. */
async function sendChunks(
  client: AgentClient,
  updateId: number,
  binary: Uint8Array,
  chunkBytes: number,
  options: UpdateOptions,
): Promise<void> {
  const window = new TransferWindow(chunkBytes, TRANSFER_WINDOW_MAX_BYTES);
  const inflight: Promise<unknown>[] = [];
  for (let offset = 0; offset < binary.length; offset += chunkBytes) {
    throwIfAborted(options.signal);
    const piece = binary.subarray(offset, Math.min(binary.length, offset + chunkBytes));
    const sent = window.sent();
    const payload = concat(encodeUpdateData(updateId, offset, piece));
    const request = client.request(META_TARGET, MetaCode.UpdateData, payload).then((reply) => {
      window.done(sent, piece.length);
      options.onProgress?.(decodeFields<{ received: number }>(reply.payload).received, binary.length);
    });
    request.catch(() => {}); // awaited below, in order; meanwhile a failure must not be unhandled
    inflight.push(request);
    while (inflight.length >= window.requests) await abortable(inflight.shift()!, options.signal);
  }
  for (const request of inflight) await abortable(request, options.signal);
}
