// Pushed updates on the built agent (docs/protocol.md §5 "Pushed updates"), each refusal with nothing changed on
// disk: not the program file, not the state directory's files, and the staging directory empty. A key without
// the right; a wrong SHA-256; a missing, foreign or malformed signature where a release key is configured; too
// large; two at once; a connection cut mid-stream. A correct update of bytes that are no agent passes every
// check here and is refused by the upgrader's own (`start --check`), with nothing installed (the applied path is
// test/update-apply.e2e.test.ts). Then the fleet rollout's
// stop rules over real agents, and the `agent update` and `agent release` commands.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { connect, listen, RemoteError, rollOutUpdate } from "../mod.ts";
import { selfSigned } from "./helpers/certs.ts";
import { installedCopy } from "./helpers/upgrade.ts";
import type { Agent } from "../client/agent.ts";
import { generateKey } from "../core/secure/keys.ts";
import { generateReleaseKey, releaseKeyId, signRelease, verifyRelease } from "../core/secure/release.ts";
import { META_TARGET } from "../core/wire/frame.ts";
import { decodeFields, encodeFields, encodeUpdateData, MetaCode } from "../core/wire/messages.ts";
import { concat } from "../core/bytes.ts";
import {
  IS_DENO,
  runAgent,
  type RunningAgent,
  startAgent,
  stopAll,
  tempDir,
  until,
  writeKeyFile,
} from "./helpers/agent-process.ts";

const test = suite("update e2e");

const RIGHT = generateKey(), PLAIN = generateKey();
const MIB = 1024 * 1024;

/** The built program, copied where nothing a test does can reach dist/; the command that runs the copy. */
function programCopy(): { file: string; command: string[] } {
  return installedCopy(tempDir("agent-program-"));
}

/** What a change on disk would show: the program's bytes and times, every file under the state directory. */
function diskState(program: string, stateDir: string): string {
  const p = fs.statSync(program);
  const digest = crypto.createHash("sha256").update(fs.readFileSync(program)).digest("hex");
  const files = (fs.readdirSync(stateDir, { recursive: true }) as string[]).sort().flatMap((f) => {
    const s = fs.lstatSync(path.join(stateDir, f));
    return s.isDirectory() ? [] : [`${f} ${s.size} ${s.mode.toString(8)} ${s.mtimeMs}`];
  });
  return [`program ${digest} ${p.size} ${p.mtimeMs}`, ...files].join("\n");
}

function stagedFiles(stateDir: string): string[] {
  const dir = path.join(stateDir, "updates");
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/** A started agent from `program` whose config file holds `settings`. */
async function agentWith(settings: object, program: { command: string[] }): Promise<RunningAgent> {
  const stateDir = tempDir();
  fs.writeFileSync(path.join(stateDir, "config.json"), JSON.stringify(settings), { mode: 0o600 });
  return await startAgent([], { stateDir, command: program.command });
}

const sha256Of = (bytes: Uint8Array) => crypto.createHash("sha256").update(bytes).digest("hex");
const random = (n: number) => new Uint8Array(crypto.randomBytes(n));

/** The error an update gets, which must be a refusal from the agent. */
async function refusal(agent: Agent, binary: Uint8Array, options: Parameters<Agent["update"]>[1] = {}) {
  const e = await agent.update(binary, options).then(() => null, (e) => e);
  assert.instance(e, RemoteError, String(e));
  return e as RemoteError;
}

let program: { file: string; command: string[] };
let release: { privateKey: string; publicKey: string };
let signed: RunningAgent, unsigned: RunningAgent;

test.before(async () => {
  program = programCopy();
  release = await generateReleaseKey();
  const keys = [{ key: RIGHT.hex, rights: ["update"] }, PLAIN.hex];
  [signed, unsigned] = await Promise.all([
    agentWith({ keys, releaseKeys: [release.publicKey], updateMaxMiB: 2 }, program),
    agentWith({ keys }, program),
  ]);
});

test.after(async () => {
  await Promise.all([signed?.stop(), unsigned?.stop()]);
  stopAll();
});

test("a key without the update right is refused before any byte, and logged with who asked", async () => {
  const before = diskState(program.file, signed.stateDir);
  const agent = await connect({ host: "127.0.0.1", port: signed.port, key: PLAIN.hex });
  const binary = random(MIB);
  const e = await refusal(agent, binary, { signature: await signRelease(release.privateKey, sha256Of(binary)) });
  assert.is(e.code, "update-not-allowed");
  assert.match(e.message, /may not update this agent: give it the right/);
  agent.close();
  await signed.waitForLog(/update from key [0-9a-f]{12} \(127\.0\.0\.1:\d+\) refused: key [0-9a-f]{12} may not/);
  assert.is(diskState(program.file, signed.stateDir), before);
  assert.equal(stagedFiles(signed.stateDir), []);
});

test("where a release key is configured: no signature, another key's, or garbage, is refused", async () => {
  const before = diskState(program.file, signed.stateDir);
  const agent = await connect({ host: "127.0.0.1", port: signed.port, key: RIGHT.hex });
  const binary = random(MIB);
  const other = await generateReleaseKey();
  const cases = [
    {},
    { signature: await signRelease(other.privateKey, sha256Of(binary)) },
    { signature: await signRelease(release.privateKey, sha256Of(random(16))) }, // the right key, another binary
  ];
  for (const options of cases) {
    const e = await refusal(agent, binary, options);
    assert.is(e.code, "update-signature-invalid", e.message);
  }
  assert.is((await refusal(agent, binary, { signature: "00".repeat(64) })).code, "update-signature-invalid");
  assert.is((await refusal(agent, binary, { signature: "not hex" })).code, "invalid-argument");
  agent.close();
  assert.is(diskState(program.file, signed.stateDir), before);
  assert.equal(stagedFiles(signed.stateDir), []);
});

test("an update over the agent's limit is refused at once", async () => {
  const before = diskState(program.file, signed.stateDir);
  const agent = await connect({ host: "127.0.0.1", port: signed.port, key: RIGHT.hex });
  const binary = random(3 * MIB);
  const e = await refusal(agent, binary, { signature: await signRelease(release.privateKey, sha256Of(binary)) });
  assert.is(e.code, "update-too-large");
  assert.match(e.message, /at most 2097152/);
  agent.close();
  assert.is(diskState(program.file, signed.stateDir), before);
  assert.equal(stagedFiles(signed.stateDir), []);
});

test("bytes that do not match the SHA-256 announced (and signed) are refused at commit and removed", async () => {
  for (const running of [signed, unsigned]) {
    const agent = await connect({ host: "127.0.0.1", port: running.port, key: RIGHT.hex });
    const meant = random(1536 * 1024), sent = random(1536 * 1024);
    const sha256 = sha256Of(meant);
    const signature = running === signed ? await signRelease(release.privateKey, sha256) : undefined;
    const before = diskState(program.file, running.stateDir);
    const e = await refusal(agent, sent, { sha256, signature });
    assert.is(e.code, "update-digest-mismatch");
    assert.match(e.message, new RegExp(`have SHA-256 ${sha256Of(sent)}, not the ${sha256} announced`));
    agent.close();
    assert.is(diskState(program.file, running.stateDir), before);
    assert.equal(stagedFiles(running.stateDir), []);
  }
});

test("a correct update of bytes that are no agent: refused by the upgrader's check, after the digest matched", async () => {
  const agent = await connect({ host: "127.0.0.1", port: signed.port, key: RIGHT.hex });
  const binary = random(1536 * 1024);
  const before = diskState(program.file, signed.stateDir);
  const cwdBefore = fs.readdirSync(process.cwd()).sort(); // the agent's own directory: nothing may appear there
  let confirmed = 0;
  const e = await refusal(agent, binary, {
    signature: await signRelease(release.privateKey, sha256Of(binary)),
    onProgress: (sent) => (confirmed = sent),
  });
  assert.is(e.code, "upgrade-failed");
  // Refused before it runs: the C library would have run bytes that are no program through /bin/sh.
  assert.match(
    e.message,
    IS_DENO ? /start --check/ : /not an executable \(it starts with neither an ELF header nor #!\)/,
  );
  assert.is(confirmed, binary.length, "every byte was confirmed before the commit");
  await signed.waitForLog(
    new RegExp(
      `from key [0-9a-f]{12} \\(127.0.0.1:\\d+\\): receiving ${binary.length} bytes, ` +
        `sha256 ${sha256Of(binary)}, signed by release key ${await releaseKeyId(release.publicKey)}`,
    ),
  );
  agent.close();
  assert.is(diskState(program.file, signed.stateDir), before);
  assert.equal(stagedFiles(signed.stateDir), []);
  assert.equal(fs.readdirSync(process.cwd()).sort(), cwdBefore);
});

/** Begins an update by hand and sends its first `chunks` 512 KiB chunks; returns the update id. */
async function beginByHand(agent: Agent, size: number, chunks: number): Promise<number> {
  const binary = random(size);
  const begin = await agent.client.request(
    META_TARGET,
    MetaCode.UpdateBegin,
    encodeFields({ size, sha256: sha256Of(binary) }),
  );
  const { updateId } = decodeFields<{ updateId: number }>(begin.payload);
  for (let i = 0; i < chunks; i++) {
    const piece = binary.subarray(i * 512 * 1024, (i + 1) * 512 * 1024);
    await agent.client.request(
      META_TARGET,
      MetaCode.UpdateData,
      concat(encodeUpdateData(updateId, i * 512 * 1024, piece)),
    );
  }
  return updateId;
}

test("a connection cut mid-stream drops the staged bytes; one update at a time until then", async () => {
  const before = diskState(program.file, unsigned.stateDir);
  const cut = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  await beginByHand(cut, 1536 * 1024, 2);
  const [staged] = stagedFiles(unsigned.stateDir);
  const stat = fs.statSync(path.join(unsigned.stateDir, "updates", staged));
  assert.is(stat.size, MIB, "two chunks written");
  assert.is(stat.mode & 0o777, 0o700);
  assert.is(fs.statSync(path.join(unsigned.stateDir, "updates")).mode & 0o777, 0o700);
  const second = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  assert.is((await refusal(second, random(1024))).code, "update-in-progress");
  cut.client.frames.stream.close(); // cut, not a goodbye
  await unsigned.waitForLog(
    /update [0-9a-f]{8} from key [0-9a-f]{12} \(127\.0\.0\.1:\d+\) dropped: the connection ended/,
  );
  assert.equal(stagedFiles(unsigned.stateDir), []);
  assert.is(diskState(program.file, unsigned.stateDir), before);
  assert.is((await refusal(second, random(1024))).code, "upgrade-failed", "the slot is free again");
  second.close();
});

test("UpdateAbort drops an update; data out of order or for another update is refused and drops it", async () => {
  const agent = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  const id = await beginByHand(agent, MIB, 1);
  await agent.client.request(META_TARGET, MetaCode.UpdateAbort, encodeFields({ updateId: id }));
  assert.equal(stagedFiles(unsigned.stateDir), []);
  const again = await beginByHand(agent, MIB, 1);
  const skipped = concat(encodeUpdateData(again, 1000, random(10)));
  const e = await agent.client.request(META_TARGET, MetaCode.UpdateData, skipped).then(() => null, (e) => e);
  assert.is(e?.code, "invalid-argument");
  assert.match(e.message, /offset 1000, expected 524288/);
  assert.equal(stagedFiles(unsigned.stateDir), []);
  const stale = await agent.client.request(META_TARGET, MetaCode.UpdateCommit, encodeFields({ updateId: again }))
    .then(() => null, (e) => e);
  assert.match(stale?.message ?? "", /no update [0-9a-f]{8} is being received on this connection/);
  agent.close();
});

test("a rollout stops at a failed canary, and with stopOnFailure off reports each agent's own failure", async () => {
  const others = await Promise.all(
    [0, 1, 2].map(() => agentWith({ keys: [{ key: RIGHT.hex, rights: ["update"] }] }, program)),
  );
  const noRight = { name: "no-right", host: "127.0.0.1", port: unsigned.port, key: PLAIN.hex };
  const withRight = others.map((a, i) => ({ name: `agent${i}`, host: "127.0.0.1", port: a.port, key: RIGHT.hex }));
  const binary = random(MIB);
  const stopped = await rollOutUpdate([noRight, ...withRight], binary, { canary: 1 });
  assert.equal(stopped.map((r) => [r.name, r.status]), [
    ["no-right", "failed"],
    ...withRight.map((t) => [t.name, "not-attempted"]),
  ]);
  assert.is(stopped[0].status === "failed" && (stopped[0].error as RemoteError).code, "update-not-allowed");
  assert.match(stopped[1].status === "not-attempted" ? stopped[1].reason : "", /the canary no-right failed/);
  const all = await rollOutUpdate([...withRight, noRight], binary, { canary: 0, stopOnFailure: false });
  assert.equal(
    all.map((r) => [r.name, r.status === "failed" ? (r.error as RemoteError).code : r.status]),
    [...withRight.map((t) => [t.name, "upgrade-failed"]), ["no-right", "update-not-allowed"]],
  );
  await Promise.all(others.map((a) => a.stop()));
});

test("agent release keygen and sign make a signature the agent's check accepts; agent update reports", async () => {
  const dir = tempDir();
  const keyFile = path.join(dir, "release.key");
  const made = runAgent(["release", "keygen", "--out", keyFile, "--json"]);
  assert.is(made.code, 0, made.stderr);
  const { publicKey, keyId } = JSON.parse(made.stdout);
  assert.is(fs.statSync(keyFile).mode & 0o777, 0o600);
  assert.not.match(made.stdout, new RegExp(fs.readFileSync(keyFile, "utf8").split("\n")[2]), "no private key shown");
  const binary = path.join(dir, "agent-new");
  fs.writeFileSync(binary, random(MIB));
  const sig = runAgent(["release", "sign", binary, "--key", keyFile]);
  assert.is(sig.code, 0, sig.stderr);
  const sha256 = sha256Of(fs.readFileSync(binary));
  assert.is(await verifyRelease([publicKey], sha256, sig.stdout.trim()), keyId);
  fs.chmodSync(keyFile, 0o644);
  const loose = runAgent(["release", "sign", binary, "--key", keyFile]);
  assert.is(loose.code, 2);
  const plainKey = writeKeyFile(dir, PLAIN.hex, "plain.key");
  const where = `127.0.0.1:${unsigned.port}`;
  const refused = runAgent(["update", `${where},127.0.0.1:${signed.port}`, binary, "--key-file", plainKey]);
  assert.is(refused.code, 3, refused.stderr);
  assert.match(refused.stdout, new RegExp(`^${where}  failed: update-not-allowed: key [0-9a-f]{12} may not`, "m"));
  assert.match(refused.stdout, /^127\.0\.0\.1:\d+ {2}not attempted: the rollout stopped because the canary/m);
  assert.match(refused.stdout, /^0 of 2 updated, 1 failed, 1 not attempted$/m);
  const json = runAgent(["update", where, binary, "--key-file", writeKeyFile(dir, RIGHT.hex, "r.key"), "--json"]);
  assert.is(json.code, 3, json.stderr);
  assert.equal(JSON.parse(json.stdout).agents.map((a: { error: { code: string } }) => a.error.code), [
    "upgrade-failed",
  ]);
  assert.is(runAgent(["update", where]).code, 2);
  assert.match(runAgent(["update", "--help"]).stdout, /rights=update/);
});

test("outbound: the listener pushes with the agent's own key, which needs the right like any other", async () => {
  const cert = await selfSigned();
  const listener = await listen({
    host: "127.0.0.1",
    port: 0,
    cert: cert.cert,
    key: cert.key,
    agents: { updatable: RIGHT.hex, fixed: PLAIN.hex },
  });
  const dialers = await Promise.all([RIGHT, PLAIN].map((key) => {
    const stateDir = tempDir();
    const keys = [key === RIGHT ? { key: key.hex, rights: ["update"] } : key.hex];
    fs.writeFileSync(path.join(stateDir, "config.json"), JSON.stringify({ keys }), { mode: 0o600 });
    const trust = ["--connect", `127.0.0.1:${listener.port}`, "--fingerprint", cert.fingerprint, "--no-listen"];
    return startAgent(trust, {
      stateDir,
      command: program.command,
      listenFlags: false,
      ready: /outbound \S+: connected/,
    });
  }));
  const [updatable, fixed] = await Promise.all(["updatable", "fixed"].map((n) => listener.waitForAgent(n, 10_000)));
  assert.is((await refusal(updatable, random(1024))).code, "upgrade-failed", "past the right, to the commit");
  assert.is((await refusal(fixed, random(1024))).code, "update-not-allowed");
  await Promise.all(dialers.map((a) => a.stop()));
  await listener.close();
});

test("a reload gives or takes the update right at once", async () => {
  const config = path.join(unsigned.stateDir, "config.json");
  const before = { keys: [{ key: RIGHT.hex, rights: ["update"] }, PLAIN.hex] };
  assert.equal(JSON.parse(fs.readFileSync(config, "utf8")), before);
  fs.writeFileSync(config, JSON.stringify({ keys: [RIGHT.hex, { key: PLAIN.hex, rights: ["update"] }] }));
  process.kill(unsigned.pid, "SIGHUP");
  await unsigned.waitForLog(/reloaded on SIGHUP/);
  const plain = await connect({ host: "127.0.0.1", port: unsigned.port, key: PLAIN.hex });
  assert.is((await refusal(plain, random(1024))).code, "upgrade-failed", "past the right, to the commit");
  const right = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  assert.is((await refusal(right, random(1024))).code, "update-not-allowed");
  plain.close();
  right.close();
});

test("a reload applies release keys and the size limit at once", async () => {
  const config = path.join(unsigned.stateDir, "config.json");
  const keys = [{ key: RIGHT.hex, rights: ["update"] }];
  fs.writeFileSync(config, JSON.stringify({ keys, releaseKeys: [release.publicKey], updateMaxMiB: 1 }));
  process.kill(unsigned.pid, "SIGHUP");
  await until(() => (unsigned.stderr().match(/reloaded on SIGHUP/g) ?? []).length >= 2, "the second reload");
  const right = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  assert.is((await refusal(right, random(1024))).code, "update-signature-invalid", "a release key now applies");
  const big = random(1536 * 1024);
  const signature = await signRelease(release.privateKey, sha256Of(big));
  assert.is((await refusal(right, big, { signature })).code, "update-too-large", "so does the new limit");
  right.close();
});

test("a reload that takes the right away mid-upload refuses the commit; nothing is installed", async () => {
  const config = path.join(unsigned.stateDir, "config.json");
  const reloads = () => (unsigned.stderr().match(/reloaded on SIGHUP/g) ?? []).length;
  const reload = async (settings: unknown) => {
    const before = reloads();
    fs.writeFileSync(config, JSON.stringify(settings));
    process.kill(unsigned.pid, "SIGHUP");
    await until(() => reloads() > before, "the reload");
  };
  await reload({ keys: [{ key: RIGHT.hex, rights: ["update"] }] });
  // The config file changes here on purpose; everything else must not.
  const state = () =>
    diskState(program.file, unsigned.stateDir).split("\n").filter((l) => !l.startsWith("config.json "));
  const before = state();
  const right = await connect({ host: "127.0.0.1", port: unsigned.port, key: RIGHT.hex });
  const id = await beginByHand(right, MIB, 2); // every byte sent, not yet committed
  await reload({ keys: [RIGHT.hex] }); // the right is gone
  const e = await right.client.request(META_TARGET, MetaCode.UpdateCommit, encodeFields({ updateId: id }))
    .then(() => null, (e) => e);
  assert.is(e?.code, "update-not-allowed");
  assert.equal(state(), before);
  assert.equal(stagedFiles(unsigned.stateDir), []);
  right.close();
});

test.run();
