// Boundaries between keys: a key limited to some products sees, attaches to, resumes and closes
// only their sessions, and a reload that takes a product away detaches its clients. Per-key
// limits on sessions and attachments. The built agent, real hosts, the client over loopback.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { type Agent, connect, NotFoundError, PermissionDeniedError, RemoteError, SessionEndedError } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { encodeFields, MetaCode } from "../core/wire/messages.ts";
import { sendSignal, startAgent, stopAll, tempDir, until } from "./helpers/agent-process.ts";

const boundaries = suite("key boundaries e2e");
const [ALPHA, BETA, ALL] = [generateKey(), generateKey(), generateKey()];
const clients: Agent[] = [];

boundaries.after(() => {
  clients.forEach((c) => c.close());
  stopAll();
});

async function client(port: number, key: string): Promise<Agent> {
  const c = await connect({ host: "127.0.0.1", port, key });
  clients.push(c);
  return c;
}

/** The agent's config file, written private (it holds keys). */
function writeConfig(stateDir: string, settings: Record<string, unknown>): void {
  const file = path.join(stateDir, "config.json");
  fs.writeFileSync(file, JSON.stringify(settings), { mode: 0o600 });
}

const failure = (p: Promise<unknown>) => p.then(() => null, (e) => e as Error);

boundaries("a key limited to products neither sees nor touches another product's sessions", async () => {
  const stateDir = tempDir();
  writeConfig(stateDir, {
    products: ["alpha", "beta"],
    keys: [{ key: ALPHA.hex, products: ["alpha"] }, { key: BETA.hex, products: ["beta"] }, ALL.hex],
  });
  const agent = await startAgent([], { stateDir });
  const [a, b, all] = [
    await client(agent.port, ALPHA.hex),
    await client(agent.port, BETA.hex),
    await client(agent.port, ALL.hex),
  ];
  const s = await a.openSession("alpha");
  const p = await s.processes.start({ program: "sleep", args: ["30"] });

  assert.not.ok((await b.listSessions()).some((x) => x.id === s.id), "not listed to a key for beta only");
  assert.ok((await all.listSessions()).some((x) => x.id === s.id), "listed to a key for every product");
  assert.instance(await failure(b.attachSession(s.id)), NotFoundError, "attach refused as if it did not exist");
  const close = await failure(b.client.request(0, MetaCode.Close, encodeFields({ sessionId: s.id })));
  assert.instance(close, NotFoundError, "close refused");
  const opened = await failure(b.openSession("alpha"));
  assert.instance(opened, PermissionDeniedError);
  assert.is((opened as RemoteError).code, "product-not-allowed");
  assert.match(opened!.message, /may not use product "alpha" \(it may use: beta\)/);

  const watcher = await all.attachSession(s.id);
  assert.ok((await watcher.processes.list()).some((x) => x.id === p.id), "a key for every product attaches");
  assert.is(s.ended, null, "the session lives on");
  await s.close();
  await agent.stop();
});

boundaries("a reload that takes a product from a key detaches its clients; others stay", async () => {
  const stateDir = tempDir();
  const settings = (alpha: string[]) => ({ keys: [{ key: ALPHA.hex, products: alpha }, ALL.hex] });
  writeConfig(stateDir, settings(["alpha"]));
  const agent = await startAgent([], { stateDir });
  const [a, all] = [await client(agent.port, ALPHA.hex), await client(agent.port, ALL.hex)];
  const s = await a.openSession("alpha");
  const other = await all.attachSession(s.id);

  writeConfig(stateDir, settings(["beta"]));
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/attachment \d+ detached: its key [0-9a-f]+ may no longer use alpha/);
  await until(() => s.ended !== null, "the detached client hears of it");
  const e = await failure(s.files.stat("."));
  assert.instance(e, SessionEndedError);
  assert.is((e as RemoteError).code, "access-revoked");
  assert.is((await a.listSessions()).length, 0, "no longer listed to it");
  assert.ok(await other.files.stat("."), "the client whose key keeps the product is still attached");
  assert.ok(await a.openSession("beta"), "the new product is usable at once");
  await other.close();
  await agent.stop();
});

boundaries("a key holds at most maxSessionsPerKey sessions and maxAttachmentsPerKey attachments", async () => {
  const stateDir = tempDir();
  writeConfig(stateDir, { keys: [ALPHA.hex, BETA.hex], maxSessionsPerKey: 2, maxAttachmentsPerKey: 3 });
  const agent = await startAgent(["--warm-hosts", "0"], { stateDir });
  const [a, b] = [await client(agent.port, ALPHA.hex), await client(agent.port, BETA.hex)];
  // Three at once, on three connections with the same key: those still starting their hosts count too.
  const conns = [a, await client(agent.port, ALPHA.hex), await client(agent.port, ALPHA.hex)];
  const opens = await Promise.allSettled(conns.map((c) => c.openSession("alpha")));
  const [s1, s2] = opens.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
  assert.is(opens.filter((o) => o.status === "fulfilled").length, 2, "two of three opened at once");
  const third = opens.map((o) => (o.status === "rejected" ? o.reason as Error : null)).find(Boolean) ?? null;
  assert.instance(third, RemoteError);
  assert.is((third as RemoteError).code, "limit-reached");
  assert.match(third!.message, /2 sessions open, its limit \(maxSessionsPerKey\)/);
  assert.ok(await b.openSession("alpha"), "another key is not held back");

  await a.attachSession(s1.id); // the third attachment
  const fourth = await failure(a.attachSession(s2.id));
  assert.is((fourth as RemoteError).code, "limit-reached");
  assert.match(fourth!.message, /maxAttachmentsPerKey/);
  await s2.close();
  assert.ok(await a.attachSession(s1.id), "room again once a session closed");

  const full = await failure(a.openSession("alpha"));
  assert.is((full as RemoteError).code, "limit-reached", "its three attachments are the limit");
  writeConfig(stateDir, { keys: [ALPHA.hex, BETA.hex], maxSessionsPerKey: 3, maxAttachmentsPerKey: 5 });
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/reloaded on SIGHUP/);
  assert.ok(await a.openSession("alpha"), "a reload's higher limits apply at once");
  await agent.stop();
});

boundaries.run();
