/**
 * The cold path (issue 32, target 4), per process: on one running agent, warmed by a first session,
 * N fresh sessions in turn, each taking the spare host the one before left; for each, the time and
 * the CPU of its host and of the agent in its first and its second upload and download, and the
 * spare's CPU and RSS just before it was taken. CPU is what tells a cold process's compiles from
 * the machine's noise (other workers share its cores); time ratios are per session, first over
 * second, the median quoted.
 *
 *   tsx bench/cold.ts                                  the built agent in dist/, on Node
 *   RT=deno N=8 MIB=256 tsx bench/cold.ts              on Deno, 8 sessions, 256 MiB files
 *   VARIANTS=before=/tmp/dist-a,after=dist tsx bench/cold.ts   two builds, one after the other
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { connect, type RemoteSession } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { DENO, startBenchAgent } from "./agent.ts";
import { cpuSeconds, rssSplitKiB } from "./proc.ts";
import { denoRunCommand } from "../runtime/heap.ts";
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MIB = Number(process.env.MIB ?? 128), N = Number(process.env.N ?? 6), RT = process.env.RT ?? "node";
const variants = (process.env.VARIANTS ?? `dist=${path.join(ROOT, "dist")}`).split(",").map((v) => v.split("="));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cold-sess-"));
const src = path.join(dir, "src");
{
  const fd = fs.openSync(src, "wx");
  const b = crypto.randomBytes(8 << 20);
  for (let i = 0; i < MIB / 8; i++) {
    b[0] = i;
    fs.writeSync(fd, b);
  }
  fs.closeSync(fd);
}
let AG = 0;
async function leg(s: RemoteSession, hp: number, up: boolean) {
  const c0 = [cpuSeconds(hp), cpuSeconds(AG)], t0 = performance.now();
  if (up) {
    const dst = path.join(dir, "r");
    fs.rmSync(dst, { force: true });
    await s.files.writeFile(dst, fs.createReadStream(src, { highWaterMark: 512 << 10 }) as AsyncIterable<Uint8Array>);
  } else {
    const l = path.join(dir, "l");
    fs.rmSync(l, { force: true });
    const fd = fs.openSync(l, "wx");
    for await (const c of s.files.readStream(path.join(dir, "r"), { reuseChunks: true })) fs.writeSync(fd, c);
    fs.closeSync(fd);
  }
  return [performance.now() - t0, cpuSeconds(hp) - c0[0], cpuSeconds(AG) - c0[1]];
}
const acc: Record<string, number[][]> = {};
const spareInfo: Record<string, number[][]> = {};
for (const [label, d] of variants) {
  const key = generateKey();
  const bench = await startBenchAgent(
    RT === "node" ? [path.join(d, "agent")] : denoRunCommand(DENO, path.join(d, "agent.mjs")),
    key.hex,
  );
  AG = bench.child.pid!;
  const agent = await connect({ host: "127.0.0.1", port: bench.port, key: key.hex });
  const warm = await agent.openSession("bench"); // warms agent and client
  const hw = (await warm.system.info()).pid;
  for (let i = 0; i < 2; i++) {
    await leg(warm, hw, true);
    await leg(warm, hw, false);
  }
  await warm.close();
  for (let i = 0; i < N; i++) {
    await new Promise((r) => setTimeout(r, 2500)); // spare ready and idle
    const kids = execFileSync("pgrep", ["-P", String(AG)], { encoding: "utf8" }).trim().split("\n").map(Number);
    const spare = kids.map((p) => [p, cpuSeconds(p), rssSplitKiB(p).anon, rssSplitKiB(p).file]);
    const s = await agent.openSession("bench");
    const hp = (await s.system.info()).pid;
    const sp = spare.find((x) => x[0] === hp);
    if (sp) (spareInfo[label] ??= []).push([sp[1], sp[2], sp[3]]);
    const u1 = await leg(s, hp, true),
      d1 = await leg(s, hp, false),
      u2 = await leg(s, hp, true),
      d2 = await leg(s, hp, false);
    (acc[label] ??= []).push([...u1, ...d1, ...u2, ...d2]);
    await s.close();
  }
  agent.close();
  await bench.stop();
}
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const f = (x: number) => x.toFixed(3);
for (const [label, rows] of Object.entries(acc)) {
  const col = (i: number) => mean(rows.map((r) => r[i]));
  const ratio = (i: number, j: number) => rows.map((r) => r[i] / r[j]).sort((a, b) => a - b);
  const med = (a: number[]) => a[a.length >> 1];
  console.log(
    `${label} (${rows.length} sessions, ${MIB} MiB): up first ${col(0).toFixed(0)}ms host ${f(col(1))} agent ${
      f(col(2))
    } | later ${col(6).toFixed(0)}ms host ${f(col(7))} agent ${f(col(8))} | time ratio median ${f(med(ratio(0, 6)))}`,
  );
  console.log(
    `${" ".repeat(label.length)}  down first ${col(3).toFixed(0)}ms host ${f(col(4))} agent ${f(col(5))} | later ${
      col(9).toFixed(0)
    }ms host ${f(col(10))} agent ${f(col(11))} | time ratio median ${f(med(ratio(3, 9)))}`,
  );
  const si = spareInfo[label] ?? [];
  const cells = (i: number, digits: number) => si.map((x) => x[i].toFixed(digits)).join(", ");
  console.log(`   spare before taken: CPU s ${cells(0, 2)}; RSS KiB anonymous ${cells(1, 0)}, file ${cells(2, 0)}`);
}
fs.rmSync(dir, { recursive: true, force: true });
