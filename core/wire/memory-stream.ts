/**
 * Two connected in-memory {@link ByteStream}s: the local agent talks to its
 * in-process session manager through them, and tests use them as a socket-free peer.
 * @module
 */
import type { ByteStream } from "./stream.ts";

class Pipe {
  chunks: Uint8Array[] = [];
  ended = false;
  wake: (() => void) | null = null;
  push(c: Uint8Array) {
    if (this.ended) return;
    this.chunks.push(c.slice());
    this.notify();
  }
  end() {
    this.ended = true;
    this.notify();
  }
  notify() {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

export function memoryStreamPair(): [ByteStream, ByteStream] {
  const ab = new Pipe(), ba = new Pipe();
  let markClosed!: () => void;
  const closed = new Promise<void>((r) => (markClosed = r));
  const side = (incoming: Pipe, outgoing: Pipe): ByteStream => ({
    closed,
    async read() {
      while (incoming.chunks.length === 0) {
        if (incoming.ended) return null;
        await new Promise<void>((r) => (incoming.wake = r));
      }
      return incoming.chunks.shift()!;
    },
    write(data) {
      if (outgoing.ended) return Promise.reject(new Error("closed"));
      outgoing.push(data);
      return Promise.resolve();
    },
    close() {
      incoming.end();
      outgoing.end();
      markClosed();
    },
  });
  return [side(ba, ab), side(ab, ba)];
}
