// The agent's side of a pushed update (agent/updates.ts) up to and through its upgrader, in this process: a real
// ClientConnection and UpdateReceiver over an in-memory connection, real files, and an upgrader of the test's
// own that checks what it is handed. What the real upgrader does (the hand-over) is not here; what is: the
// upgrader gets the staged file, whole, mode 0700, with the key that asked; its outcome is the reply, its
// error too; the connection is served meanwhile; a second update waits; nothing is left staged after.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ClientConnection } from "../agent/connection.ts";
import { SessionManager, sessionSettings } from "../agent/sessions.ts";
import { UpdateReceiver } from "../agent/updates.ts";
import type { UpgradeOutcome, Upgrader } from "../agent/upgrade-types.ts";
import { AgentClient } from "../core/client/agent-client.ts";
import { AgentError, RemoteError } from "../core/errors.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { initiate, respond } from "../core/secure/opening.ts";
import { EncryptionMode } from "../core/wire/hello.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { silent } from "../runtime/log.ts";
import { stopAll, tempDir, until } from "./helpers/agent-process.ts";
import { concat } from "../core/bytes.ts";
import { META_TARGET } from "../core/wire/frame.ts";
import { decodeFields, encodeFields, encodeUpdateData, MetaCode } from "../core/wire/messages.ts";

const test = suite("updates");

test.after(stopAll);

const sha256Of = (bytes: Uint8Array) => crypto.createHash("sha256").update(bytes).digest("hex");

/** An upgrader that keeps what it was handed (a copy of the file, its mode, who asked), then answers `result`. */
function recordingUpgrader(result: (file: string) => Promise<UpgradeOutcome>) {
  const calls: Array<{ bytes: Uint8Array; mode: number; requestedBy: string }> = [];
  const upgrader: Upgrader = {
    upgrade: async (file, requestedBy) => {
      calls.push({ bytes: new Uint8Array(fs.readFileSync(file)), mode: fs.statSync(file).mode & 0o777, requestedBy });
      return await result(file);
    },
  };
  return { upgrader, calls };
}

/** A client connected in memory to an agent connection authenticated as key "k1", which has the update right. */
async function connected(upgrader: Upgrader | null, idleMs?: number) {
  const stateDir = tempDir();
  const updates = new UpdateReceiver(
    { stateDir, maxBytes: 64 * 1024 * 1024, releaseKeys: [], idleMs },
    () => [{ id: "k1", bytes: new Uint8Array(32), rights: ["update"] }],
    () => upgrader,
    silent,
  );
  const sessions = new SessionManager(sessionSettings({
    stateDir,
    products: null,
    idleTimeoutSeconds: 60,
    reconnectGraceSeconds: 0,
    replayLimitMiB: 16,
    processGraceSeconds: 1,
    warmHosts: 0,
  }, { runDir: tempDir(), hostCommand: [], log: silent }));
  const client = async () => {
    const [clientSide, agentSide] = memoryStreamPair();
    const responding = respond(agentSide, { mode: EncryptionMode.None, keys: [], provider: webCryptoProvider });
    const { frames, reply } = await initiate(clientSide, { provider: webCryptoProvider, insecure: true });
    const accepted = await responding;
    if (!accepted.ok) throw accepted.error;
    void new ClientConnection(accepted.frames, "memory", sessions, Date.now(), "k1", updates).serve();
    return AgentClient.wrap(frames, reply);
  };
  return { client: await client(), another: client, stateDir };
}

test("the upgrader gets the whole staged file, mode 0700, and the key that asked; its outcome is the reply", async () => {
  const binary = new Uint8Array(crypto.randomBytes(3 * 1024 * 1024 + 17));
  const { upgrader, calls } = recordingUpgrader((file) => {
    const staged = fs.readFileSync(file);
    return Promise.resolve({ version: "9.9.9", build: sha256Of(staged), previousBuild: "0".repeat(64), tookMs: 5 });
  });
  const { client, stateDir } = await connected(upgrader);
  const outcome = await client.update(binary);
  assert.equal(outcome, { version: "9.9.9", build: sha256Of(binary), previousBuild: "0".repeat(64), tookMs: 5 });
  assert.is(calls.length, 1);
  assert.is(sha256Of(calls[0].bytes), sha256Of(binary));
  assert.is(calls[0].mode, 0o700);
  assert.is(calls[0].requestedBy, "k1");
  assert.equal(fs.readdirSync(path.join(stateDir, "updates")), [], "the staging directory is empty after");
  client.close();
});

test("while the upgrader works the connection is served; another update waits its turn; a failure is the reply", async () => {
  let finish: (outcome: UpgradeOutcome) => void = () => {};
  let started: () => void = () => {};
  const applying = new Promise<void>((r) => (started = r));
  const { upgrader } = recordingUpgrader(() => {
    started();
    return new Promise<UpgradeOutcome>((r) => (finish = r));
  });
  const { client, another, stateDir } = await connected(upgrader);
  const binary = new Uint8Array(crypto.randomBytes(1024 * 1024));
  const pending = client.update(binary);
  await applying;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("no pong in 5 s")), 5000)));
  const pong = await Promise.race([client.ping(), late]).finally(() => clearTimeout(timer));
  assert.ok(pong.rttMs >= 0, "a ping is answered while the update is applied");
  const second = await another();
  const busy = await second.update(binary).then(() => null, (e) => e);
  assert.instance(busy, RemoteError);
  assert.is(busy.code, "update-in-progress");
  finish({ version: "1", build: "b", previousBuild: "a", tookMs: 1 });
  assert.is((await pending).build, "b");

  const failing = recordingUpgrader(() => Promise.reject(new AgentError("upgrade-failed", "new agent did not start")));
  const broken = await connected(failing.upgrader);
  const e = await broken.client.update(binary).then(() => null, (e) => e);
  assert.is(e?.code, "upgrade-failed");
  assert.is(e.message, "new agent did not start");
  assert.equal(fs.readdirSync(path.join(broken.stateDir, "updates")), []);
  assert.equal(fs.readdirSync(path.join(stateDir, "updates")), []);
  for (const c of [client, second, broken.client]) c.close();
});

test("an agent with no upgrader says so at commit, and keeps nothing", async () => {
  const { client, stateDir } = await connected(null);
  const e = await client.update(new Uint8Array(1000)).then(() => null, (e) => e);
  assert.is(e?.code, "update-unavailable");
  assert.equal(fs.readdirSync(path.join(stateDir, "updates")), []);
  client.close();
});

test("an update that receives nothing for its idle time is dropped, its connection left open", async () => {
  const { client, stateDir } = await connected(null, 200);
  const begin = encodeFields({ size: 10, sha256: "ab".repeat(32) });
  const { updateId } = decodeFields<{ updateId: number }>(
    (await client.request(META_TARGET, MetaCode.UpdateBegin, begin)).payload,
  );
  assert.is(fs.readdirSync(path.join(stateDir, "updates")).length, 1);
  await until(() => fs.readdirSync(path.join(stateDir, "updates")).length === 0, "the idle update dropped", 5000);
  const data = concat(encodeUpdateData(updateId, 0, new Uint8Array(10)));
  const e = await client.request(META_TARGET, MetaCode.UpdateData, data).then(() => null, (e) => e);
  assert.match(e?.message ?? "", /no update [0-9a-f]{8} is being received/);
  assert.ok((await client.ping()).rttMs >= 0);
  client.close();
});

test.run();
