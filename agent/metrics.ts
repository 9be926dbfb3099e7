/**
 * The opt-in health and metrics endpoint (`--metrics 127.0.0.1:9464`), plain
 * HTTP for local scrapers and probes:
 *
 * - `GET /healthz`: 200 while the process is up.
 * - `GET /readyz`: 200 when it listens (if it should) and every outbound
 *   target is connected; 503 with the reasons otherwise.
 * - `GET /metrics`: Prometheus text exposition format 0.0.4.
 *
 * @example
 * ```ts
 * const endpoint = await serveMetrics("127.0.0.1", 9464, () => server.status(), () => counters);
 * ```
 * @module
 */
import http from "node:http";
import type { AgentStatus } from "./server.ts";
import { escapeControls } from "../core/text.ts";

/** Counters the agent keeps besides its status. */
export interface MetricCounters {
  bytesReceived: number;
  bytesSent: number;
  internalErrors: number;
  logLinesDropped: number;
}

/** Why the agent is not ready, or an empty list when it is. */
export function notReady(status: AgentStatus, shouldListen: boolean): string[] {
  const reasons: string[] = [];
  if (shouldListen && !status.listen) reasons.push("not listening yet");
  for (const t of status.outbound) {
    if (t.state !== "connected") {
      reasons.push(`outbound ${t.address} is ${t.state}${t.lastError ? `: ${escapeControls(t.lastError)}` : ""}`);
    }
  }
  return reasons;
}

const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

type Sample = [labels: Record<string, string>, value: number];

/** Prometheus text lines of one metric: its help, its type and its samples. */
function metric(name: string, type: "gauge" | "counter", help: string, samples: Sample[]): string[] {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const [labels, value] of samples) {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`).join(",");
    lines.push(`${name}${l ? `{${l}}` : ""} ${value}`);
  }
  return lines;
}

/** One sample without labels. */
const only = (value: number): Sample[] => [[{}, value]];

/** The status and counters in Prometheus text format. */
export function prometheusText(status: AgentStatus, counters: MetricCounters, shouldListen: boolean): string {
  return [
    ...agentMetrics(status, shouldListen),
    ...connectionMetrics(status),
    ...sessionMetrics(status.sessions),
    ...counterMetrics(counters),
    ...metric(
      "agent_outbound_connected",
      "gauge",
      "1 when the outbound target is connected, else 0.",
      status.outbound.map((t) => [{ address: t.address, state: t.state }, t.state === "connected" ? 1 : 0]),
    ),
  ].join("\n") + "\n";
}

function agentMetrics(status: AgentStatus, shouldListen: boolean): string[] {
  const runtime = `${status.runtime.name} ${status.runtime.version}`;
  const ready = notReady(status, shouldListen).length === 0 ? 1 : 0;
  return [
    ...metric("agent_info", "gauge", "The agent's version and runtime.", [[{ version: status.version, runtime }, 1]]),
    ...metric("agent_up", "gauge", "1 while the agent runs.", only(1)),
    ...metric("agent_ready", "gauge", "1 when listening and every outbound target is connected.", only(ready)),
    ...metric("agent_uptime_seconds", "gauge", "Seconds since the agent started.", only(status.uptimeSeconds)),
  ];
}

function connectionMetrics(status: AgentStatus): string[] {
  const { connections, handshakes } = status;
  const rejected = Object.entries(handshakes.rejected).map(([outcome, n]): Sample => [{ outcome }, n]);
  return [
    ...metric("agent_connections_open", "gauge", "Authenticated connections open now.", only(connections.open)),
    ...metric(
      "agent_handshakes_in_progress",
      "gauge",
      "Connections still in their opening handshake.",
      only(connections.handshaking),
    ),
    ...metric(
      "agent_handshakes_total",
      "counter",
      "Handshakes by outcome: accepted, or the reason a peer was turned away.",
      [[{ outcome: "accepted" }, handshakes.accepted], ...rejected],
    ),
  ];
}

function sessionMetrics(sessions: AgentStatus["sessions"]): string[] {
  const sum = (count: (s: AgentStatus["sessions"][number]) => number) => sessions.reduce((n, s) => n + count(s), 0);
  return [
    ...metric("agent_sessions", "gauge", "Open sessions (each one host process).", only(sessions.length)),
    ...metric("agent_session_clients", "gauge", "Clients attached to sessions.", only(sum((s) => s.clients))),
    ...metric("agent_open_files", "gauge", "Files open in sessions.", only(sum((s) => s.openFiles))),
    ...metric(
      "agent_running_processes",
      "gauge",
      "Processes running in sessions.",
      only(sum((s) => s.runningProcesses)),
    ),
    ...metric(
      "agent_attachment_in_flight_bytes",
      "gauge",
      "Bytes in flight per client attachment: request bodies not yet answered, replies not yet acknowledged.",
      sessions.flatMap((s) =>
        (s.attachments ?? []).map((a): Sample => [{ session: s.id, attachment: String(a.id) }, a.inFlightBytes])
      ),
    ),
    ...metric(
      "agent_attachment_window_bytes",
      "gauge",
      "The window each client attachment's transfers keep now, as the client reports it (0: no transfer runs).",
      sessions.flatMap((s) =>
        (s.attachments ?? []).map((a): Sample => [{ session: s.id, attachment: String(a.id) }, a.windowBytes ?? 0])
      ),
    ),
  ];
}

function counterMetrics(counters: MetricCounters): string[] {
  return [
    ...metric(
      "agent_received_bytes_total",
      "counter",
      "Bytes received on inbound connections.",
      only(counters.bytesReceived),
    ),
    ...metric("agent_sent_bytes_total", "counter", "Bytes sent on inbound connections.", only(counters.bytesSent)),
    ...metric(
      "agent_internal_errors_total",
      "counter",
      "Internal errors logged (each is a bug to report).",
      only(counters.internalErrors),
    ),
    ...metric(
      "agent_log_lines_dropped_total",
      "counter",
      "Log lines dropped because standard error was gone.",
      only(counters.logLinesDropped),
    ),
  ];
}

/** Serves the endpoint on `host:port` (0 picks a free port); resolves with the bound address and a close function. */
export function serveMetrics(
  host: string,
  port: number,
  status: () => AgentStatus,
  counters: () => MetricCounters,
  shouldListen: boolean,
): Promise<{ address: { host: string; port: number }; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const send = (code: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "only GET\n");
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") return send(200, "ok\n");
    if (path === "/readyz") {
      const reasons = notReady(status(), shouldListen);
      return reasons.length === 0
        ? send(200, "ready\n")
        : send(503, `not ready:\n${reasons.map((r) => `- ${r}`).join("\n")}\n`);
    }
    if (path === "/metrics") {
      return send(200, prometheusText(status(), counters(), shouldListen), "text/plain; version=0.0.4; charset=utf-8");
    }
    send(404, "not found: try /healthz, /readyz or /metrics\n");
  });
  return new Promise((resolve, reject) => {
    server.once(
      "error",
      (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `cannot serve metrics on ${host}:${port}: ${e.code === "EADDRINUSE" ? "the port is in use" : e.message}`,
          ),
        ),
    );
    server.listen(port, host, () => {
      const a = server.address() as { address: string; port: number };
      resolve({
        address: { host: a.address, port: a.port },
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
