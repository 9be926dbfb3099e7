// Concurrent requests inside one session (docs/protocol.md §6 "Concurrency"): the built agent, a
// real host, the client library over loopback. Each test is an exchange a product would drive.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type Agent, connect, FrameTooLargeError, RemoteError, SessionEndedError } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import {
  hermeticEnv,
  residentKiB,
  type RunningAgent,
  scriptCommand,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
} from "./helpers/agent-process.ts";

const concurrency = suite("concurrent requests e2e");
const KEY = generateKey();
let agent: RunningAgent;
const clients: Agent[] = [];

concurrency.before(async () => {
  agent = await startAgent(["--key", KEY.hex]);
});
concurrency.after(async () => {
  clients.forEach((c) => c.close());
  await agent?.stop();
  stopAll();
});

async function client(): Promise<Agent> {
  const c = await connect({ host: "127.0.0.1", port: agent.port, key: KEY.hex });
  clients.push(c);
  return c;
}

/** Settles with "pending" if `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<"pending">((r) => (timer = setTimeout(() => r("pending"), ms)))]).finally(() =>
    clearTimeout(timer)
  );
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

concurrency("a process that never reads its stdin holds up only the writes to it", async () => {
  const c = await client();
  const s = await c.openSession("alpha");
  const deaf = await s.processes.start({ program: "sleep", args: ["300"] });
  const tooLarge = await deaf.write(new Uint8Array(1024 * 1024)).then(() => null, (e) => e);
  assert.instance(tooLarge, FrameTooLargeError, "a write larger than a frame is refused before it is sent");
  const first = deaf.write(new Uint8Array(512 * 1024)).then(() => "written", (e) => e); // more than a pipe holds
  const second = deaf.write("after the first").then(() => "written", (e) => e);
  // Everything else in the session goes on meanwhile.
  assert.is((await s.files.stat(".")).type, "directory");
  const echo = await s.processes.start({ program: "cat" });
  await echo.write("hello\n");
  await echo.closeStdin();
  assert.is(text(await echo.output()), "hello\n");
  await s.files.writeFile("note.txt", "written meanwhile");
  assert.is(text(await s.files.readFile("note.txt")), "written meanwhile");
  assert.is(await within(first, 200), "pending");
  assert.is(await within(second, 0), "pending", "the second write waits behind the first, in order");
  // Its end fails the writes still waiting, each with a typed error.
  await deaf.signal("SIGKILL");
  for (const write of [first, second]) assert.instance(await within(write, 10_000), RemoteError);
  await s.close();
});

concurrency(
  "a batch read that meets a FIFO holds up nothing else in the session; the FIFO is read once written",
  async () => {
    const dir = tempDir();
    const fifo = path.join(dir, "fifo");
    assert.is(spawnSync("mkfifo", [fifo]).status, 0, "mkfifo");
    fs.writeFileSync(path.join(dir, "plain.txt"), "plain");
    const c = await client();
    const s = await c.openSession("alpha");
    // No writer yet: reading the FIFO waits, as `cat` would.
    const read = s.files.readFiles([path.join(dir, "plain.txt"), fifo]);
    const stat = within(s.files.stat(dir), 5_000);
    try {
      assert.not.equal(await stat, "pending", "a stat in the same session replied while the FIFO had no writer");
      assert.is(await within(read, 200), "pending");
    } finally {
      const writer = await fs.promises.open(fifo, "w"); // opens once the host reads it; also frees a host stuck on it
      await writer.write("through the fifo");
      await writer.close();
    }
    const files = await read;
    assert.equal(files.map((f) => text(f.data)), ["plain", "through the fifo"]);
    assert.is(files[1].sha256, crypto.createHash("sha256").update("through the fifo").digest("hex"));
    // And the other way: a FIFO has no positions, so the writes go in order.
    const reader = fs.promises.readFile(fifo, "utf8");
    await s.files.writeFile(fifo, "back through it");
    assert.is(await reader, "back through it");
    const both = await s.files.open(fifo, "r+"); // read and write: opens without waiting for a peer
    const seek = await both.seek(10).then(() => null, (e) => e);
    assert.instance(seek, RemoteError);
    assert.match(seek.message, /FIFO or a device: it has no position/);
    await both.close();
    await s.close();
  },
);

concurrency("a flood of large writes to a process that never reads: host and agent memory stay bounded", async () => {
  const c = await client();
  const s = await c.openSession("alpha");
  const hostPid = (await s.system.info()).pid;
  const deaf = await s.processes.start({ program: "sleep", args: ["300"] });
  const [hostBefore, agentBefore] = [residentKiB(hostPid), residentKiB(agent.pid)];
  const chunk = new Uint8Array(1000 * 1024);
  const writes = Array.from({ length: 256 }, () => deaf.write(chunk).then(() => null, (e) => e)); // 250 MiB offered at once
  await new Promise((r) => setTimeout(r, 2500));
  const hostGrowth = (residentKiB(hostPid) - hostBefore) / 1024;
  const agentGrowth = (residentKiB(agent.pid) - agentBefore) / 1024;
  // What passes is the host's cap (16 MiB of bodies) and the ring; the rest waits in the client. Uncollected garbage counts too.
  assert.ok(hostGrowth < 96, `host grew ${hostGrowth.toFixed(1)} MiB while 250 MiB were offered`);
  assert.ok(agentGrowth < 96, `agent grew ${agentGrowth.toFixed(1)} MiB while 250 MiB were offered`);
  // A killed host fails every request in flight, promptly, with the session's end.
  const wait = deaf.wait().then(() => null, (e) => e);
  process.kill(hostPid, "SIGKILL");
  const t0 = performance.now();
  const errors = await Promise.all([...writes, wait]);
  assert.ok(performance.now() - t0 < 5000, `in-flight requests failed after ${(performance.now() - t0).toFixed(0)} ms`);
  for (const e of errors) {
    assert.instance(e, SessionEndedError);
    assert.is((e as SessionEndedError).code, "host-failed");
  }
  const other = await c.openSession("alpha");
  assert.is((await other.files.stat(".")).type, "directory");
  await other.close();
});

concurrency("a client that stops reading does not hold up the other clients of its session", async () => {
  const [cmd, ...pre] = scriptCommand();
  const reader = spawn(cmd, [...pre, path.join("test", "helpers", "slow-reader.ts")], {
    env: hermeticEnv({ PORT: String(agent.port), KEY: KEY.hex, BYTES: String(256 * 1024 * 1024) }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  reader.stdout!.on("data", (d) => (out += d));
  reader.stderr!.on("data", (d) => (out += d));
  try {
    await until(() => /started [0-9a-f]{32}/.test(out), "the slow reader started");
    const sessionId = /started ([0-9a-f]{32})/.exec(out)![1];
    const c = await client();
    const s = await c.attachSession(sessionId);
    sendSignal(reader, "SIGSTOP"); // it stops reading its socket; its attachment fills to the replay bound
    await new Promise((r) => setTimeout(r, 3000));
    assert.is((await within(s.files.stat("."), 10_000) as { type: string }).type, "directory");
    const run = await within(s.processes.run({ program: "echo", args: ["still served"] }), 10_000);
    assert.is(text((run as { stdout: Uint8Array }).stdout), "still served\n");
    await s.detach();
  } finally {
    sendSignal(reader, "SIGCONT");
    sendSignal(reader, "SIGKILL");
  }
});

concurrency(
  "a cut connection resumed while many requests run: every reply and every output byte exactly once",
  async () => {
    const first = await client();
    const s = await first.openSession("alpha");
    const files = Array.from({ length: 100 }, (_, i) => `f${i}.txt`);
    for (let i = 0; i < files.length; i += 25) {
      await Promise.all(
        files.slice(i, i + 25).map((f, j) => s.files.writeFile(f, "x".repeat(i + j))),
      );
    }
    const data = crypto.randomBytes(8 * 1024 * 1024);
    const upload = s.files.writeFile("up.bin", data);
    const stats = files.map((f) => s.files.stat(f));
    const runs = Array.from(
      { length: 10 },
      (_, i) =>
        s.processes.run({
          program: "sh",
          args: ["-c", `i=0; while [ $i -lt 500 ]; do echo ${i}-$i; i=$((i+1)); done`],
        }),
    );
    await new Promise((r) => setTimeout(r, 50));
    first.client.frames.stream.close(); // the network cuts the connection with all of that in flight
    await new Promise((r) => setTimeout(r, 200));
    const second = await client();
    await s.resume(second.client);
    assert.is(await upload, data.length);
    (await Promise.all(stats)).forEach((st, i) => assert.is(st.size, i, files[i]));
    for (const [i, r] of (await Promise.all(runs)).entries()) {
      const lines = text(r.stdout).trim().split("\n");
      assert.is(lines.length, 500, `run ${i}: every line`);
      assert.equal(lines, Array.from({ length: 500 }, (_, j) => `${i}-${j}`), `run ${i}: once each, in order`);
    }
    assert.is((await s.files.sha256("up.bin")).sha256, crypto.createHash("sha256").update(data).digest("hex"));
    await s.close();
  },
);

concurrency(
  "downloads in two sessions, one connection cut and resumed mid-way: every byte of both arrives once (the agent reuses the memory of transfer records)",
  async () => {
    let connection = await client();
    const cut = await connection.openSession("alpha");
    const steady = await (await client()).openSession("alpha");
    const data = [crypto.randomBytes(24 << 20), crypto.randomBytes(24 << 20)];
    await cut.files.writeFile("a.bin", data[0]);
    await steady.files.writeFile("b.bin", data[1]);
    const download = async (s: typeof cut, file: string, onChunk = (_n: number) => {}) => {
      const got: Uint8Array[] = [];
      for await (const c of s.files.readStream(file)) onChunk(got.push(c));
      return Buffer.concat(got);
    };
    for (let round = 0; round < 2; round++) {
      let resumed: Promise<void> | null = null;
      const down = download(cut, "a.bin", (n) => {
        if (n !== 4) return;
        connection.client.frames.stream.close(); // cut with requests and replies in flight
        resumed = (async () => {
          await new Promise((r) => setTimeout(r, 100));
          connection = await client();
          await cut.resume(connection.client);
        })();
      });
      const both = await within(Promise.all([down, download(steady, "b.bin")]), 60_000);
      assert.ok(both !== "pending", `round ${round}: both downloads finished`);
      assert.ok(resumed, `round ${round}: the connection was cut mid-way`);
      await resumed;
      const [gotCut, gotSteady] = both as Buffer[];
      assert.ok(gotCut.equals(data[0]), `round ${round}: the cut session's file, byte for byte`);
      assert.ok(gotSteady.equals(data[1]), `round ${round}: the other session's file, byte for byte`);
      assert.ok((await download(cut, "a.bin")).equals(data[0]), `round ${round}: read again after the resume`);
    }
    await cut.close();
    await steady.close();
  },
);

concurrency.run();
