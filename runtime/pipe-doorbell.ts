/**
 * A doorbell (core/doorbell.ts) over a pair of pipes: one byte per ring
 * outgoing; any bytes incoming wake the channel; the incoming pipe ending, or
 * the outgoing one failing, means the peer process is gone.
 *
 * @example
 * ```ts
 * const bell = pipeDoorbell(process.stdin, process.stdout); // the host's side
 * const bell = pipeDoorbell(child.stdout!, child.stdin!);   // the agent's side
 * ```
 * @module
 */
import type { Readable, Writable } from "node:stream";
import type { Doorbell } from "../core/shm/channel-end.ts";

const BELL = new Uint8Array([1]);

export function pipeDoorbell(incoming: Readable, outgoing: Writable): Doorbell {
  outgoing.on("error", () => {}); // reported through onRing below
  return {
    ring: () => void (outgoing.writable && outgoing.write(BELL)),
    onRing(listener) {
      incoming.on("data", () => listener(false));
      incoming.on("end", () => listener(true));
      incoming.on("close", () => listener(true));
      outgoing.on("error", () => listener(true));
    },
  };
}
