// Fault injection against the built agent: closed log pipes, signals with live sessions and
// grandchildren, killed hosts, cut connections, floods, a second start, a full disk, slow readers,
// and random or mutated frames. Each case names the defect it guards against (issue "Faults and bad
// input"). FUZZ_COUNT raises the number of random frames (default 200).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { type Agent, connect, InvalidArgumentError, RemoteError, SessionEndedError } from "../mod.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { generateKey } from "../core/secure/keys.ts";
import { initiate } from "../core/secure/opening.ts";
import { encodeRecord } from "../core/secure/frame-stream.ts";
import { CHALLENGE_SIZE, encodeHello, encodeReply, EncryptionMode, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import {
  agentCommand,
  alive,
  cleanExit,
  hermeticEnv,
  procStat,
  residentKiB,
  runAgentAsync,
  scriptCommand,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
  withFullDisk,
} from "./helpers/agent-process.ts";
import { dial, fakeServer } from "./helpers/net.ts";
import { RING_CAPACITY } from "../agent/sessions.ts";
import { TRANSFER_CHUNK } from "../core/client/files.ts";

const faults = suite("faults e2e");
const KEY = generateKey();
const clients: Agent[] = [];
faults.after(() => {
  for (const c of clients) c.close();
  stopAll();
});

async function client(port: number): Promise<Agent> {
  const c = await connect({ host: "127.0.0.1", port, key: KEY.hex });
  clients.push(c);
  return c;
}

/** User plus system CPU time of a process, in clock ticks (Linux /proc). */
function cpuTicks(pid: number): number {
  const fields = procStat(pid);
  return Number(fields[11]) + Number(fields[12]);
}

/** Pids of the direct children of `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Every descendant of `pid`. */
function descendantsOf(pid: number): number[] {
  return childrenOf(pid).flatMap((c) => [c, ...descendantsOf(c)]);
}

const elapsed = (t0: number) => (performance.now() - t0) / 1000;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

faults("a closed log pipe: the agent keeps serving, does not spin, and stops on SIGTERM", async () => {
  const stateDir = tempDir();
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, "start", "--host", "127.0.0.1", "--port", "0", "--key", KEY.hex], {
    env: hermeticEnv({ AGENT_STATE_DIR: stateDir }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const port = await new Promise<number>((resolve) => {
    let text = "";
    child.stderr!.on("data", (d) => {
      text += d;
      const m = /listening on \S+:(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
  });
  child.stderr!.destroy(); // like `agent start 2>&1 | head -1`: the reader is gone
  try {
    for (let i = 0; i < 3; i++) (await client(port)).close(); // each connection logs a line or two
    await new Promise((r) => setTimeout(r, 300));
    const before = cpuTicks(child.pid!);
    await new Promise((r) => setTimeout(r, 1000));
    const used = cpuTicks(child.pid!) - before;
    assert.ok(used < 20, `the agent used ${used} clock ticks in 1 s with nobody reading its log`);
    const probe = await runAgentAsync(["probe", `127.0.0.1:${port}`, "--key", KEY.hex, "--count", "1"]);
    assert.is(probe.code, 0, probe.stdout + probe.stderr);
    const t0 = performance.now();
    sendSignal(child, "SIGTERM");
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r("still running"), 3000))]);
    assert.ok(
      code !== "still running" && cleanExit(code as number | null),
      `exit after SIGTERM: ${code} (${elapsed(t0).toFixed(1)} s)`,
    );
  } finally {
    sendSignal(child, "SIGKILL");
  }
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  faults(`${signal} with live sessions and grandchildren: gone in under 3 s, nothing left behind`, async () => {
    const agent = await startAgent(["--key", KEY.hex]);
    const c = await client(agent.port);
    const s = await c.openSession("alpha");
    const p = await s.processes.start({ program: "sh", args: ["-c", "sleep 600; echo done"] });
    await s.files.open("held.txt", "w");
    const hostPid = (await s.system.info()).pid;
    await until(() => childrenOf(p.pid).length > 0, "the grandchild started");
    const spare = Number(
      /spare host for alpha ready \(pid (\d+)\)/.exec(
        await agent.waitForLog(/spare host for alpha ready \(pid \d+\)/),
      )![1],
    );
    const everyone = [hostPid, spare, p.pid, ...descendantsOf(p.pid)];
    const t0 = performance.now();
    const code = await agent.stop(signal);
    const took = elapsed(t0);
    assert.ok(cleanExit(code), `exit code ${code}`);
    assert.ok(took < 3, `took ${took.toFixed(1)} s`);
    assert.equal(everyone.filter(alive), [], "no host (in use or spare), process or grandchild left");
    assert.equal(fs.readdirSync(path.join(agent.stateDir, "run")), [], "no channel file left");
    assert.not.ok(fs.existsSync(path.join(agent.stateDir, "agent.sock")), "no control socket left");
  });
}

faults("closing a session whose process has children holding its output: prompt, and they get TERM first", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const c = await client(agent.port);
  const s = await c.openSession("alpha");
  const dir = tempDir(), marker = path.join(dir, "marker"), trapped = path.join(dir, "trapped");
  // A grandchild that records TERM, and a parent that waits on it with the same stdout. The
  // grandchild says when its trap is set: a TERM before that ends it unrecorded (seen under load).
  const p = await s.processes.start({
    program: "sh",
    args: [
      "-c",
      `sh -c 'trap "echo term > ${marker}; exit 0" TERM; : > ${trapped}; while :; do sleep 0.1; done' & sleep 600; echo done`,
    ],
  });
  await until(() => fs.existsSync(trapped) && descendantsOf(p.pid).length >= 2, "the grandchild set its trap");
  const t0 = performance.now();
  await s.close();
  const took = elapsed(t0);
  assert.ok(took < 3, `close took ${took.toFixed(1)} s`);
  await until(() => fs.existsSync(marker), "the grandchild's TERM trap ran", 3000);
  assert.is(fs.readFileSync(marker, "utf8").trim(), "term");
  await agent.stop();
});

faults("a host killed while the agent is blocked on its full ring fails only that session", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const c = await client(agent.port);
  const victim = await c.openSession("alpha");
  const bystander = await c.openSession("alpha");
  const hostPid = (await victim.system.info()).pid;
  const p = await victim.processes.start({ program: "sleep", args: ["60"] }); // never reads stdin
  const chunk = new Uint8Array(64 * 1024);
  const writes = Array.from({ length: 200 }, () => p.write(chunk).then(() => null, (e) => e as Error)); // 12.5 MiB: more than the ring
  await new Promise((r) => setTimeout(r, 1500)); // the host is stuck on the first write; the agent on the ring
  const t0 = performance.now();
  process.kill(hostPid, "SIGKILL");
  const settled = await Promise.race([
    Promise.all(writes),
    new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
  ]);
  assert.ok(settled, `the victim's requests were answered within 10 s\n${agent.stderr()}`);
  const results = settled!;
  const failed = results.filter((r) => r instanceof Error);
  assert.ok(
    failed.length > 0 && failed.every((e) => e instanceof SessionEndedError),
    `writes failed with ${failed[0]?.name}`,
  );
  assert.ok(elapsed(t0) < 5, `the victim heard in ${elapsed(t0).toFixed(1)} s`);
  assert.not.ok(c.client.isClosed, "the connection survived");
  assert.is(
    await bystander.system.productRoot(),
    bystander.productRoot,
    "the other session on the same connection goes on",
  );
  await agent.stop();
});

for (const moment of ["at rest", "mid-read", "mid-write"] as const) {
  faults(`kill -9 of a host ${moment}: its session fails promptly, the agent serves the rest`, async () => {
    const agent = await startAgent(["--key", KEY.hex]);
    const c = await client(agent.port);
    const s = await c.openSession("alpha");
    const hostPid = (await s.system.info()).pid;
    let work: Promise<unknown> = Promise.resolve();
    let afterKill = (): Promise<unknown> => work;
    if (moment === "mid-read") {
      await s.files.writeFile("big.bin", new Uint8Array(32 * 1024 * 1024));
      // Mid-read by construction: the first chunk is in, and the reader takes no more until the host is
      // killed, so at most a window of the 32 MiB has been asked for: the read cannot finish first.
      const chunks = s.files.readStream("big.bin")[Symbol.asyncIterator]();
      await chunks.next();
      afterKill = async () => {
        while (!(await chunks.next()).done);
      };
    } else if (moment === "mid-write") {
      work = s.files.writeFile(
        "big.bin",
        (async function* () {
          for (let i = 0; i < 512; i++) yield new Uint8Array(256 * 1024);
        })(),
      );
    }
    await new Promise((r) => setTimeout(r, moment === "at rest" ? 0 : 100));
    const t0 = performance.now();
    process.kill(hostPid, "SIGKILL");
    const error = moment === "at rest"
      ? await until(() => s.ended !== null, "the session ended").then(() => s.ended)
      : await afterKill().then(() => null, (e) => e);
    assert.instance(error, SessionEndedError, `ended with ${error}`);
    assert.is((error as SessionEndedError).code, "host-failed");
    assert.ok(elapsed(t0) < 5, `${elapsed(t0).toFixed(1)} s`);
    const other = await c.openSession("alpha");
    assert.is((await other.files.stat(".")).type, "directory");
    await agent.stop();
  });
}

faults(
  "a connection cut mid-transfer and resumed through a new one: the file checks out, output arrives exactly once",
  async () => {
    const agent = await startAgent(["--key", KEY.hex]);
    const first = await client(agent.port);
    const s = await first.openSession("alpha");
    const data = crypto.randomBytes(24 * 1024 * 1024);
    const p = await s.processes.start({
      program: "sh",
      args: ["-c", "i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done"],
    });
    const upload = s.files.writeFile("up.bin", data);
    await new Promise((r) => setTimeout(r, 150));
    first.client.frames.stream.close(); // the network cuts the connection mid-transfer
    await new Promise((r) => setTimeout(r, 200));
    const second = await client(agent.port);
    await s.resume(second.client);
    assert.is(await upload, data.length);
    assert.is((await s.files.sha256("up.bin")).sha256, crypto.createHash("sha256").update(data).digest("hex"));
    const out = new TextDecoder().decode(await p.output()).trim().split("\n");
    assert.is(out.length, 3000);
    assert.equal(out.slice(0, 3), ["line0", "line1", "line2"]);
    assert.is(new Set(out).size, 3000, "no line twice");
    const down = crypto.createHash("sha256");
    for await (const chunk of s.files.readStream("up.bin")) down.update(chunk);
    assert.is(down.digest("hex"), crypto.createHash("sha256").update(data).digest("hex"));
    await s.close();
    await agent.stop();
  },
);

faults(
  "a cut while the host's ring is full: a close sent again after the resume waits for the write left waiting",
  async () => {
    const agent = await startAgent(["--key", KEY.hex]);
    const [first, monitor] = [await client(agent.port), await client(agent.port)];
    const s = await first.openSession("alpha");
    const hostPid = (await s.system.info()).pid;
    const file = await s.files.open("held.bin", "w");
    const chunks = Array.from({ length: RING_CAPACITY / TRANSFER_CHUNK }, () => crypto.randomBytes(TRANSFER_CHUNK));
    process.kill(hostPid, "SIGSTOP"); // the host reads nothing: the ring fills, and the agent holds the last write
    try {
      const writes = chunks.map((c, i) => file.write(c, i * TRANSFER_CHUNK));
      const closed = file.close(); // right behind the writes, as writeFile sends it
      const all = chunks.length * TRANSFER_CHUNK;
      const received = async () => (await monitor.listSessions())[0].attachments?.[0]?.inFlightBytes ?? 0;
      // Every write taken, the last one waiting for room in the ring; the close not read behind it.
      await until(async () => (await received()) >= all, "the agent to take every write"); // each body: data and its fields
      first.client.frames.stream.close(); // the network cuts the connection
      await pause(100);
      await s.resume((await client(agent.port)).client); // the close is sent again, on the new connection
      await pause(200); // time for it to pass the write left waiting, were it let
      process.kill(hostPid, "SIGCONT");
      assert.equal(await Promise.all(writes), chunks.map(() => TRANSFER_CHUNK));
      await closed;
    } finally {
      if (alive(hostPid)) process.kill(hostPid, "SIGCONT"); // a failure above is the one to report
    }
    const sha = crypto.createHash("sha256");
    for (const c of chunks) sha.update(c);
    assert.is((await s.files.sha256("held.bin")).sha256, sha.digest("hex"));
    await s.close();
    await agent.stop();
  },
);

faults("one failed read of a pipelined readStream leaves no unhandled rejection in the product's process", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const [cmd, ...pre] = scriptCommand();
  const r = spawnSync(cmd, [...pre, path.join("test", "helpers", "read-stream-fail.ts")], {
    env: hermeticEnv({ PORT: String(agent.port), KEY: KEY.hex }),
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /caught SessionEndedError[\s\S]*survived/);
  await agent.stop();
});

faults(
  "a handshake flood, 70% hostile (stalling, dripping, garbage): every legitimate client gets through",
  async () => {
    const agent = await startAgent(["--key", KEY.hex, "--max-handshakes", "20"]);
    const hostile: net.Socket[] = [];
    const timers: Array<ReturnType<typeof setInterval>> = [];
    const legitTimes: number[] = [];
    const legitErrors: string[] = [];
    const opens: Promise<void>[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const kind = i % 10; // 0-2 legitimate, 3-5 stall, 6-7 drip, 8-9 garbage
        if (kind < 3) {
          const t0 = performance.now();
          opens.push(
            AgentClient.open(await dial(agent.port), { key: KEY.bytes, provider: webCryptoProvider })
              .then(async (c) => {
                await c.ping();
                legitTimes.push(elapsed(t0));
                c.close();
              }, (e) => void legitErrors.push((e as Error).message)),
          );
          continue;
        }
        const s = net.connect(agent.port, "127.0.0.1");
        s.on("error", () => {});
        hostile.push(s);
        if (kind >= 6 && kind < 8) timers.push(setInterval(() => s.writable && s.write(new Uint8Array([0x5f])), 1000));
        if (kind >= 8) s.on("connect", () => s.write(crypto.randomBytes(24)));
      }
      await Promise.all(opens);
      legitTimes.sort((a, b) => a - b);
      assert.equal(legitErrors, []);
      assert.is(legitTimes.length, 90);
      const p99 = legitTimes[Math.floor(legitTimes.length * 0.99)];
      assert.ok(p99 < 5, `legitimate p99 ${p99.toFixed(2)} s`);
    } finally {
      timers.forEach(clearInterval);
      hostile.forEach((s) => s.destroy());
      await agent.stop();
    }
  },
);

faults("a connection closed before the key reply is reported as closed, not as a wrong key", async () => {
  const server = await fakeServer((socket) => {
    let got = 0;
    socket.on("data", (d) => {
      got += d.length;
      if (got === 24) {
        socket.write(
          encodeReply({ mode: EncryptionMode.Key, version: PROTOCOL_VERSIONS.max, agent: PROTOCOL_VERSIONS }),
        );
        socket.write(new Uint8Array(CHALLENGE_SIZE));
      } else if (got > 24) socket.destroy(); // message 1 arrived: hang up without a word
    });
  });
  try {
    const r = await runAgentAsync(["probe", `127.0.0.1:${server.port}`, "--key", KEY.hex]);
    assert.is.not(r.code, 7, `probe said: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /closed the connection/);
    assert.not.match(r.stdout + r.stderr, /key is not one the agent accepts|wrong key/i);
    const e = await initiate(await dial(server.port), { key: KEY.bytes, provider: webCryptoProvider }).then(
      () => null,
      (e) => e,
    );
    assert.is(e?.name, "ConnectionClosedError");
  } finally {
    server.close();
  }
});

faults("NUL bytes in a path, program, argument or environment variable are invalid arguments", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const s = await (await client(agent.port)).openSession("alpha");
  const cases: Array<[string, Promise<unknown>, RegExp]> = [
    ["path", s.files.stat("a\0b"), /"path"/],
    ["program", s.processes.start({ program: "ls\0x" }), /"program"/],
    ["argument", s.processes.start({ program: "ls", args: ["-l", "a\0b"] }), /"args"/],
    ["environment", s.processes.start({ program: "ls", env: { A: "x\0y" } }), /"env"/],
    ["move target", s.files.move("x", "y\0z"), /"to"/],
  ];
  for (const [what, call, field] of cases) {
    const e = await call.then(() => null, (e) => e);
    assert.instance(e, InvalidArgumentError, what);
    assert.match(e.message, field, what);
  }
  assert.is((await s.files.stat(".")).type, "directory", "the session goes on");
  await agent.stop();
});

faults("a second start on a live state directory refuses and leaves the running agent's files alone", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const s = await (await client(agent.port)).openSession("alpha");
  const channelFile = path.join(agent.stateDir, "run", `${s.id}.mmap`);
  assert.ok(fs.existsSync(channelFile));
  const second = await runAgentAsync(["start", "--host", "127.0.0.1", "--port", "0", "--key", KEY.hex], {
    AGENT_STATE_DIR: agent.stateDir,
  });
  assert.is.not(second.code, 0);
  assert.match(second.stderr, /already running/);
  assert.not.match(second.stderr, /removed \d+ channel file/);
  assert.ok(fs.existsSync(channelFile), "the live session's channel file is still there");
  assert.is((await s.files.stat(".")).type, "directory", "the live session still works");
  await agent.stop();
});

faults("SIGHUP neither kills the agent nor ends sessions; a later SIGTERM leaves nothing behind", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const s = await (await client(agent.port)).openSession("alpha");
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/SIGHUP/);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(alive(agent.pid), "still running");
  assert.is((await s.files.stat(".")).type, "directory", "the session survived");
  assert.ok(cleanExit(await agent.stop()));
  assert.equal(fs.readdirSync(path.join(agent.stateDir, "run")), []);
  assert.not.ok(fs.existsSync(path.join(agent.stateDir, "agent.sock")));
});

faults("CLI calls in the tests never see the machine's real state directory", async () => {
  const r = await runAgentAsync(["status"]);
  const socket = /control socket answers at (\S+)\)/.exec(r.stderr)?.[1] ?? r.stderr;
  assert.ok(socket.startsWith(os.tmpdir()), `status looked at ${socket}`);
});

faults("a full disk gives a no-space error and loses nothing else", async () => {
  await withFullDisk(async (dir) => {
    const agent = await startAgent(["--key", KEY.hex]);
    const s = await (await client(agent.port)).openSession("alpha");
    const e = await s.files.writeFile(path.join(dir, "big.bin"), new Uint8Array(4 * 1024 * 1024)).then(
      () => null,
      (e) => e,
    );
    assert.instance(e, RemoteError);
    assert.is(e.code, "no-space");
    assert.is((await s.files.stat(".")).type, "directory", "the session goes on");
    await agent.stop();
  });
});

faults("a process flooding output to a slow reader: agent memory stays bounded, every byte arrives", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const bytes = 64 * 1024 * 1024;
  const [cmd, ...pre] = scriptCommand();
  const reader = spawn(cmd, [...pre, path.join("test", "helpers", "slow-reader.ts")], {
    env: hermeticEnv({ PORT: String(agent.port), KEY: KEY.hex, BYTES: String(bytes) }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  reader.stdout!.on("data", (d) => (out += d));
  reader.stderr!.on("data", (d) => (out += d));
  const done = new Promise<void>((r) => reader.on("exit", () => r()));
  try {
    await until(() => out.includes("started"), "the slow reader started");
    const before = residentKiB(agent.pid);
    sendSignal(reader, "SIGSTOP"); // it stops reading its socket
    await new Promise((r) => setTimeout(r, 2500));
    const grownMiB = (residentKiB(agent.pid) - before) / 1024;
    sendSignal(reader, "SIGCONT");
    assert.ok(grownMiB < 48, `agent grew ${grownMiB.toFixed(1)} MiB with a stopped reader`);
    await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
    assert.match(out, new RegExp(`received ${bytes} exit 0`));
  } finally {
    sendSignal(reader, "SIGCONT");
    sendSignal(reader, "SIGKILL");
    await agent.stop();
  }
});

faults("random and mutated frames, before and after authentication, never break the agent", async () => {
  const count = Number(process.env.FUZZ_COUNT ?? 200);
  const agent = await startAgent(["--key", KEY.hex]);
  const rss0 = residentKiB(agent.pid);
  const rand = (n: number) => new Uint8Array(crypto.randomBytes(n));
  for (let i = 0; i < count; i++) {
    // From many loopback addresses: random key proofs are failed authentications, which the agent rate-limits per address.
    const stream = await dial(agent.port, `127.0.1.${1 + (i % 250)}`);
    const stage = i % 4;
    if (stage === 0) await stream.write(rand(1 + (i % 64))); // before the hello
    else if (stage === 1) {
      await stream.write(new Uint8Array([...encodeHello(PROTOCOL_VERSIONS), ...encodeRecord(rand(i % 100))])); // a bad message 1
    } else {
      // After authentication: frames with random targets, codes and payloads, some of them session frames.
      const { frames } = await initiate(stream, { key: KEY.bytes, provider: webCryptoProvider });
      for (let j = 0; j < 5; j++) {
        const target = stage === 2 ? (i + j) % 3 : crypto.randomInt(0, 2 ** 32);
        await frames.send({
          target,
          code: crypto.randomInt(0, 0x10000),
          token: crypto.randomInt(0, 2 ** 32),
          payload: rand(j * 37),
        }).catch(() => {});
      }
    }
    await new Promise((r) => setTimeout(r, 2));
    stream.close();
  }
  const c = await client(agent.port);
  assert.ok((await c.ping()).rttMs >= 0, "a legitimate client is still served");
  const s = await c.openSession("alpha");
  assert.is((await s.files.stat(".")).type, "directory");
  assert.ok(residentKiB(agent.pid) - rss0 < 64 * 1024, "memory bounded");
  await agent.stop();
});

faults.run();
