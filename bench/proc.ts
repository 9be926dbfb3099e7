/** A process's memory as the kernel counts it (Linux /proc). */
import fs from "node:fs";

/** Resident set size, KiB. */
export function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

/** Proportional set size (shared pages split among their sharers), KiB. */
export function pssKiB(pid: number): number {
  return Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))![1]);
}
