/**
 * Whether the agent may trust a file or directory for its keys: whoever can write it, or read it, could
 * plant a key or learn one, so it must be this agent's user's (or root's) and closed to others, as sshd's
 * StrictModes asks of authorized_keys.
 *
 * @example
 * ```ts
 * checkStateDir("/var/lib/agent"); // throws ConfigError when another user owns it or it is a symlink
 * ```
 * @module
 */
import fs from "node:fs";
import { ConfigError } from "../runtime/errors.ts";
import { escapeControls } from "../core/text.ts";

const checked = process.platform !== "win32";
const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, "0");

/** Refuses a state directory that is a symlink or belongs to another user. A missing one is fine (made later). */
export function checkStateDir(dir: string): void {
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!st || !checked) return;
  if (st.isSymbolicLink()) {
    throw new ConfigError(
      `the state directory ${dir} is a symlink (to ${escapeControls(fs.readlinkSync(dir))}); ` +
        "give its real path with --state-dir, as the agent changes its mode and writes keys into it",
    );
  }
  const uid = process.geteuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new ConfigError(
      `the state directory ${dir} belongs to uid ${st.uid}, not to this agent's user (uid ${uid}); ` +
        `its owner could plant the keys this agent accepts. If it is yours, run: chown -R ${uid} ${dir}`,
    );
  }
}

/**
 * Refuses a file that holds keys when group or others may read or write it, or when a user other than this
 * agent's or root owns it. Errors read "`<what> <file><why>` is readable by others…".
 */
export function checkSecretFile(file: string, stat: fs.Stats, what: string, why = ""): void {
  if (!checked) return;
  if ((stat.mode & 0o077) !== 0) {
    throw new ConfigError(
      `${what} ${file}${why} is readable by others (mode ${octal(stat.mode)}); run: chmod 600 ${file}`,
    );
  }
  const uid = process.geteuid?.();
  if (uid !== undefined && stat.uid !== uid && stat.uid !== 0) {
    throw new ConfigError(
      `${what} ${file}${why} belongs to uid ${stat.uid}, not to this agent's user (uid ${uid}) or root; ` +
        `its owner could plant a key. If it is yours, run: chown ${uid} ${file}`,
    );
  }
}
