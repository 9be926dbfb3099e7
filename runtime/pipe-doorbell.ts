/**
 * A doorbell (core/doorbell.ts) over a pair of pipes: one byte per ring
 * outgoing; any bytes incoming wake the channel; the incoming pipe ending, or
 * the outgoing one failing, means the peer process is gone.
 *
 * @example
 * ```ts
 * const bell = hostDoorbell();                              // the host's side: its stdin and stdout
 * const bell = pipeDoorbell(child.stdout!, child.stdin!);   // the agent's side
 * ```
 * @module
 */
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import { setImmediate } from "node:timers";
import type { Doorbell } from "../core/shm/channel-end.ts";
import { isDeno } from "./native.ts";

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

/**
 * The host's doorbell: its stdin in, its stdout out. On Deno stdin is read as a socket on fd 0, which
 * the event loop watches itself: Deno's `process.stdin` reads through a helper thread, a second
 * wake-up for every doorbell (a doorbell round trip to a Deno process took 26 µs so, 14 µs as a socket).
 */
export function hostDoorbell(): Doorbell {
  const incoming = isDeno() ? new net.Socket({ fd: 0, readable: true, writable: false }) : process.stdin;
  return pipeDoorbell(incoming, process.stdout);
}

/**
 * Resolves at the next turn of this process's event loop, once pending I/O has been handled: how a
 * channel end polls its ring while it expects a reply (ChannelEndOptions.nextTurn).
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
