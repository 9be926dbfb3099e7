/**
 * The environment launched programs start from: a documented base, never
 * the agent's own settings (AGENT_*), proxy credentials, NOTIFY_SOCKET or
 * anything else the agent was started with (docs/security.md "Least
 * privilege"). PATH as the agent has it; HOME, USER, LOGNAME and SHELL of the
 * user the program runs as (HOME as the agent has it when that is the agent's user); LANG, LC_* and TZ when set. No TERM: launched
 * programs get pipes, not a terminal.
 *
 * @example
 * ```ts
 * const env = launchEnvironment({ PATH: "/usr/bin:/bin", HTTPS_PROXY: "http://u:p@proxy:3128", TZ: "UTC" }, currentAccount());
 * console.log(Object.keys(env).sort().join(" ")); // HOME LOGNAME PATH SHELL TZ USER
 * ```
 * @module
 */
import os from "node:os";

/** The user a program runs as, for its HOME, USER, LOGNAME and SHELL. */
export interface Account {
  name: string;
  home: string;
  shell: string;
}

/** PATH when the agent has none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Settings that pass from the agent's environment into a launched program's as they are. */
const PASSED = /^(LANG|LC_[A-Z_]+|TZ)$/;

/** The base environment of a program started as `account`, taking PATH, LANG, LC_* and TZ from `env`. */
export function launchEnvironment(env: Record<string, string | undefined>, account: Account): Record<string, string> {
  const base: Record<string, string> = {
    PATH: env.PATH || DEFAULT_PATH,
    HOME: account.home,
    USER: account.name,
    LOGNAME: account.name,
    SHELL: account.shell,
  };
  for (const [name, value] of Object.entries(env)) if (value !== undefined && PASSED.test(name)) base[name] = value;
  return base;
}

/**
 * The user this process runs as: its name and shell from the password database, its home from
 * HOME when set (a service manager or test may give the agent's user another), else from there too.
 */
export function currentAccount(env: Record<string, string | undefined> = process.env): Account {
  try {
    const info = os.userInfo();
    return { name: info.username, home: env.HOME || info.homedir, shell: info.shell || "/bin/sh" };
  } catch {
    const uid = process.getuid?.() ?? 0;
    return { name: String(uid), home: "/", shell: "/bin/sh" }; // a uid with no entry in /etc/passwd
  }
}
