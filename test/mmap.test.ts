// The shared-memory channel between real processes over a real mapping, on
// this runtime's backend, and across runtimes (Node's koffi and Deno's dlopen
// mapping the same file).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ChannelEnd } from "../core/shm/channel-end.ts";
import { channelSize, Direction, initChannel, maxRecordPayload } from "../core/shm/ring.ts";
import { createMapFile, mapFile } from "../runtime/mmap.ts";
import { nextTurn, pipeDoorbell } from "../runtime/pipe-doorbell.ts";
import { IS_DENO, procStat, ROOT, stopAll, tempDir } from "./helpers/agent-process.ts";

const mmap = suite("mmap channel");
mmap.after(stopAll);

const CAP = 64 * 1024;
const runtimes: Record<string, string[]> = {
  node: ["node", "--import", "tsx"],
  deno: [path.join(ROOT, "node_modules/.bin/deno"), "run", "-A"],
};

/** A new channel file, mapped here, and the ring-echo peer on it, running on `peerRuntime`. */
function startEchoPeer(peerRuntime: string) {
  const file = path.join(tempDir(), "channel.mmap");
  createMapFile(file, channelSize(CAP));
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  const mapping = mapFile(file, channelSize(CAP));
  assert.is(mapping.backend, IS_DENO ? "deno" : "koffi");
  initChannel(mapping.bytes, CAP);
  const [cmd, ...pre] = runtimes[peerRuntime];
  const child = spawn(cmd, [...pre, path.join(ROOT, "test/helpers/ring-echo.ts"), file], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return { mapping, child, stderr: () => stderr };
}

async function echoThrough(peerRuntime: string) {
  const { mapping, child, stderr } = startEchoPeer(peerRuntime);
  const end = new ChannelEnd(
    mapping.bytes,
    Direction.AgentToHost,
    Direction.HostToAgent,
    pipeDoorbell(child.stdout, child.stdin),
  );
  const max = maxRecordPayload(CAP);
  // More data than the ring holds, in records up to the maximum, with replies flowing back.
  const sizes = Array.from({ length: 300 }, (_, i) => (i * 7919) % (max + 1));
  const sending = (async () => {
    for (const [i, n] of sizes.entries()) await end.send(Uint8Array.from({ length: n }, (_, j) => (i + j) & 255));
  })();
  for (const [i, n] of sizes.entries()) {
    const back = await end.receive();
    assert.ok(back, `reply ${i}`);
    const expected = Uint8Array.from({ length: n }, (_, j) => (i + j) & 255).reverse();
    assert.equal(back, expected, `record ${i} of ${n} bytes`);
  }
  await sending;
  assert.match(stderr(), new RegExp(`mapped with ${peerRuntime === "deno" ? "deno" : "koffi"}`));

  // Idle: neither side spins. The peer uses (almost) no CPU while nothing is sent.
  const ticks = () => procStat(child.pid!).slice(11, 13).reduce((a, b) => a + Number(b), 0);
  await new Promise((r) => setTimeout(r, 300));
  const before = ticks();
  await new Promise((r) => setTimeout(r, 2000));
  const used = ticks() - before;
  assert.ok(used <= 10, `idle peer used ${used} clock ticks of CPU in 2 s`);

  child.stdin.end();
  await new Promise((r) => child.once("exit", r));
  mapping.close();
}

mmap(
  "records cross to a peer on the same runtime and back, more than the ring holds",
  () => echoThrough(IS_DENO ? "deno" : "node"),
);
mmap(
  "records cross to a peer on the other runtime (koffi and Deno.dlopen share one mapping)",
  () => echoThrough(IS_DENO ? "node" : "deno"),
);

mmap("a consumer that expects a reply polls for it: the peer does not ring; without, it sleeps", async () => {
  const { mapping, child } = startEchoPeer(IS_DENO ? "deno" : "node");
  let rings = 0;
  child.stdout.on("data", (d: Uint8Array) => (rings += d.length)); // every doorbell byte the peer sends
  const end = new ChannelEnd(
    mapping.bytes,
    Direction.AgentToHost,
    Direction.HostToAgent,
    pipeDoorbell(child.stdout, child.stdin),
    { nextTurn },
  );
  const roundTrip = async (i: number, expect: boolean) => {
    if (expect) end.expectRecord(10_000); // far longer than a reply takes: the outcome does not hang on timing
    await end.send(Uint8Array.of(i, 1, 2));
    assert.equal(await end.receive(), Uint8Array.of(2, 1, i));
  };
  try {
    for (let i = 0; i < 20; i++) await roundTrip(i, false); // the peer is up; this end slept for each reply
    assert.ok(rings > 0, "a sleeping consumer is rung");
    await new Promise((r) => setTimeout(r, 200));
    const before = rings;
    for (let i = 0; i < 200; i++) await roundTrip(i, true);
    await new Promise((r) => setTimeout(r, 200));
    assert.is(rings - before, 0, "the peer rang a consumer that was polling");

    // The poll ends with the reply: an idle end waiting for a record sleeps on its doorbell again.
    const waiting = end.receive();
    const cpu = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const used = process.cpuUsage(cpu);
    assert.ok(
      used.user + used.system < 200_000,
      `an idle end used ${(used.user + used.system) / 1000} ms of CPU in 1 s`,
    );
    await end.send(Uint8Array.of(9));
    assert.equal(await waiting, Uint8Array.of(9), "the reply wakes it");
  } finally {
    child.stdin.end();
    await new Promise((r) => child.once("exit", r));
    end.detach();
    mapping.close();
  }
});

mmap("a channel mapped by its recorded identity is refused once replaced, or behind a link", () => {
  const dir = tempDir();
  const file = path.join(dir, "channel.mmap"), other = path.join(dir, "other.mmap");
  createMapFile(file, channelSize(CAP));
  createMapFile(other, channelSize(CAP));
  const { dev, ino } = fs.statSync(file);
  // Mapped, as the old agent holds it during a hand-over: its inode cannot be reused by a new file meanwhile.
  const held = mapFile(file, channelSize(CAP), { dev, ino }); // the file recorded maps
  try {
    fs.rmSync(file);
    fs.symlinkSync(other, file);
    assert.throws(() => mapFile(file, channelSize(CAP), { dev, ino }), /cannot open|ELOOP|symbolic link/i);
    fs.rmSync(file);
    fs.copyFileSync(other, file);
    assert.throws(() => mapFile(file, channelSize(CAP), { dev, ino }), /not the channel file it was/);
  } finally {
    held.close();
  }
});

mmap.run();
