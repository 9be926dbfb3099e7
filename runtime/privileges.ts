/**
 * Dropping root for a product's user: supplementary groups, then the group,
 * then the user, through libc (glibc applies each to every thread of the
 * process). Both runtimes get the same calls: Deno has no setuid of its own.
 *
 * @example
 * ```ts
 * if (process.getuid?.() === 0) dropPrivileges({ uid: 65534, gid: 65534, groups: [] });
 * ```
 * @module
 */
import { bindC, libcName } from "./native.ts";

/** Who a process becomes: user, primary group and supplementary groups, as ids. */
export interface Identity {
  uid: number;
  gid: number;
  groups: readonly number[];
}

const SIGNATURES = {
  setgroups: "int setgroups(size_t size, const void *list)",
  setgid: "int setgid(unsigned int gid)",
  setuid: "int setuid(unsigned int uid)",
};

/** Becomes `identity` for good (real, effective and saved ids); throws if any step fails or does not hold. */
export function dropPrivileges(identity: Identity): void {
  const libc = bindC(libcName(), SIGNATURES) as Record<keyof typeof SIGNATURES, (...a: unknown[]) => number>;
  const groups = new Uint32Array(identity.groups);
  if (libc.setgroups(groups.length, groups) !== 0) throw new Error("setgroups failed (the agent must run as root)");
  if (libc.setgid(identity.gid) !== 0) throw new Error(`setgid(${identity.gid}) failed`);
  if (libc.setuid(identity.uid) !== 0) throw new Error(`setuid(${identity.uid}) failed`);
  const now = {
    uid: process.getuid?.(),
    euid: process.geteuid?.(),
    gid: process.getgid?.(),
    egid: process.getegid?.(),
  };
  if (now.uid !== identity.uid || now.euid !== identity.uid || now.gid !== identity.gid || now.egid !== identity.gid) {
    throw new Error(`after dropping privileges the process runs as ${JSON.stringify(now)}, not as asked`);
  }
}
