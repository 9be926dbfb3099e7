/**
 * `agent status`: ask the agent running on this machine how it is doing,
 * through its local control socket.
 * @module
 */
import { controlPath, requestControl } from "../../agent/control.ts";
import { NotRunningError } from "../../agent/errors.ts";
import type { AgentStatus } from "../../agent/server.ts";
import { resolveConfig } from "../../agent/config.ts";
import type { Flags } from "../flags.ts";
import { formatHost } from "../../runtime/tcp.ts";
import { ExitError } from "../errors.ts";
import { escapeLines, safeJson } from "../../core/text.ts";

/** Exit code when no agent answers. */
export const EXIT_NOT_RUNNING = 3;

export async function statusCommand(flags: Flags): Promise<void> {
  const config = resolveConfig(flags, process.env);
  let status: AgentStatus;
  try {
    status = await requestControl(controlPath(config.stateDir), "status") as AgentStatus;
  } catch (e) {
    if (e instanceof NotRunningError) {
      if (flags.json) process.stdout.write(safeJson({ running: false, error: e.message }) + "\n");
      throw new ExitError(EXIT_NOT_RUNNING, `${e.message}. Start one with \`agent start\`.`);
    }
    throw e;
  }
  if (flags.json) {
    process.stdout.write(safeJson({ running: true, ...status }) + "\n");
    return;
  }
  const rejected = Object.entries(status.handshakes.rejected).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  process.stdout.write(escapeLines(
    `agent ${status.version} running (pid ${status.pid}, ${status.runtime.name} ${status.runtime.version}), up ${
      duration(status.uptimeSeconds)
    }\n` +
      `listening    ${
        status.listen
          ? `${formatHost(status.listen.host)}:${status.listen.port} (${
            status.mode === "key" ? "key mode" : "INSECURE plaintext"
          })`
          : "no (outbound only)"
      }\n` +
      `key ids      ${status.keyIds.join(", ") || "-"}\n` +
      `connections  ${status.connections.open} open, ${status.connections.handshaking} in handshake\n` +
      `handshakes   ${status.handshakes.accepted} accepted; rejected: ${rejected}\n` +
      sessionTable(status.sessions) +
      outboundLines(status.outbound ?? []),
  ));
}

function outboundLines(targets: AgentStatus["outbound"]): string {
  if (targets.length === 0) return "";
  return targets.map((t) => {
    const next = t.nextRetryAt ? `, next retry ${t.nextRetryAt}` : "";
    const err = t.lastError ? `, last error: ${t.lastError}` : "";
    return `outbound     ${t.address}: ${t.state} since ${t.since}${next}${err}\n`;
  }).join("");
}

function sessionTable(sessions: AgentStatus["sessions"]): string {
  if (sessions.length === 0) return "sessions     none\n";
  const rows = [["SESSION", "PRODUCT", "HOST PID", "CLIENTS", "IDLE", "FILES", "PROCESSES", "IN FLIGHT"]];
  for (const s of sessions) {
    rows.push([
      s.id,
      s.product,
      String(s.hostPid),
      String(s.clients),
      duration(s.idleSeconds),
      String(s.openFiles),
      String(s.runningProcesses),
      inFlight(s.attachments ?? []),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return `sessions     ${sessions.length}\n` +
    rows.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n") + "\n";
}

/** Each attachment's bytes in flight, as `#id size`. */
function inFlight(attachments: NonNullable<AgentStatus["sessions"][number]["attachments"]>): string {
  const size = (b: number) => b >= 1048576 ? `${(b / 1048576).toFixed(1)} MiB` : `${Math.round(b / 1024)} KiB`;
  return attachments.map((a) => `#${a.id} ${size(a.inFlightBytes)}`).join(", ") || "-";
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400),
    h = Math.floor(seconds / 3600) % 24,
    m = Math.floor(seconds / 60) % 60,
    s = seconds % 60;
  return [d && `${d}d`, h && `${h}h`, m && `${m}m`, `${s}s`].filter(Boolean).join(" ");
}
