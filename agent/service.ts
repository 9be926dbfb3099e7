/**
 * The agent as a systemd service: the unit, and installing, removing and
 * inspecting it. Install is idempotent: it creates the system user if
 * missing, puts the binary in place, writes the unit only if it changed,
 * and enables and starts it. `root` installs into another file tree (a
 * package build, a test) and then leaves users and systemctl alone.
 *
 * @example
 * ```ts
 * const report = installService({ user: "agent", binary: "/usr/local/bin/agent", root: "/", start: true });
 * ```
 * @module
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ConfigError } from "../runtime/errors.ts";
import { escapeControls } from "../core/text.ts";

/** Where the unit goes, relative to the root. */
export const UNIT_PATH = "etc/systemd/system/agent.service";
export const DEFAULT_BINARY = "/usr/local/bin/agent";
export const DEFAULT_USER = "agent";

/**
 * The unit. Type=notify: the agent says READY=1 once it listens and feeds a 30 s watchdog from its event
 * loop, so systemd restarts an agent that hangs. The stop timeout covers the session shutdown (each host gets the
 * process grace, 5 s, plus 5 s) with room to spare; KillMode=mixed sends
 * SIGTERM to the agent alone, so it ends sessions in order, and SIGKILL to
 * everything left in the unit's cgroup only after that timeout.
 */
export function serviceUnit(options: { user: string; binary: string }): string {
  return `# Installed by \`agent service install\`; \`agent service uninstall\` removes it.
# Override settings with \`systemctl edit agent\` rather than editing this file.
[Unit]
Description=agent: the server agent that deployment products drive
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
WatchdogSec=30s
User=${options.user}
Group=${options.user}
ExecStart=${options.binary} start
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
# State (keys, config.json, session channels) in /var/lib/agent; the agent finds it via $STATE_DIRECTORY.
StateDirectory=agent
StateDirectoryMode=0700
RuntimeDirectory=agent
RuntimeDirectoryMode=0700
UMask=0077
KillMode=mixed
TimeoutStopSec=20s
# Hardening that leaves deployed programs their usual reach; docs/operations.md explains each
# setting, what it costs deployed programs, and the stricter ones to add with a drop-in
# (systemctl edit agent). Products that write under /usr or /etc relax ProtectSystem there.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
PrivateMounts=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
`;
}

/** What install, uninstall and status did or found, one line each. */
export type ServiceReport = string[];

interface ServiceOptions {
  user: string;
  binary: string;
  /** "/" for the running system; another directory installs into that tree, touching no users and no systemctl. */
  root: string;
}

const onSystem = (o: ServiceOptions) => path.resolve(o.root) === "/";
const systemdRunning = () => fs.existsSync("/run/systemd/system");

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() || (r.error?.message ?? "") };
}

function must(cmd: string, args: string[]) {
  const r = run(cmd, args);
  if (!r.ok) throw new ConfigError(`${cmd} ${args.join(" ")} failed: ${r.out}`);
}

/**
 * Creates `dir` and its missing parents below `root`. Inside a root other than "/" (a staging tree others may
 * write), a symlink among those parts is refused: it would carry the install somewhere else.
 */
function makeDirsUnder(root: string, dir: string): void {
  let at = path.resolve(root);
  for (const part of path.relative(at, path.resolve(dir)).split(path.sep).filter(Boolean)) {
    at = path.join(at, part);
    const st = fs.lstatSync(at, { throwIfNoEntry: false });
    if (!st) fs.mkdirSync(at, { mode: 0o755 });
    else if (st.isSymbolicLink() && path.resolve(root) !== "/") {
      throw new ConfigError(
        `refusing to install through the symlink ${escapeControls(at)} (to ${escapeControls(fs.readlinkSync(at))}); ` +
          "remove it or choose another --root",
      );
    }
  }
}

/**
 * Puts a new `file` in place: written to a name beside it that is created exclusively (a link planted there is
 * removed, not followed), then renamed over `file`, which replaces a symlink there instead of writing through it.
 */
function replaceFile(file: string, write: (temp: string) => void, mode: number): void {
  const temp = `${file}.new`;
  fs.rmSync(temp, { force: true });
  write(temp);
  fs.chmodSync(temp, mode);
  fs.renameSync(temp, file); // a running agent keeps its old inode; the restart picks up the new one
}

/**
 * Installs or updates the service. `self` is the running single executable
 * (copied to `binary`), or null when running from sources or under Deno, in
 * which case `binary` must already be in place.
 */
export function installService(options: ServiceOptions & { start: boolean; self: string | null }): ServiceReport {
  const report: ServiceReport = [];
  const inRoot = (p: string) => path.join(options.root, p);
  const binaryFile = inRoot(options.binary);
  let binaryChanged = false;
  const wasActive = onSystem(options) && systemdRunning() &&
    run("systemctl", ["is-active", "agent.service"]).out === "active";
  if (options.self) {
    const same = fs.existsSync(binaryFile) && fs.readFileSync(binaryFile).equals(fs.readFileSync(options.self));
    if (same) report.push(`binary ${binaryFile}: up to date`);
    else {
      makeDirsUnder(options.root, path.dirname(binaryFile));
      const self = options.self;
      replaceFile(binaryFile, (temp) => fs.copyFileSync(self, temp, fs.constants.COPYFILE_EXCL), 0o755);
      report.push(`binary ${binaryFile}: installed from ${options.self}`);
      binaryChanged = true;
    }
  } else if (!fs.existsSync(binaryFile)) {
    throw new ConfigError(
      `${options.binary} does not exist: run this from the single executable (dist/agent), or put the binary there first and pass --binary`,
    );
  } else report.push(`binary ${binaryFile}: in place`);

  if (onSystem(options)) {
    if (run("id", ["-u", options.user]).ok) report.push(`user ${options.user}: exists`);
    else {
      must("useradd", [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/var/lib/agent",
        "--shell",
        "/usr/sbin/nologin",
        options.user,
      ]);
      report.push(`user ${options.user}: created (system user, no login, no home)`);
    }
  } else report.push(`user ${options.user}: not checked (installing into ${options.root})`);

  const unitFile = inRoot(UNIT_PATH);
  const unit = serviceUnit(options);
  const current = fs.existsSync(unitFile) ? fs.readFileSync(unitFile, "utf8") : null;
  if (current === unit) report.push(`unit ${unitFile}: up to date`);
  else {
    makeDirsUnder(options.root, path.dirname(unitFile));
    replaceFile(unitFile, (temp) => fs.writeFileSync(temp, unit, { mode: 0o644, flag: "wx" }), 0o644);
    report.push(`unit ${unitFile}: ${current === null ? "written" : "updated"}`);
  }

  if (!onSystem(options)) report.push(`systemctl: not run (installing into ${options.root})`);
  else if (!systemdRunning()) report.push("systemctl: not run (systemd is not running on this machine)");
  else {applyWithSystemctl(options.start, {
      unitChanged: current !== null && current !== unit,
      binaryChanged,
      wasActive,
    }, report);}
  return report;
}

/**
 * Enables (and starts) the unit. A changed unit needs a restart; a new binary under the same unit
 * is handed over to by the running agent instead (`systemctl reload`: SIGHUP, agent/upgrade.ts).
 */
function applyWithSystemctl(
  start: boolean,
  changed: { unitChanged: boolean; binaryChanged: boolean; wasActive: boolean },
  report: ServiceReport,
): void {
  must("systemctl", ["daemon-reload"]);
  must("systemctl", ["enable", ...(start ? ["--now"] : []), "agent.service"]);
  if (start && changed.unitChanged) must("systemctl", ["restart", "agent.service"]);
  else if (start && changed.binaryChanged && changed.wasActive) {
    must("systemctl", ["reload", "agent.service"]);
    report.push("systemctl: reloaded agent.service: the running agent hands over to the new binary");
  }
  report.push(`systemctl: enabled${start ? " and started" : ""} agent.service`);
}

/** Stops, disables and removes the unit; keeps the user, the binary and /var/lib/agent (keys), and says how to remove them. */
export function uninstallService(options: ServiceOptions): ServiceReport {
  const report: ServiceReport = [];
  const unitFile = path.join(options.root, UNIT_PATH);
  if (onSystem(options) && systemdRunning()) {
    run("systemctl", ["disable", "--now", "agent.service"]);
    report.push("systemctl: stopped and disabled agent.service");
  }
  if (fs.existsSync(unitFile)) {
    fs.rmSync(unitFile);
    report.push(`unit ${unitFile}: removed`);
  } else report.push(`unit ${unitFile}: not installed`);
  if (onSystem(options) && systemdRunning()) run("systemctl", ["daemon-reload"]);
  if (onSystem(options)) {
    report.push(
      `kept: ${options.binary}, the user ${options.user} and /var/lib/agent (its keys); remove them with: rm ${options.binary}; userdel ${options.user}; rm -r /var/lib/agent`,
    );
  } else {
    const binaryFile = path.join(options.root, options.binary);
    report.push(
      `kept: ${binaryFile}; remove it with: rm ${binaryFile} (no user or state was made for ${options.root})`,
    );
  }
  return report;
}

/** Whether the unit is installed and current, and what systemd says of it. */
export function serviceStatus(
  options: ServiceOptions,
): { installed: boolean; current: boolean; report: ServiceReport } {
  const unitFile = path.join(options.root, UNIT_PATH);
  const installed = fs.existsSync(unitFile);
  const current = installed && fs.readFileSync(unitFile, "utf8") === serviceUnit(options);
  const report: ServiceReport = [
    `unit ${unitFile}: ${
      !installed
        ? "not installed"
        : current
        ? "installed, up to date"
        : "installed, differs from this version's (run agent service install to update)"
    }`,
  ];
  if (onSystem(options) && systemdRunning()) {
    report.push(
      `systemd: ${run("systemctl", ["is-enabled", "agent.service"]).out || "unknown"}, ${
        run("systemctl", ["is-active", "agent.service"]).out || "unknown"
      }`,
    );
  } else if (onSystem(options)) report.push("systemd: not running on this machine");
  return { installed, current, report };
}
