// Frees and allocates bulk buffers through the C allocator, as a transfer's socket reads and ring
// records do, and prints the page faults that cost. "keep": after keepFreedMemory(), as the agent
// and its hosts start. "idle": then whether an IdleTrim gives the kept memory back.
import { bindC, libcName } from "../../runtime/native.ts";
import { IdleTrim, keepFreedMemory } from "../../runtime/malloc.ts";
import { procStat, residentKiB } from "./agent-process.ts";

const libc = bindC(libcName(), {
  malloc: "void *malloc(size_t size)",
  free: "void free(void *ptr)",
  memset: "void *memset(void *s, int c, size_t n)",
}, "opaque");
const PIECE = 64 * 1024, PIECES = 96; // 6 MiB in the 64 KiB pieces a socket read allocates

/** Minor page faults of this process so far. */
const minorFaults = () => Number(procStat("self")[7]);
const privateKiB = () => residentKiB(process.pid, "private");

/** Allocates and writes the pieces, then frees them all: a burst. */
function burst(): void {
  const pieces = Array.from({ length: PIECES }, () => libc.malloc(PIECE));
  for (const p of pieces) libc.memset(p, 1, PIECE);
  for (const p of pieces) libc.free(p);
}

const kept = process.argv.includes("keep") || process.argv.includes("idle") ? keepFreedMemory() : false;
burst();
const before = minorFaults();
for (let i = 0; i < 10; i++) burst();
const faultsPerBurst = (minorFaults() - before) / 10;
const privateAfterBurst = privateKiB();
let privateAfterIdle = privateAfterBurst;
if (process.argv.includes("idle")) {
  new IdleTrim(100).activity();
  await new Promise((r) => setTimeout(r, 500));
  privateAfterIdle = privateKiB();
}
console.log(JSON.stringify({ kept, faultsPerBurst, privateAfterBurst, privateAfterIdle }));
