// Transfer windows on a long link: the agent behind bench/relay.ts, which adds a round trip on
// loopback. The window grows to fill the link, stays within its cap when the reader stops, shows in
// `agent status` and /metrics, a cut in the middle of a full window resumes with every byte once, and a
// client acknowledging replies never sent is refused without losing what was kept for it.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type Agent, connect, type RemoteSession } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { TRANSFER_WINDOW_MAX_BYTES } from "../core/client/files.ts";
import { ACK_CODE, encodeSessionHeader } from "../core/session/protocol.ts";
import { encodeFields, MetaCode } from "../core/wire/messages.ts";
import { META_TARGET } from "../core/wire/frame.ts";
import { controlPath, requestControl } from "../agent/control.ts";
import type { AgentStatus } from "../agent/server.ts";
import { type Relay, startRelay } from "../bench/relay.ts";
import { runAgentAsync, type RunningAgent, startAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

const wan = suite("transfer windows e2e");
const KEY = generateKey();
const MIB = 1024 * 1024;
const RTT_MS = 40;
const clients: Agent[] = [];
const relays: Relay[] = [];
wan.after(async () => {
  for (const c of clients) c.close();
  for (const r of relays) await r.close();
  stopAll();
});

async function longLink(agent: RunningAgent): Promise<Relay> {
  const relay = await startRelay(0, agent.port, RTT_MS);
  relays.push(relay);
  return relay;
}

async function client(port: number): Promise<Agent> {
  const c = await connect({ host: "127.0.0.1", port, key: KEY.hex });
  clients.push(c);
  return c;
}

/** The largest in-flight bytes `agent status` shows for any attachment right now. */
async function inFlight(agent: RunningAgent): Promise<number> {
  const status = await requestControl(controlPath(agent.stateDir), "status") as AgentStatus;
  return Math.max(0, ...status.sessions.flatMap((s) => (s.attachments ?? []).map((a) => a.inFlightBytes)));
}

/** Runs `work`, sampling {@link inFlight} every 10 ms; resolves with its result and every sample. */
async function sampled<T>(agent: RunningAgent, work: Promise<T>): Promise<{ result: T; samples: number[] }> {
  let done = false;
  const samples: number[] = [];
  const watch = (async () => {
    while (!done) {
      samples.push(await inFlight(agent));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  try {
    return { result: await work, samples };
  } finally {
    done = true;
    await watch;
  }
}

const sha256 = (data: Uint8Array) => crypto.createHash("sha256").update(data).digest("hex");

/** Writes `size` random bytes, reads them back while sampling what is in flight, and checks them by SHA-256. */
async function downloadSampled(agent: RunningAgent, s: RemoteSession, size: number): Promise<number[]> {
  const data = crypto.randomBytes(size);
  await s.files.writeFile("big.bin", data);
  const hash = crypto.createHash("sha256");
  const { samples } = await sampled(
    agent,
    (async () => {
      for await (const chunk of s.files.readStream("big.bin")) hash.update(chunk);
    })(),
  );
  assert.is(hash.digest("hex"), sha256(data));
  return samples;
}

wan("a 40 ms link: the download window grows past the short link's 2 MiB, never past its cap", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const relay = await longLink(agent);
  const s = await (await client(relay.port)).openSession("alpha");
  const samples = await downloadSampled(agent, s, 48 * MIB);
  const most = Math.max(...samples);
  assert.ok(most > 3 * MIB, `in flight at most ${(most / MIB).toFixed(1)} MiB: the window did not grow`);
  // The cap, plus one reply that went out just before the acknowledgement that would free another.
  assert.ok(most <= TRANSFER_WINDOW_MAX_BYTES + MIB, `in flight ${(most / MIB).toFixed(1)} MiB`);
  await s.close();
  await agent.stop();
});

wan("a whole file takes the fewest round trips: writeFile two, readStream two (three with its digest)", async () => {
  // A round trip long enough that a busy machine's scheduling cannot pass for one.
  const rtt = 400;
  const agent = await startAgent(["--key", KEY.hex]);
  const relay = await startRelay(0, agent.port, rtt);
  relays.push(relay);
  const s = await (await client(relay.port)).openSession("alpha");
  const data = crypto.randomBytes(MIB);
  await s.files.writeFile("warm.bin", data); // the session's first transfer compiles the paths
  const rounds = async (work: () => Promise<unknown>) => {
    const t0 = performance.now();
    await work();
    return Math.round((performance.now() - t0) / rtt);
  };
  // Open; then the data, the close right behind it (one handle's requests run in order).
  assert.is(await rounds(() => s.files.writeFile("one.bin", data)), 2, "writeFile's round trips");
  let read = 0;
  const reading = async () => {
    for await (const chunk of s.files.readStream("one.bin")) read += chunk.length;
  };
  // Open; the data with the read that finds the end. Every byte is here: the close is not waited for.
  assert.is(await rounds(reading), 2, "readStream's round trips");
  assert.is(read, MIB);
  let digest = "";
  const digested = async () => {
    for await (const _ of s.files.readStream("one.bin", { onSha256: (hex) => (digest = hex) }));
  };
  // The agent's digest comes with the close's answer: one round trip more.
  assert.is(await rounds(digested), 3, "readStream's round trips with onSha256");
  assert.is(digest, crypto.createHash("sha256").update(data).digest("hex"));
  await s.close();
  await agent.stop();
});

/** An agent serving /metrics, and a session on it through the long link. */
async function agentWithMetricsOverLongLink() {
  const agent = await startAgent(["--key", KEY.hex, "--metrics", "127.0.0.1:0"], {
    ready: /health and metrics on http:\/\/127\.0\.0\.1:\d+/,
  });
  const metricsUrl = /health and metrics on (http:\/\/127\.0\.0\.1:\d+)\//.exec(agent.stderr())![1] + "/metrics";
  const relay = await longLink(agent);
  const s = await (await client(relay.port)).openSession("alpha");
  return { agent, metricsUrl, s };
}

wan("a reader that stops keeps the window within its cap; status and /metrics show it", async () => {
  const { agent, metricsUrl, s } = await agentWithMetricsOverLongLink();
  await s.files.writeFile("big.bin", crypto.randomBytes(32 * MIB));
  const cap = 4 * MIB;
  const chunks = s.files.readStream("big.bin", { maxWindowBytes: cap })[Symbol.asyncIterator]();
  for (let i = 0; i < 8; i++) await chunks.next();
  const stopped: number[] = []; // the reader takes nothing for a second
  for (let i = 0; i < 20; i++) {
    stopped.push(await inFlight(agent));
    await new Promise((r) => setTimeout(r, 50));
  }
  const framing = 64 * 1024; // each reply's headers and fields on top of its 512 KiB
  assert.ok(Math.max(...stopped) <= cap + framing, `in flight ${Math.max(...stopped)} bytes, cap ${cap}`);
  const status = await runAgentAsync(["status"], { AGENT_STATE_DIR: agent.stateDir });
  assert.match(status.stdout, /IN FLIGHT/);
  assert.match(status.stdout, /#\d+ \d+(\.\d)? (MiB|KiB)/);
  const metrics = await (await fetch(metricsUrl)).text();
  const m = /agent_attachment_in_flight_bytes\{session="[0-9a-f-]+",attachment="\d+"\} (\d+)/.exec(metrics);
  assert.ok(m && Number(m[1]) <= cap + framing, metrics); // the stopped reader's replies arrived and were acknowledged
  await chunks.return?.(undefined);
  await s.close();
  await agent.stop();
});

/** Each attachment's window as `agent status --json` shows it (what the client reported). */
async function reportedWindows(agent: RunningAgent): Promise<number[]> {
  const status = await requestControl(controlPath(agent.stateDir), "status") as AgentStatus;
  return status.sessions.flatMap((s) => (s.attachments ?? []).map((a) => a.windowBytes ?? 0));
}

wan("an upload's window shows in status and /metrics as the client keeps it, past what reached the agent", async () => {
  const { agent, metricsUrl, s } = await agentWithMetricsOverLongLink();
  let done = false, most = 0, mostInFlight = 0, metricSeen = 0, statusLine = "";
  const upload = s.files.writeFile("up.bin", crypto.randomBytes(48 * MIB)).finally(() => (done = true));
  while (!done) {
    most = Math.max(most, ...(await reportedWindows(agent)));
    mostInFlight = Math.max(mostInFlight, await inFlight(agent));
    if (!statusLine && most > 2 * MIB) {
      statusLine = (await runAgentAsync(["status"], { AGENT_STATE_DIR: agent.stateDir })).stdout;
      const m = /agent_attachment_window_bytes\{session="[0-9a-f-]+",attachment="\d+"\} (\d+)/.exec(
        await (await fetch(metricsUrl)).text(),
      );
      metricSeen = Number(m?.[1] ?? 0);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await upload;
  assert.ok(most > 2 * MIB && most <= TRANSFER_WINDOW_MAX_BYTES, `reported window at most ${most} bytes`);
  assert.ok(most > mostInFlight, `window ${most}, in flight at the agent ${mostInFlight}: the rest is on the wire`);
  assert.ok(metricSeen > 0, "/metrics shows the window while the upload runs");
  assert.match(statusLine, /#\d+ \d+(\.\d)? (MiB|KiB) of \d+\.\d MiB/);
  const t0 = performance.now(); // the last transfer's end reports 0 at once
  while ((await reportedWindows(agent)).some((w) => w > 0) && performance.now() - t0 < 2000) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(await reportedWindows(agent), [0]);
  await s.close();
  await agent.stop();
});

wan("a window report for another client's attachment, or a malformed one, changes nothing", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const owner = await client(agent.port);
  const s = await owner.openSession("alpha");
  const other = await client(agent.port);
  const report = (c: Agent, fields: Record<string, unknown>) =>
    c.client.post(META_TARGET, MetaCode.WindowReport, 0, [encodeFields(fields)]);
  await report(other, { attachment: s.attachment, bytes: 999 * MIB });
  await report(owner, { attachment: s.attachment, bytes: -1 });
  await report(owner, { attachment: s.attachment, bytes: "15 MiB" });
  await other.ping(); // both connections stay up: an event is never answered with a close
  await owner.ping();
  assert.equal(await reportedWindows(agent), [0]);
  await report(owner, { attachment: s.attachment, bytes: 3 * MIB });
  await owner.ping();
  assert.equal(await reportedWindows(agent), [3 * MIB], "its own client's report is taken");
  await s.close();
  await agent.stop();
});

/** The most in flight while a 24 MiB download runs over the long link from an agent with `settings` in its config file. */
async function mostInFlightWith(settings: Record<string, number>): Promise<number> {
  const config = path.join(tempDir(), "config.json");
  fs.writeFileSync(config, JSON.stringify(settings));
  const agent = await startAgent(["--key", KEY.hex, "--config", config]);
  const relay = await longLink(agent);
  const s = await (await client(relay.port)).openSession("alpha");
  const samples = await downloadSampled(agent, s, 24 * MIB);
  await s.close();
  await agent.stop();
  return Math.max(...samples);
}

wan("an agent whose transferWindowMiB is 3 keeps a long link's download within 3 MiB", async () => {
  const most = await mostInFlightWith({ transferWindowMiB: 3 });
  assert.ok(most <= 3 * MIB + 64 * 1024, `in flight ${(most / MIB).toFixed(2)} MiB, the agent's cap 3 MiB`);
});

wan("an agent whose replayLimitMiB is 2 keeps a long link's download within it, and it completes", async () => {
  // A window past twice the replay bound would have the agent close the connection as a reader that reads none.
  const most = await mostInFlightWith({ replayLimitMiB: 2 });
  assert.ok(most <= 2 * MIB + 64 * 1024, `in flight ${(most / MIB).toFixed(2)} MiB, the agent's replay bound 2 MiB`);
});

wan(
  "a client that acknowledges replies never sent is refused; the others go on, and it resumes with every byte",
  async () => {
    const agent = await startAgent(["--key", KEY.hex]);
    const relay = await longLink(agent);
    const bystander = await (await client(agent.port)).openSession("alpha");
    const liar = await client(relay.port);
    const s = await liar.openSession("alpha");
    const data = crypto.randomBytes(32 * MIB);
    await s.files.writeFile("big.bin", data);
    const parts: Uint8Array[] = [];
    const reading = (async () => {
      for await (const chunk of s.files.readStream("big.bin")) parts.push(chunk);
    })();
    for (const t = performance.now(); (await inFlight(agent)) < 4 * MIB;) {
      assert.ok(performance.now() - t < 5000, "the download's window reached 4 MiB");
      await new Promise((r) => setTimeout(r, 5));
    }
    // Mid-window: an acknowledgement of a million replies, as if it had them all and more.
    await liar.client.post(s.attachment, ACK_CODE, 0, [encodeSessionHeader(0, 1_000_000)]);
    const reason = await liar.closed;
    assert.match(reason.message, /closed/, "the agent closes the connection; the log says why");
    assert.ok((await bystander.files.stat(".")).type, "another client is served throughout");
    await s.resume((await client(relay.port)).client);
    await reading;
    const down = Buffer.concat(parts);
    assert.is(down.length, data.length, "nothing kept for it was dropped by the false acknowledgement");
    assert.is(sha256(down), sha256(data));
    assert.match(agent.stderr(), /acknowledges 1000000 messages, but only \d+ were sent/);
    await s.close();
    await bystander.close();
    await agent.stop();
  },
);

wan("a cut in the middle of a full window, each way, resumes with every byte exactly once", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  const relay = await longLink(agent);
  const s = await (await client(relay.port)).openSession("alpha");
  const data = crypto.randomBytes(48 * MIB);
  // The agent sees a download's whole window (replies not yet acknowledged), an upload's only once it arrived.
  const cutWhenFull = async (work: Promise<unknown>, full: number) => {
    let finished = false;
    void work.finally(() => (finished = true)).catch(() => {});
    const t0 = performance.now();
    while ((await inFlight(agent)) < full && performance.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 5));
    relay.cut();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await reportedWindows(agent), [0], "a disconnected attachment shows no window");
    await s.resume((await client(relay.port)).client);
    // The resumed client reports its window again at once (the agent had set it to 0), unless the
    // transfer was done before the cut (a loaded machine may not reach `full` in 3 s).
    let reported = 0;
    for (const t = performance.now(); reported === 0 && !finished && performance.now() - t < 5000;) {
      reported = Math.max(...(await reportedWindows(agent)));
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(reported > 0 || finished, "the window shows again after the resume");
    return await work;
  };
  assert.is(await cutWhenFull(s.files.writeFile("up.bin", data), 1.5 * MIB), data.length);
  assert.equal(await s.files.sha256("up.bin"), { sha256: sha256(data), size: data.length });
  // From a reader, whose buffers the library reuses: none may be refilled while a resume could still send it.
  let at = 0;
  const reader = {
    readInto(into: Uint8Array): Promise<number | null> {
      const n = Math.min(into.length, data.length - at);
      into.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n || null);
    },
  };
  assert.is(await cutWhenFull(s.files.writeFile("reader.bin", reader), 1.5 * MIB), data.length);
  assert.equal(await s.files.sha256("reader.bin"), { sha256: sha256(data), size: data.length });
  // From a stream that refills one 64 KiB buffer for every chunk, as a file reader with a fixed buffer does.
  const refilled = async function* () {
    const buffer = new Uint8Array(64 * 1024);
    for (let o = 0; o < data.length; o += buffer.length) {
      buffer.set(data.subarray(o, o + buffer.length));
      yield buffer;
    }
  };
  assert.is(await cutWhenFull(s.files.writeFile("refilled.bin", refilled()), 1.5 * MIB), data.length);
  assert.equal(await s.files.sha256("refilled.bin"), { sha256: sha256(data), size: data.length });
  const parts: Uint8Array[] = [];
  await cutWhenFull(
    (async () => {
      for await (const chunk of s.files.readStream("up.bin")) parts.push(chunk);
    })(),
    4 * MIB,
  );
  const down = Buffer.concat(parts);
  assert.is(down.length, data.length, "no byte lost or repeated");
  assert.is(sha256(down), sha256(data));
  await s.close();
  await agent.stop();
});

wan.run();
