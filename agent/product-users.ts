/**
 * The users products' hosts run as (`"products": { "name": { "user", "group" } }`):
 * each resolved from /etc/passwd and /etc/group to its ids, home, shell and
 * supplementary groups (as initgroups would from those files), and refused
 * unless the agent runs as root, at start and at `start --check`.
 *
 * @example
 * ```ts
 * const accounts = resolveProductUsers({ buildmaster: { user: "bm" } }, 0);
 * ```
 * @module
 */
import fs from "node:fs";
import { ConfigError, type ProductUser } from "./config.ts";
import type { Account } from "../runtime/environment.ts";
import type { Identity } from "../runtime/privileges.ts";

/** A product's user, resolved: who its hosts become, and their HOME, USER and SHELL. */
export type ProductAccount = Identity & Account;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

function readDatabase(file: string): string[][] {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(":"));
  } catch {
    return [];
  }
}

function findUser(user: string | number, passwd: string[][]): PasswdEntry | null {
  const row = passwd.find((
    f,
  ) => (typeof user === "number" || /^\d+$/.test(user) ? f[2] === String(user) : f[0] === user));
  if (row) {
    return { name: row[0], uid: Number(row[2]), gid: Number(row[3]), home: row[5] || "/", shell: row[6] || "/bin/sh" };
  }
  if (typeof user === "number" || /^\d+$/.test(user)) {
    return { name: String(user), uid: Number(user), gid: Number(user), home: "/", shell: "/bin/sh" }; // a bare uid
  }
  return null;
}

function findGroup(group: string | number, groups: string[][]): number | null {
  if (typeof group === "number" || /^\d+$/.test(group)) return Number(group);
  const row = groups.find((f) => f[0] === group);
  return row ? Number(row[2]) : null;
}

/**
 * Each product's account. Throws {@link ConfigError} when any is set and `euid` is not root, or a
 * user or group does not exist.
 */
export function resolveProductUsers(
  users: Record<string, ProductUser>,
  euid: number | undefined = process.geteuid?.(),
): Map<string, ProductAccount> {
  const accounts = new Map<string, ProductAccount>();
  const products = Object.keys(users).filter((p) => users[p].user !== undefined || users[p].group !== undefined);
  if (products.length === 0) return accounts;
  if (euid !== 0) {
    throw new ConfigError(
      `"products" names a user for ${products.join(", ")}, but the agent runs as uid ${euid}, not root: ` +
        "only root can start hosts as another user. Start the agent as root, or give products as a list",
    );
  }
  const passwd = readDatabase("/etc/passwd"), groups = readDatabase("/etc/group");
  for (const product of products) {
    const setting = users[product];
    if (setting.user === undefined) throw new ConfigError(`product ${product}: a "group" needs a "user"`);
    const entry = findUser(setting.user, passwd);
    if (!entry) throw new ConfigError(`product ${product}: no user "${setting.user}" in /etc/passwd`);
    const gid = setting.group === undefined ? entry.gid : findGroup(setting.group, groups);
    if (gid === null) throw new ConfigError(`product ${product}: no group "${setting.group}" in /etc/group`);
    if (entry.uid === 0) {
      throw new ConfigError(`product ${product}: its user is root; leave it out to run as the agent`);
    }
    const member = groups.filter((f) => (f[3] ?? "").split(",").includes(entry.name)).map((f) => Number(f[2]));
    accounts.set(product, { ...entry, gid, groups: [...new Set([gid, ...member])] });
  }
  return accounts;
}
