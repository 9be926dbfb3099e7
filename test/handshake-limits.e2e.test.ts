// The handshake and connection limits, on the built agent: a key removed by a reload admits nothing whatever stage
// its connection was at, a replayed opening gains nothing, and pre-authentication memory, logs and time stay bounded.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { initiate } from "../core/secure/opening.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { generateKey } from "../core/secure/keys.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { AuthenticationError } from "../core/errors.ts";
import { runAgentAsync, sendSignal, startAgent, stopAll, tempDir, until } from "./helpers/agent-process.ts";
import { dial, rawConnect } from "./helpers/net.ts";
import { encodeHello, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import { REJECTION_LINES_PER_MINUTE } from "../agent/server.ts";

const limits = suite("handshake and connection limits e2e");
limits.after(() => stopAll());

async function status(dir: string) {
  return JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: dir })).stdout);
}

/** `stream`, whose writes after the first `open` wait until `gate` resolves: the initiator pauses before its proof. */
function heldAfter(stream: ByteStream, open: number, gate: Promise<void>): ByteStream {
  let writes = 0;
  const held: ByteStream = Object.create(stream);
  held.write = async (data) => {
    if (++writes > open) await gate;
    return stream.write(data);
  };
  held.read = () => stream.read();
  held.close = () => stream.close();
  return held;
}

limits("a key removed by a reload mid-handshake admits nothing, though the connection began before", async () => {
  const dir = tempDir();
  const [oldKey, newKey] = [generateKey(), generateKey()];
  const keys = path.join(dir, "keys");
  fs.writeFileSync(keys, `${oldKey.hex}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ keyFiles: ["keys"], handshakeTimeoutSeconds: 20 }));
  const agent = await startAgent(["--config", path.join(dir, "config.json")]);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let replied!: () => void;
  const reply = new Promise<void>((r) => (replied = r));
  // The hello goes out and the reply comes back; the key proof waits for the reload.
  const opening = initiate(heldAfter(await dial(agent.port), 1, gate), {
    key: oldKey.bytes,
    provider: webCryptoProvider,
    onStage: (stage) => stage === "reply" && replied(),
  }).then((i) => (i.frames.close(), null), (e) => e);
  await reply;
  fs.writeFileSync(keys, `${newKey.hex}\n`, { mode: 0o600 });
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/reloaded on SIGHUP: .*removed [0-9a-f]{12}/);
  release();
  const error = await opening;
  assert.instance(error, AuthenticationError, String(error));
  assert.not.match(agent.stderr(), /accepted \(key/);
  assert.is((await status(agent.stateDir)).handshakes.accepted, 0);
  await agent.stop();
});

limits("a flood of rejected connections logs a bounded number of lines; status counts every one", async () => {
  const agent = await startAgent(["--key", generateKey().hex]);
  const flood = REJECTION_LINES_PER_MINUTE + 40;
  const wrongId = encodeHello(PROTOCOL_VERSIONS);
  wrongId[0] ^= 0xff;
  for (let i = 0; i < flood; i += 10) {
    await Promise.all(Array.from({ length: 10 }, async () => {
      const c = await rawConnect(agent.port);
      c.write(wrongId);
      await c.closedWithin(5000);
      c.close();
    }));
  }
  await until(async () => (await status(agent.stateDir)).handshakes.rejected["bad-protocol-id"] === flood, "counted");
  const lines = agent.stderr().split("\n").filter((l) => /rejected: bad-protocol-id/.test(l));
  assert.is(lines.length, REJECTION_LINES_PER_MINUTE, "the first ones are logged one by one, the rest are not");
  await agent.stop();
  assert.match(
    agent.stderr(),
    /40 more connections rejected in the last 60 s, not logged one by one \(bad-protocol-id 40;/,
  );
});

limits.run();
