/** A process's memory and CPU time as the kernel counts them (Linux /proc). */
import fs from "node:fs";

/** Resident set size, KiB. */
export function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

/**
 * The resident set as private memory (anonymous: heaps, stacks) and file-backed pages (code mapped
 * from the binary, shared with every process running it; how many are mapped varies with how much of
 * the file the page cache holds), KiB.
 */
export function rssSplitKiB(pid: number): { anon: number; file: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)![1]);
  return { anon: field("RssAnon"), file: field("RssFile") + field("RssShmem") };
}

/** Proportional set size (shared pages split among their sharers), KiB. */
export function pssKiB(pid: number): number {
  return Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))![1]);
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * User plus system CPU seconds of `pid` ("self" for this process); with `children`, also those of
 * its descendants that have exited and been waited for (sshd's per-connection processes, say).
 */
export function cpuSeconds(pid: number | "self", children = false): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number); // f[0] is field 3, state
  const ticks = f[11] + f[12] + (children ? f[13] + f[14] : 0); // utime, stime, cutime, cstime
  return ticks / TICKS_PER_SECOND;
}

/** CPU-seconds the whole machine has spent busy (every core, every process, interrupts), from /proc/stat. */
export function machineCpuSeconds(): number {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f; // idle and iowait left out
  return (user + nice + system + irq + softirq + (steal ?? 0)) / TICKS_PER_SECOND;
}

/** The pids of every descendant of `pid` (from /proc). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** CPU of `pid`'s living descendants and of those it reaped (the agent's hosts). */
export function treeCpu(pid: number): number {
  let sum = cpuSeconds(pid, true) - cpuSeconds(pid);
  for (const d of descendants(pid)) {
    try {
      sum += cpuSeconds(d, true);
    } catch { /* gone */ }
  }
  return sum;
}

/**
 * Reads every meter (a process's CPU-seconds, say) now; the function it returns reads them again
 * and gives each one's growth since, divided by `per` (the GiB a leg moved, say).
 */
export function startMeters<K extends string>(meters: Record<K, () => number>): (per: number) => Record<K, number> {
  const keys = Object.keys(meters) as K[];
  const before = keys.map((k) => meters[k]());
  return (per) => Object.fromEntries(keys.map((k, i) => [k, (meters[k]() - before[i]) / per])) as Record<K, number>;
}
