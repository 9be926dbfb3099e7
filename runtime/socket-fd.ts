/**
 * The descriptor number behind a listening `node:net` server, which a hand-over passes to the
 * next agent version (agent/upgrade.ts). Node exposes it on the server's handle; Deno's Node
 * layer does not, so there it is found the way `ss -lp` finds it: the socket's inode in
 * /proc/net/tcp{,6} (by local port, state LISTEN), matched against /proc/self/fd.
 *
 * @example
 * ```ts
 * const server = net.createServer().listen(0, "127.0.0.1", () => console.log(listeningFd(server)));
 * ```
 * @module
 */
import fs from "node:fs";
import type net from "node:net";

/** TCP state LISTEN in /proc/net/tcp. */
const LISTEN = "0A";

/** The descriptor of `server`'s listening socket; throws when it cannot be found. */
export function listeningFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd === "number" && fd >= 0) return fd;
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the server is not listening on a TCP port");
  const inodes = listeningInodes(address.port);
  for (const name of fs.readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // closed since the listing
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode && inodes.has(inode)) return Number(name);
  }
  throw new Error(`cannot find the descriptor of the socket listening on port ${address.port}`);
}

/** Inodes of the sockets listening on `port`, IPv4 and IPv6. */
function listeningInodes(port: number): Set<string> {
  const found = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      if (parseInt(f[1].split(":")[1], 16) === port) found.add(f[9]);
    }
  }
  return found;
}
