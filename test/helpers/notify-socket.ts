// A Unix datagram socket that collects what a process sends to NOTIFY_SOCKET, as systemd would receive it.
// Node has no such socket, so it is made through the C library, the way runtime/sd-notify.ts sends.
import fs from "node:fs";
import path from "node:path";
import { bindC, libcName } from "../../runtime/native.ts";
import { tempDir } from "./agent-process.ts";

const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;

/**
 * A bound receiving socket: `path` for NOTIFY_SOCKET, `messages` so far, `close()` when done. It reads
 * all the time, as systemd does, unless `drain` is false (a systemd that does not read).
 */
export function notifySocket(options: { drain?: boolean } = {}) {
  const libc = bindC(libcName(), {
    socket: "int socket(int domain, int type, int protocol)",
    bind: "int bind(int fd, const uint8_t *addr, unsigned int n)",
    recv: "int recv(int fd, uint8_t *buf, size_t len, int flags)",
    close: "int close(int fd)",
  });
  const file = path.join(tempDir("agent-notify-"), "notify");
  const name = new TextEncoder().encode(file);
  const address = new Uint8Array(2 + name.length + 1);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0 || libc.bind(fd, address, address.length) !== 0) throw new Error("cannot bind the notify socket");
  const messages: string[] = [];
  const buffer = new Uint8Array(4096);
  const drain = () => {
    for (
      let n = libc.recv(fd, buffer, buffer.length, 0) as number;
      n > 0;
      n = libc.recv(fd, buffer, 4096, 0) as number
    ) {
      messages.push(new TextDecoder().decode(buffer.subarray(0, n)));
    }
  };
  const reading = options.drain === false ? null : setInterval(drain, 20);
  return {
    path: file,
    /** Everything received so far, in order. */
    messages(): string[] {
      drain();
      return messages;
    },
    /** Waits (at most `timeoutMs`) until `done` holds for the messages received. */
    async waitFor(done: (messages: string[]) => boolean, timeoutMs = 10_000): Promise<string[]> {
      const until = Date.now() + timeoutMs;
      while (!done(this.messages()) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return messages;
    },
    close() {
      if (reading) clearInterval(reading);
      libc.close(fd);
      fs.rmSync(file, { force: true });
    },
  };
}
