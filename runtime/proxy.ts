/**
 * Outbound through an HTTP proxy: the agent asks the proxy to `CONNECT` to
 * the product's listener, then runs TLS with the listener end to end through
 * that tunnel (the proxy sees neither certificate checks nor traffic). Which
 * proxy, if any, follows the usual conventions: `--proxy`, else
 * `HTTPS_PROXY`/`https_proxy`, minus the hosts `NO_PROXY`/`no_proxy` lists.
 *
 * @example
 * ```ts
 * const proxy = proxyFor("product.example.com", { HTTPS_PROXY: "http://proxy.corp:3128" });
 * const socket = await connectThroughProxy(proxy!, "product.example.com", 46340, 10_000);
 * ```
 * @module
 */
import net from "node:net";
import { concat, indexOfNeedle } from "../core/bytes.ts";
import { ConfigError, DialError, ProxyError } from "./errors.ts";

const HEAD_END = new TextEncoder().encode("\r\n\r\n");

/** Parses a proxy setting: `http://[user:password@]host:port` (a bare `host:port` is taken as http). */
export function parseProxy(value: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch (e) {
    throw new ConfigError(`${where} is not a proxy URL like http://proxy.example.com:3128: "${value}"`, { cause: e });
  }
  if (url.protocol !== "http:") {
    throw new ConfigError(`${where}: only http:// proxies (HTTP CONNECT) are supported, not ${url.protocol}//`);
  }
  return url;
}

/** True when NO_PROXY-style `list` (comma-separated hosts, .domains, IPs, or *) covers `host`. */
export function bypassesProxy(host: string, list: string | undefined): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  for (const raw of (list ?? "").split(",")) {
    const entry = raw.trim().toLowerCase().replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
    if (!entry) continue;
    if (entry === "*") return true;
    const domain = entry.replace(/^\*?\./, "");
    if (h === domain || h.endsWith(`.${domain}`)) return true;
  }
  return false;
}

/** The proxy to use for `host`: the explicit one, else HTTPS_PROXY; null when none or when NO_PROXY covers the host. */
export function proxyFor(host: string, env: Record<string, string | undefined>, explicit?: string): URL | null {
  const value = explicit ?? env.HTTPS_PROXY ?? env.https_proxy;
  if (!value) return null;
  if (bypassesProxy(host, env.NO_PROXY ?? env.no_proxy)) return null;
  return parseProxy(value, explicit !== undefined ? "--proxy" : "HTTPS_PROXY");
}

/** A TCP connection to `host:port` tunnelled through `proxy` with HTTP CONNECT. */
export function connectThroughProxy(
  proxy: URL,
  host: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<net.Socket> {
  const where = `the proxy ${proxy.hostname}:${proxy.port || 80}`;
  const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: proxy.hostname.replace(/^\[|\]$/g, ""), port: Number(proxy.port || 80) });
    const fail = (e: ProxyError | DialError) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
      socket.destroy();
      reject(e);
    };
    const stop = () => fail(new DialError("agent-stopped", `the dial through ${where} was stopped`));
    const timer = setTimeout(
      () => fail(new ProxyError("timeout", `${where} did not open a tunnel to ${target} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop, { once: true });
    socket.once(
      "error",
      (e: NodeJS.ErrnoException) =>
        fail(
          new ProxyError(
            "unreachable",
            `cannot reach ${where}: ${e.code === "ECONNREFUSED" ? "connection refused" : e.message}`,
            { cause: e },
          ),
        ),
    );
    socket.once("connect", () => {
      const auth = proxy.username
        ? `Proxy-Authorization: Basic ${
          btoa(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`)
        }\r\n`
        : "";
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
    });
    let received: Uint8Array = new Uint8Array(0);
    const onData = (chunk: Uint8Array) => {
      received = concat([received, chunk]);
      const end = indexOfNeedle(received, HEAD_END);
      if (end < 0) {
        if (received.length > 16 * 1024) {
          fail(new ProxyError("refused", `${where} sent an oversized answer to CONNECT`));
        }
        return;
      }
      socket.off("data", onData);
      const refusal = connectRefusal(received.subarray(0, end), where, target);
      if (refusal) return fail(refusal);
      if (received.length > end + 4) socket.unshift(received.subarray(end + 4)); // nothing is expected before TLS starts; kept anyway
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
      socket.removeAllListeners("error");
      resolve(socket);
    };
    socket.on("data", onData);
  });
}

/** Why the proxy's answer to CONNECT (its head, without the blank line) refuses the tunnel; null for a 200. */
function connectRefusal(head: Uint8Array, where: string, target: string): ProxyError | null {
  const status = /^HTTP\/1\.[01] (\d{3})([^\r\n]*)/.exec(new TextDecoder("latin1").decode(head));
  if (status && status[1] === "200") return null;
  return new ProxyError(
    "refused",
    `${where} refused CONNECT to ${target}: ${status ? `${status[1]}${status[2]}` : "not an HTTP answer"}`,
  );
}
