/**
 * Loopback socket helpers for tests: raw connections, scripted fake servers
 * and a recording relay.
 * @module
 */
import net from "node:net";
import { dialTcp, socketStream } from "../../runtime/tcp.ts";
import type { ByteStream } from "../../core/wire/stream.ts";

export { dialTcp, socketStream };

/** Dials the agent on loopback, optionally from a chosen 127.x source address. */
export function dial(port: number, localAddress?: string): Promise<ByteStream> {
  return dialTcp("127.0.0.1", port, { timeoutMs: 5000, localAddress });
}

/** A raw socket that collects what it receives and records when the peer closed. */
export async function rawConnect(port: number, localAddress?: string) {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const received: Uint8Array[] = [];
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  socket.on("data", (d) => received.push(d));
  socket.on("error", () => {});
  return {
    socket,
    write: (b: Uint8Array | string) => socket.write(b),
    received: () => Buffer.concat(received),
    /** Resolves true if the peer closed within `ms`. */
    closedWithin: (ms: number) =>
      Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]),
    close: () => socket.destroy(),
  };
}

/** A loopback TCP server whose connections are handled by `onSocket`; close() ends it and its sockets. */
export async function fakeServer(onSocket: (s: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A relay in front of `targetPort` that records every byte in both directions, like a packet capture. */
export async function recordingRelay(targetPort: number) {
  const captured: Uint8Array[] = [], fromClients: Uint8Array[] = [];
  const relay = await fakeServer((client) => {
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort });
    upstream.on("error", () => client.destroy());
    client.on("data", (d) => {
      captured.push(d);
      fromClients.push(d);
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      captured.push(d);
      client.write(d);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  return {
    port: relay.port,
    captured: () => Buffer.concat(captured),
    /** Only what clients sent, in order. */
    sentByClients: () => Buffer.concat(fromClients),
    close: relay.close,
  };
}

/**
 * A small HTTP CONNECT proxy on loopback: it records each CONNECT target and tunnels to it, or
 * answers every CONNECT with `refuse` (e.g. "403 Forbidden") when given.
 */
export async function connectProxy(options: { refuse?: string } = {}) {
  const requests: string[] = [];
  const proxy = await fakeServer((client) => {
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      client.off("data", onData);
      const target = /^CONNECT (\S+) HTTP\/1\.1/.exec(head)?.[1];
      if (!target) return void client.end("HTTP/1.1 400 Bad Request\r\n\r\n");
      requests.push(target);
      if (options.refuse) return void client.end(`HTTP/1.1 ${options.refuse}\r\n\r\n`);
      const [, host, port] = /^\[?([^\]]+)\]?:(\d+)$/.exec(target)!;
      const upstream = net.connect({ host, port: Number(port) }, () => {
        client.write("HTTP/1.1 200 Connection established\r\n\r\n");
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
    };
    client.on("data", onData);
  });
  return { ...proxy, requests, url: `http://127.0.0.1:${proxy.port}` };
}
