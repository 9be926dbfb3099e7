/**
 * `agent status`: ask the agent running on this machine how it is doing,
 * through its local control socket.
 * @module
 */
import fs from "node:fs";
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
  const memory = memoryOf(status);
  if (flags.json) {
    process.stdout.write(safeJson({ running: true, ...status, memory }) + "\n");
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
      programLine(status.program) +
      `key ids      ${status.keyIds.join(", ") || "-"}\n` +
      `connections  ${status.connections.open} open, ${status.connections.handshaking} in handshake\n` +
      `handshakes   ${status.handshakes.accepted} accepted; rejected: ${rejected}\n` +
      sessionTable(status.sessions) +
      spareLines(status.spares ?? []) +
      memoryLine(memory) +
      outboundLines(status.outbound ?? []),
  ));
}

/** Which build runs and what it replaced: `agent upgrade` changes it without a restart. */
function programLine(program: AgentStatus["program"] | undefined): string {
  if (!program) return "";
  const build = program.build ? program.build.slice(0, 12) : "(hashing)";
  if (program.changedAt === null) return `build        ${build}, since the agent started\n`;
  const was = program.previousBuild ? `; was ${program.previousBuild.slice(0, 12)} (${program.previousVersion})` : "";
  return `build        ${build}, since ${new Date(program.changedAt).toISOString()} (upgraded in place${was})\n`;
}

function spareLines(spares: AgentStatus["spares"]): string {
  if (spares.length === 0) return "spare hosts  none\n";
  const each = spares.map((s) =>
    `${s.product} (${s.hostPid === null ? "starting" : `pid ${s.hostPid}`}, waiting ${duration(s.idleSeconds)})`
  );
  return `spare hosts  ${spares.length}: ${each.join(", ")}\n`;
}

/** Resident memory (VmRSS) of a process on this machine, in KiB; 0 when it cannot be read. */
function residentKiB(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * The memory the agent and its host processes (sessions' and spares') hold, read here from /proc:
 * `agent status` runs on the agent's machine.
 */
function memoryOf(status: AgentStatus): { agentKiB: number; hostsKiB: number; hosts: number } {
  const hostPids = [...status.sessions.map((s) => s.hostPid), ...(status.spares ?? []).map((s) => s.hostPid)]
    .filter((pid): pid is number => typeof pid === "number" && pid > 0);
  const hostsKiB = hostPids.reduce((sum, pid) => sum + residentKiB(pid), 0);
  return { agentKiB: residentKiB(status.pid), hostsKiB, hosts: hostPids.length };
}

function memoryLine(m: ReturnType<typeof memoryOf>): string {
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  return `memory       agent ${mib(m.agentKiB)} MiB, hosts ${mib(m.hostsKiB)} MiB (${m.hosts} process${
    m.hosts === 1 ? "" : "es"
  })\n`;
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

/** Each attachment's bytes in flight, as `#id size`, and its transfers' window while one runs: `#id size of size`. */
function inFlight(attachments: NonNullable<AgentStatus["sessions"][number]["attachments"]>): string {
  const size = (b: number) => b >= 1048576 ? `${(b / 1048576).toFixed(1)} MiB` : `${Math.round(b / 1024)} KiB`;
  const window = (b: number | undefined) => (b ? ` of ${size(b)}` : "");
  return attachments.map((a) => `#${a.id} ${size(a.inFlightBytes)}${window(a.windowBytes)}`).join(", ") || "-";
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400),
    h = Math.floor(seconds / 3600) % 24,
    m = Math.floor(seconds / 60) % 60,
    s = seconds % 60;
  return [d && `${d}d`, h && `${h}h`, m && `${m}m`, `${s}s`].filter(Boolean).join(" ");
}
