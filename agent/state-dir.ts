/**
 * Where the agent keeps its state when no one says: separate from the
 * config code so that LocalAgent can use it without the config schema.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The state directory when none is given: systemd's StateDirectory= (via
 * STATE_DIRECTORY), then $XDG_STATE_HOME/agent, /var/lib/agent for root,
 * ~/.local/state/agent for a user with a home, and /var/lib/agent for a
 * system user without one.
 */
export function defaultStateDir(env: Record<string, string | undefined>): string {
  if (env.STATE_DIRECTORY) return env.STATE_DIRECTORY.split(":")[0];
  if (env.XDG_STATE_HOME) return path.join(env.XDG_STATE_HOME, "agent");
  if (process.getuid?.() === 0) return "/var/lib/agent";
  const home = env.HOME || os.homedir();
  if (home && fs.existsSync(home)) return path.join(home, ".local", "state", "agent");
  return "/var/lib/agent";
}
