/**
 * `agent start`: run the agent in the foreground until SIGINT or SIGTERM;
 * SIGHUP reloads. The agent itself is assembled in agent/daemon.ts; this
 * command reads the flags, prints, and handles the process's signals.
 * @module
 */
import { type Daemon, type DaemonSettings, loadDaemonSettings, startDaemon } from "../../agent/daemon.ts";
import { resolveConfig } from "../../agent/config.ts";
import { type Flags, str } from "../flags.ts";
import { log, LOG_FORMATS, type LogFormat, setLogFormat } from "../../runtime/log.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { formatHost, isLoopback } from "../../runtime/tcp.ts";
import { type SystemdNotifier, systemdNotifier } from "../../runtime/sd-notify.ts";
import fs from "node:fs";
import path from "node:path";
import { programFile } from "../../runtime/self.ts";
import { AgentUpgrader, fileSha256 } from "../../agent/upgrade.ts";
import { pendingTakeover, prepareTakeover } from "../../agent/takeover.ts";
import type { ProgramHistory } from "../../agent/handover.ts";

/** Resolves and checks everything a start needs, without starting: `agent start --check`, and each reload. */
async function loadSettings(flags: Flags, createKey: boolean) {
  const config = resolveConfig(flags, process.env);
  const format = str(flags.logFormat) ?? config.logFormat;
  if (format !== undefined && !(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new ConfigError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, not "${format}"`);
  }
  return { format: format as LogFormat | undefined, settings: await loadDaemonSettings(config, createKey) };
}

export async function startCommand(flags: Flags): Promise<void> {
  if (flags.check) return printCheck((await loadSettings(flags, false)).settings);
  const pending = pendingTakeover(process.env); // an earlier version hands over to this one
  const { format, settings } = await loadSettings(flags, true);
  if (format) setLogFormat(format);
  if (!pending) announce(settings, Boolean(flags.showKey));
  const internalErrors = countInternalErrors();

  // Signal handlers go in before anything listens, so an early SIGTERM still shuts down cleanly.
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onSignal = (signal: NodeJS.Signals) => () => stop(signal);
  process.on("SIGINT", onSignal("SIGINT"));
  process.on("SIGTERM", onSignal("SIGTERM"));
  let daemon: Daemon | null = null;
  let upgrader: AgentUpgrader | null = null;
  let reloading = Promise.resolve();
  const systemd = systemdNotifier(process.env);
  const environment = { ...process.env } as Record<string, string>; // what a new version starts with
  // The agent alone speaks to systemd: hosts and the programs they start do not inherit its socket.
  for (const name of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete process.env[name];
  const installed = programIdentity();
  process.on("SIGHUP", () => {
    reloading = reloading.then(() =>
      installed !== programIdentity() && upgrader ? upgradeOnSignal(upgrader) : reload(flags, daemon, systemd)
    );
  });

  const hostLog = (id: string, line: string) => log.warn(`session ${id.slice(0, 8)} host: ${line}`);
  const takeover = pending ? await prepareTakeover(pending, hostLog) : undefined;
  daemon = await startDaemon(settings, internalErrors, takeover);
  upgrader = enableUpgrades(daemon, settings, { environment, systemd, history: takeover?.state.history });
  systemd.notify(`READY=1\nSTATUS=${readyStatus(daemon)}`);
  systemd.startWatchdog(); // fed from this event loop, so systemd restarts an agent whose loop is stuck
  log.info(`received ${await stopped}, shutting down`);
  systemd.notify("STOPPING=1");
  systemd.stopWatchdog();
  await daemon.close();
  log.info("stopped");
}

/** Gives `daemon` an upgrader: `agent upgrade` on the control socket, and pushed updates. */
function enableUpgrades(
  daemon: Daemon,
  { config }: DaemonSettings,
  options: { environment: Record<string, string>; systemd: SystemdNotifier; history?: ProgramHistory },
): AgentUpgrader {
  const history = options.history ?? { build: "", previousBuild: null, previousVersion: null, changedAt: null };
  if (!history.build) fileSha256(programFile()).then((b) => (history.build = b), () => {});
  daemon.server.program = history;
  const upgrader = new AgentUpgrader({
    daemon,
    runDir: path.join(config.stateDir, "run"),
    timeoutMs: config.upgradeTimeoutSeconds * 1000,
    startArgs: process.argv.slice(2),
    environment: options.environment,
    history,
    systemd: options.systemd,
    exit: () => {
      options.systemd.stopWatchdog();
      process.exit(0);
    },
  });
  daemon.upgrade = (file) => upgrader.upgrade(file, "agent upgrade");
  daemon.server.upgrader = upgrader;
  return upgrader;
}

/** The installed program file's identity: a package manager replacing it changes it. */
function programIdentity(): string {
  try {
    const s = fs.statSync(programFile());
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return "";
  }
}

/** SIGHUP after the installed program changed: hand over to it (`systemctl reload agent` after a package upgrade). */
async function upgradeOnSignal(upgrader: AgentUpgrader): Promise<void> {
  await upgrader.upgrade(undefined, "SIGHUP: the installed program changed").catch(() => {}); // logged there
}

/** What systemd shows for a ready agent (`systemctl status agent`). */
function readyStatus(daemon: Daemon): string {
  const listen = daemon.server.status().listen;
  const parts = listen ? [`listening on ${formatHost(listen.host)}:${listen.port}`] : [];
  if (daemon.outbound.length > 0) parts.push(`dialing ${daemon.outbound.length} outbound target(s)`);
  return parts.join("; ");
}

/** `agent start --check`: one line saying what a start would do. */
function printCheck({ config, keys, trust }: DaemonSettings) {
  const keyText = config.insecure
    ? "insecure mode, no keys"
    : `${keys.length} key${keys.length === 1 ? "" : "s"} (${keys.map((k) => k.id).join(", ")})`;
  const listenText = config.listen ? `listening on ${formatHost(config.host)}:${config.port}` : "not listening";
  process.stdout.write(
    `configuration OK${config.configFile ? ` (${config.configFile})` : ""}: ${keyText}; ${listenText}` +
      `; ${trust.length} outbound target${trust.length === 1 ? "" : "s"}; state in ${config.stateDir}\n`,
  );
}

/** Warns about --insecure, or tells where a key created now went. */
function announce({ config, keys, generated }: DaemonSettings, showKey: boolean) {
  if (config.insecure) {
    log.warn(
      "--insecure: encryption and authentication are OFF; only loopback peers will be served. Never use this in production.",
    );
    if (!isLoopback(config.host)) {
      log.warn(`listening on ${config.host} with --insecure; non-loopback peers will be refused`);
    }
  } else if (generated) {
    // The key goes to stdout only when a person is watching (or asked for it): under systemd stdout is the journal.
    const show = showKey || process.stdout.isTTY === true;
    process.stdout.write(
      `No key was configured, so a new one was created (key id ${
        keys[0].id
      }) and saved to ${generated.file} (mode 0600).\n` +
        (show
          ? `\n  ${generated.hex}\n\nGive this key to the product that will connect to this agent; it stays in that file.\n`
          : `Give the product the key in that file (it is not printed here, since this is not a terminal; --show-key prints it).\n`),
    );
  }
}

/** A bug in one connection's handling must not take every session down with it: log it, keep serving. */
function countInternalErrors(): () => number {
  let count = 0;
  process.on("uncaughtException", (e) => (count++, log.error(`internal error (please report): ${e.stack ?? e}`)));
  process.on(
    "unhandledRejection",
    (e) => (count++, log.error(`internal error (please report): ${(e as Error)?.stack ?? e}`)),
  );
  return () => count;
}

/**
 * SIGHUP: read the config and key files again. A new configuration that does
 * not load leaves the running one untouched.
 */
async function reload(flags: Flags, daemon: Daemon | null, systemd: SystemdNotifier) {
  if (!daemon) return log.warn("SIGHUP before the agent was up: nothing reloaded");
  systemd.notify("RELOADING=1");
  try {
    const next = await loadSettings(flags, false);
    if (next.format) setLogFormat(next.format);
    daemon.reload(next.settings);
  } catch (e) {
    log.error(`reload on SIGHUP failed, keeping the running configuration: ${(e as Error).message}`);
  } finally {
    systemd.notify(`READY=1\nSTATUS=${readyStatus(daemon)}`);
  }
}
