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

/** Where the unit goes, relative to the root. */
export const UNIT_PATH = "etc/systemd/system/agent.service";
export const DEFAULT_BINARY = "/usr/local/bin/agent";
export const DEFAULT_USER = "agent";

/**
 * The unit. The stop timeout covers the session shutdown (each host gets the
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
Type=simple
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
# Hardening. Products write files where they deploy: if that is under /usr or /etc, relax
# ProtectSystem with a drop-in (systemctl edit agent).
NoNewPrivileges=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes

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
 * Installs or updates the service. `self` is the running single executable
 * (copied to `binary`), or null when running from sources or under Deno, in
 * which case `binary` must already be in place.
 */
export function installService(options: ServiceOptions & { start: boolean; self: string | null }): ServiceReport {
  const report: ServiceReport = [];
  const inRoot = (p: string) => path.join(options.root, p);
  const binaryFile = inRoot(options.binary);
  if (options.self) {
    const same = fs.existsSync(binaryFile) && fs.readFileSync(binaryFile).equals(fs.readFileSync(options.self));
    if (same) report.push(`binary ${options.binary}: up to date`);
    else {
      fs.mkdirSync(path.dirname(binaryFile), { recursive: true });
      const temp = `${binaryFile}.new`;
      fs.copyFileSync(options.self, temp);
      fs.chmodSync(temp, 0o755);
      fs.renameSync(temp, binaryFile); // a running agent keeps its old inode; the restart picks up the new one
      report.push(`binary ${options.binary}: installed from ${options.self}`);
    }
  } else if (!fs.existsSync(binaryFile)) {
    throw new ConfigError(
      `${options.binary} does not exist: run this from the single executable (dist/agent), or put the binary there first and pass --binary`,
    );
  } else report.push(`binary ${options.binary}: in place`);

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
    fs.mkdirSync(path.dirname(unitFile), { recursive: true });
    fs.writeFileSync(unitFile, unit, { mode: 0o644 });
    report.push(`unit ${unitFile}: ${current === null ? "written" : "updated"}`);
  }

  if (!onSystem(options)) report.push(`systemctl: not run (installing into ${options.root})`);
  else if (!systemdRunning()) report.push("systemctl: not run (systemd is not running on this machine)");
  else {
    must("systemctl", ["daemon-reload"]);
    must("systemctl", ["enable", ...(options.start ? ["--now"] : []), "agent.service"]);
    if (options.start && current !== null && current !== unit) must("systemctl", ["restart", "agent.service"]);
    report.push(`systemctl: enabled${options.start ? " and started" : ""} agent.service`);
  }
  return report;
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
  report.push(
    `kept: ${options.binary}, the user ${options.user} and /var/lib/agent (its keys); remove them with: rm ${options.binary}; userdel ${options.user}; rm -r /var/lib/agent`,
  );
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
