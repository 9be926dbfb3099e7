// Outbound mode as an operator and a product see it: the built agent dials a
// TLS listener started by the test (certificates made by the test).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { type Agent, type AgentListener, listen } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { backoffDelay } from "../agent/dialer.ts";
import {
  cleanExit,
  hermeticEnv,
  ROOT,
  runAgentAsync,
  type RunningAgent,
  scriptCommand,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
} from "./helpers/agent-process.ts";
import { spawn } from "node:child_process";
import { caSigned, selfSigned, type TestCert } from "./helpers/certs.ts";

const outbound = suite("outbound e2e");
const listeners: AgentListener<Agent>[] = [];
const agents: RunningAgent[] = [];
outbound.after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await Promise.all(listeners.map((l) => l.close().catch(() => {})));
  stopAll();
});

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const CONNECTED = /outbound \S+: connected/;

async function startListener(cert: TestCert, table: Record<string, string>, port = 0, events: string[] = []) {
  const l = await listen({
    host: "127.0.0.1",
    port,
    cert: cert.cert,
    key: cert.key,
    agents: table,
    keepaliveSeconds: 2,
    onEvent: (e) => events.push(`${e.type} ${"server" in e ? e.server : ""} ${"reason" in e ? e.reason : ""}`),
  });
  listeners.push(l);
  return l;
}

async function dialer(args: string[], ready: RegExp = CONNECTED) {
  const a = await startAgent(["--no-listen", "--handshake-timeout", "2", ...args], { listenFlags: false, ready });
  agents.push(a);
  return a;
}

/** A listener with a self-signed certificate, an agent dialing it with that pinned, and the connected agent. */
async function pinnedAgent(server: string) {
  const cert = await selfSigned();
  const key = generateKey().hex;
  const l = await startListener(cert, { [server]: key });
  const a = await dialer(["--connect", `127.0.0.1:${l.port}`, "--fingerprint", cert.fingerprint, "--key", key]);
  return { l, a, agent: await l.waitForAgent(server, 10_000) };
}

async function status(a: RunningAgent) {
  return JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: a.stateDir })).stdout);
}

outbound(
  "an agent dials a listener (pinned certificate); the product runs a command and a file round trip",
  async () => {
    const { l, a, agent: web1 } = await pinnedAgent("web1");
    assert.equal(l.connected(), ["web1"]);
    const s = await web1.openSession("deploy");
    const r = await s.processes.run({ program: "sh", args: ["-c", "echo outbound; exit 5"] });
    assert.equal([text(r.stdout), r.code], ["outbound\n", 5]);
    const data = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251);
    await s.files.writeFile("roundtrip.bin", data);
    assert.equal(await s.files.readFile("roundtrip.bin"), data);
    await s.close();
    const st = await status(a);
    assert.is(st.listen, null);
    assert.equal([st.outbound[0].state, st.outbound[0].connections], ["connected", 1]);
    await a.stop();
  },
);

outbound("with a CA file the listener's certificate and name are verified", async () => {
  const cert = await caSigned();
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "ca.pem"), cert.ca);
  const key = generateKey().hex;
  const l = await startListener(cert, { db1: key });
  const a = await dialer(["--connect", `127.0.0.1:${l.port}`, "--ca", path.join(dir, "ca.pem"), "--key", key]);
  const db1 = await l.waitForAgent("db1", 10_000);
  assert.ok((await db1.ping()).rttMs >= 0);
  await a.stop();
});

outbound("the listener restarts and the agent comes back, without a storm", async () => {
  const cert = await selfSigned();
  const key = generateKey().hex;
  const events: string[] = [];
  const l1 = await startListener(cert, { app: key }, 0, events);
  const port = l1.port;
  const a = await dialer(["--connect", `127.0.0.1:${port}`, "--fingerprint", cert.fingerprint, "--key", key]);
  await l1.waitForAgent("app", 10_000);
  await l1.close();
  await a.waitForLog(/outbound \S+: .*; retrying in \d+\.\d s/);
  const waiting = (await status(a)).outbound[0];
  assert.is(waiting.state, "waiting");
  assert.ok(waiting.nextRetryAt && waiting.lastError);
  const l2 = await startListener(cert, { app: key }, port);
  const back = await l2.waitForAgent("app", 15_000);
  assert.ok((await back.ping()).rttMs >= 0);
  assert.is((await status(a)).outbound[0].connections, 2);
  await a.stop();
});

outbound("untrusted, expired and mismatched certificates each fail with a clear error; nothing is sent", async () => {
  const key = generateKey().hex;
  const good = await selfSigned(), expired = await selfSigned({ expired: true }), other = await selfSigned();
  const cases: Array<[TestCert, string[], RegExp]> = [
    [good, [], /the listener's certificate is not trusted: it is self-signed/],
    [expired, ["--fingerprint", expired.fingerprint], /the pinned certificate is outside its validity/],
    [
      good,
      ["--fingerprint", other.fingerprint],
      /certificate fingerprint mismatch: the listener presented [0-9A-F:]{95}, expected/,
    ],
  ];
  for (const [cert, trust, message] of cases) {
    const events: string[] = [];
    const l = await startListener(cert, { s1: key }, 0, events);
    // A roomy handshake timeout: on a loaded machine a 2 s one can expire before the certificate is judged.
    const a = await dialer(
      ["--connect", `127.0.0.1:${l.port}`, "--key", key, ...trust, "--handshake-timeout", "10"],
      message,
    );
    assert.match(a.stderr(), message);
    const st = (await status(a)).outbound[0];
    assert.match(st.lastError, message);
    assert.is(l.connected().length, 0, "no agent connected");
    assert.not.ok(events.some((e) => e.startsWith("connected")));
    await a.stop();
    await l.close();
  }
  // An expired certificate from a trusted CA file is refused too.
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "self.pem"), expired.cert);
  const l = await startListener(expired, { s1: key });
  const a = await dialer([
    "--connect",
    `127.0.0.1:${l.port}`,
    "--key",
    key,
    "--ca",
    path.join(dir, "self.pem"),
    "--handshake-timeout",
    "10",
  ], /not trusted: it has expired/);
  await a.stop();
});

outbound(
  "an untrusted listener stays untrusted on every retry (Deno's TLS layer reports later connections as authorized)",
  async () => {
    const key = generateKey().hex;
    const cert = await selfSigned();
    const events: string[] = [];
    const l = await startListener(cert, { s1: key }, 0, events);
    const a = await dialer(
      ["--connect", `127.0.0.1:${l.port}`, "--key", key, "--handshake-timeout", "10"],
      /(retrying in[\s\S]*){3}/,
    );
    assert.is((a.stderr().match(/not trusted: it is self-signed/g) ?? []).length, 3, a.stderr());
    assert.is(l.connected().length, 0, "never connected");
    assert.not.ok(events.some((e) => e.startsWith("connected")));
    await a.stop();
    await l.close();
  },
);

outbound("an unknown or revoked key is rejected at the listener, and no session is opened", async () => {
  const cert = await selfSigned();
  const known = generateKey().hex, stranger = generateKey().hex;
  const events: string[] = [];
  const l = await startListener(cert, { known }, 0, events);
  const rejected = /the listener does not accept this agent's key \(key id [0-9a-f]{12}\)/;
  const a = await dialer([
    "--connect",
    `127.0.0.1:${l.port}`,
    "--fingerprint",
    cert.fingerprint,
    "--key",
    stranger,
    "--handshake-timeout",
    "10",
  ], rejected);
  assert.ok(events.some((e) => /^rejected .*does not accept/.test(e)));
  assert.is(
    fs.existsSync(path.join(a.stateDir, "run")) ? fs.readdirSync(path.join(a.stateDir, "run")).length : 0,
    0,
    "no session",
  );
  await a.stop();

  const b = await dialer(["--connect", `127.0.0.1:${l.port}`, "--fingerprint", cert.fingerprint, "--key", known]);
  await l.waitForAgent("known", 10_000);
  await l.setAgents({ known: { key: known, revoked: true } });
  await b.waitForLog(/retrying in[\s\S]*does not accept this agent's key[\s\S]*retrying in/, 20_000);
  assert.ok(events.some((e) => /^rejected .*revoked/.test(e)));
  assert.is(l.agent("known"), undefined);
  await b.stop();
});

outbound("a listener that accepts and stalls hits the dial timeout, then a backoff retry", async () => {
  const sockets: net.Socket[] = [];
  let accepted = 0;
  const stall = net.createServer((s) => {
    accepted++;
    sockets.push(s);
    s.on("error", () => {});
  });
  await new Promise<void>((r) => stall.listen(0, "127.0.0.1", () => r()));
  const port = (stall.address() as net.AddressInfo).port;
  const args = ["--connect", `127.0.0.1:${port}`, "--key", generateKey().hex, "--dial-timeout", "2"];
  const a = await dialer(args, /retrying in/);
  assert.match(a.stderr(), /timed out after 2000 ms waiting for the TLS handshake.*\(--dial-timeout/);
  await a.waitForLog(/retrying in[\s\S]*timed out[\s\S]*retrying in/, 15_000);
  assert.ok(accepted >= 2, "it tried again");
  await a.stop();
  sockets.forEach((s) => s.destroy());
  stall.close();
});

outbound("an agent waiting for a listener's TLS answer stops at once", async () => {
  const sockets: net.Socket[] = [];
  const stall = net.createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
  });
  await new Promise<void>((r) => stall.listen(0, "127.0.0.1", () => r()));
  const port = (stall.address() as net.AddressInfo).port;
  // The default dial timeout (60 s): the agent is in the middle of its dial when it is told to stop.
  const a = await dialer(["--connect", `127.0.0.1:${port}`, "--key", generateKey().hex], /outbound: dialing/);
  await new Promise((r) => setTimeout(r, 500));
  const started = performance.now();
  const code = await a.stop();
  const ms = performance.now() - started;
  assert.ok(ms < 5000, `stopped after ${ms.toFixed(0)} ms (a dial held it up)`);
  assert.ok(cleanExit(code), `exit ${code}`);
  sockets.forEach((s) => s.destroy());
  stall.close();
});

outbound("a listener that stays down gets capped, jittered retries, not a spin", async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const a = await dialer(["--connect", `127.0.0.1:${port}`, "--key", generateKey().hex], /retrying in/);
  await new Promise((r) => setTimeout(r, 6000));
  const delays = [...a.stderr().matchAll(/retrying in (\d+\.\d) s/g)].map((m) => Number(m[1]));
  // Windows of 5, 10, 20 s, each at least 0.25 s: a spin would log dozens in 6 s.
  assert.ok(delays.length >= 1 && delays.length <= 5, `${delays.length} attempts in 6 s: ${delays}`);
  delays.forEach((d, i) => assert.ok(d >= 0.2 && d <= 5 * 2 ** i, `retry ${i} in ${d} s`));
  assert.match(a.stderr(), /connection refused/);
  await a.stop();
});

outbound("backoff: full jitter over doubling windows, capped; 20,000 agents losing one listener spread out", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const step = Math.min(60_000, 5000 * 2 ** attempt);
    for (const r of [0, 0.5, 0.999]) {
      const d = backoffDelay(attempt, () => r);
      assert.ok(d >= 250 && d <= step, `attempt ${attempt}: ${d} within [250, ${step}]`);
    }
    assert.ok(backoffDelay(attempt, () => 0.999) > step * 0.99, "the whole window is used");
  }
  assert.is(backoffDelay(50, () => 1), 60_000, "capped at a minute");
  // 20,000 agents whose listener restarted at the same instant: first retries land across five seconds.
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const first = Array.from({ length: 20_000 }, () => backoffDelay(0, random));
  const perSecond = new Map<number, number>();
  for (const t of first) perSecond.set(Math.floor(t / 1000), (perSecond.get(Math.floor(t / 1000)) ?? 0) + 1);
  assert.ok(Math.max(...first) - Math.min(...first) > 4500, "spread over more than 4.5 s");
  assert.ok(
    Math.max(...perSecond.values()) <= 20_000 * 0.22,
    `no second takes more than 22%: ${[...perSecond.values()]}`,
  );
});

outbound("a connection cut mid-command resumes after the reconnect: no output lost or duplicated", async () => {
  const { l, a, agent: w1 } = await pinnedAgent("worker");
  const s = await w1.openSession("jobs");
  const p = await s.processes.start({
    program: "sh",
    args: ["-c", "for i in 1 2 3 4 5 6 7 8; do echo step$i; sleep 0.25; done; exit 3"],
  });
  const got: string[] = [];
  const reading = (async () => {
    for await (const c of p.stdout) got.push(text(c));
  })();
  const deadline = Date.now() + 10_000;
  while (!got.join("").includes("step1") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  w1.client.frames.stream.close(); // the network cuts the connection
  const w2 = await new Promise<Agent>((resolve, reject) => {
    const poll = setInterval(() => {
      const now = l.agent("worker");
      if (now && now !== w1) {
        clearInterval(poll);
        resolve(now);
      }
    }, 20);
    setTimeout(() => {
      clearInterval(poll);
      reject(new Error("agent did not come back"));
    }, 15_000);
  });
  await s.resume(w2.client);
  assert.equal(await p.wait(), { code: 3, signal: null });
  await reading;
  assert.is(got.join(""), "step1\nstep2\nstep3\nstep4\nstep5\nstep6\nstep7\nstep8\n");
  await s.close();
  await a.stop();
});

outbound("probe --tls reports reachability, certificate, trust and key, each with its own exit code", async () => {
  const cert = await selfSigned({ cn: "probe.test" });
  const key = generateKey().hex, other = generateKey().hex;
  const l = await startListener(cert, { me: key });
  const dir = tempDir();
  const keyFile = path.join(dir, "k");
  fs.writeFileSync(keyFile, key, { mode: 0o600 });
  const port = l.port;
  const probe = (...args: string[]) =>
    runAgentAsync(["probe", `127.0.0.1:${port}`, "--tls", "--timeout", "3", ...args], { AGENT_STATE_DIR: dir });

  const ok = await probe("--fingerprint", cert.fingerprint, "--key-file", keyFile);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /certificate\s+CN=probe\.test, issued by CN=probe\.test/);
  assert.match(ok.stdout, /expires in 36\d days/);
  assert.match(ok.stdout, new RegExp(`fingerprint\\s+${cert.fingerprint}`));
  assert.match(ok.stdout, /trusted\s+no: it is self-signed/);
  assert.match(ok.stdout, /key\s+accepted \(key id [0-9a-f]{12}\)/);

  const untrusted = await probe("--key-file", keyFile);
  assert.is(untrusted.code, 10, untrusted.stderr);
  assert.match(untrusted.stderr, /FAILED at certificate: the listener's certificate is not trusted: it is self-signed/);
  const mismatch = await probe("--fingerprint", (await selfSigned()).fingerprint);
  assert.is(mismatch.code, 12);
  const rejected = await probe("--fingerprint", cert.fingerprint, "--key", other);
  assert.is(rejected.code, 7, rejected.stderr);
  assert.match(rejected.stderr, /does not accept this agent's key/);
  const expired = await selfSigned({ expired: true });
  const le = await startListener(expired, {});
  const exp = await runAgentAsync(["probe", `127.0.0.1:${le.port}`, "--tls", "--fingerprint", expired.fingerprint], {
    AGENT_STATE_DIR: dir,
  });
  assert.is(exp.code, 11, exp.stderr);
  assert.match(exp.stderr, /EXPIRED \d+ days ago/);
  await l.close();
  const down = await probe("--fingerprint", cert.fingerprint);
  assert.is(down.code, 4);
});

outbound(
  "a probe is never the server's agent: waitForAgent does not return it, and a connected agent keeps its place",
  async () => {
    const cert = await selfSigned();
    const key = generateKey().hex;
    const events: string[] = [];
    const l = await startListener(cert, { web1: key }, 0, events);
    const dir = tempDir();
    const probe = () =>
      runAgentAsync([
        "probe",
        `127.0.0.1:${l.port}`,
        "--tls",
        "--timeout",
        "3",
        "--fingerprint",
        cert.fingerprint,
        "--key",
        key,
      ], { AGENT_STATE_DIR: dir });

    const waiting = l.waitForAgent("web1", 1500).then(() => "returned", (e: Error) => e.message);
    const before = await probe();
    assert.is(before.code, 0, before.stderr);
    assert.match(before.stdout, /key\s+accepted/);
    assert.is(await waiting, 'server "web1" did not connect within 1.5 s');
    assert.equal(l.connected(), []);
    assert.ok(events.some((e) => e.startsWith("probed web1")), events.join("\n"));

    const a = await dialer(["--connect", `127.0.0.1:${l.port}`, "--fingerprint", cert.fingerprint, "--key", key]);
    const web1 = await l.waitForAgent("web1", 10_000);
    const during = await probe();
    assert.is(during.code, 0, during.stderr);
    assert.is(l.agent("web1"), web1, "the probe did not replace the connected agent");
    const s = await web1.openSession("deploy");
    assert.is((await s.processes.run({ program: "true" })).code, 0);
    await s.close();
    assert.is(events.filter((e) => e.startsWith("connected")).length, 1, events.join("\n"));
    await a.stop();
  },
);

outbound("a half-open connection (listener frozen) is noticed within three heartbeats, then retried", async () => {
  const cert = await selfSigned();
  const key = generateKey().hex;
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "cert.pem"), cert.cert);
  fs.writeFileSync(path.join(dir, "key.pem"), cert.key);
  const runtime = scriptCommand();
  const child = spawn(runtime[0], [...runtime.slice(1), path.join(ROOT, "test/helpers/listener-child.ts")], {
    cwd: ROOT,
    env: {
      ...hermeticEnv(),
      CERT: path.join(dir, "cert.pem"),
      KEY: path.join(dir, "key.pem"),
      AGENT_KEY: key,
      KEEPALIVE: "1",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    for (let i = 0; i < 300 && !/port \d+/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    const port = Number(/port (\d+)/.exec(out)![1]);
    const a = await dialer([
      "--connect",
      `127.0.0.1:${port}`,
      "--fingerprint",
      cert.fingerprint,
      "--key",
      key,
      "--keepalive",
      "1",
    ]);
    // Signal the pid directly: Deno's ChildProcess.kill() delivers only the first signal it is asked for.
    process.kill(child.pid!, "SIGSTOP"); // the TCP connection stays open, but nothing answers any more
    await a.waitForLog(/no traffic for 3 s \(half-open connection\); retrying in/, 15_000);
    await a.stop();
  } finally {
    process.kill(child.pid!, "SIGCONT");
    sendSignal(child, "SIGKILL");
    if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
  }
});

outbound("the example product script runs a command on an agent that dials in", async () => {
  const cert = await selfSigned();
  const key = generateKey().hex;
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "cert.pem"), cert.cert);
  fs.writeFileSync(path.join(dir, "key.pem"), cert.key);
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, "127.0.0.1", () => r()));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const runtime = scriptCommand();
  const product = spawn(runtime[0], [
    ...runtime.slice(1),
    path.join(ROOT, "examples/outbound-product.ts"),
    "web1",
    "echo",
    "hello from web1",
  ], {
    cwd: ROOT,
    env: {
      ...hermeticEnv(),
      PRODUCT_CERT: path.join(dir, "cert.pem"),
      PRODUCT_KEY: path.join(dir, "key.pem"),
      AGENT_KEY: key,
      PRODUCT_PORT: String(port),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "", err = "";
  product.stdout!.on("data", (d) => (out += d));
  product.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((r) => product.on("exit", r));
  for (let i = 0; i < 200 && !err.includes("waiting for server"); i++) await new Promise((r) => setTimeout(r, 50));
  const a = await dialer(["--connect", `127.0.0.1:${port}`, "--fingerprint", cert.fingerprint, "--key", key]);
  const timer = setTimeout(() => product.kill(), 20_000);
  await exited;
  clearTimeout(timer);
  assert.is(out, "hello from web1\n", err);
  assert.match(err, /echo exited with 0/);
  await a.stop();
});

outbound.run();
