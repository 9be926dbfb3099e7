// Meta messages (target 0): the agent's one table of them, served by a real client connection in memory.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentClient } from "../core/client/agent-client.ts";
import { webCryptoProvider } from "../core/secure/crypto.ts";
import { initiate, respond } from "../core/secure/opening.ts";
import { META_TARGET } from "../core/wire/frame.ts";
import { EncryptionMode, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { decodeError, ERROR_CODE, MAX_PING_PAYLOAD, MetaCode } from "../core/wire/messages.ts";
import { VERSION } from "../core/version.ts";
import { stopAll } from "./helpers/agent-process.ts";
import { serveAgentConnection } from "./helpers/agent-connection.ts";

const test = suite("meta");

test.after(stopAll);

/** An agent connection in memory, started `upSeconds` ago, and the raw frames of its client. */
async function agentConnection(upSeconds = 0) {
  const [clientSide, agentSide] = memoryStreamPair();
  const responding = respond(agentSide, { mode: EncryptionMode.None, keys: [], provider: webCryptoProvider });
  const { frames, reply } = await initiate(clientSide, { provider: webCryptoProvider, insecure: true });
  const accepted = await responding;
  if (!accepted.ok) throw accepted.error;
  return { frames, reply, served: serveAgentConnection(accepted.frames, upSeconds) };
}

test("meta: info reports this agent, its uptime counted from its start", async () => {
  const { frames, reply, served } = await agentConnection(42);
  const client = AgentClient.wrap(frames, reply);
  const info = await client.info();
  assert.is(info.version, VERSION);
  assert.equal(info.protocol, { ...PROTOCOL_VERSIONS, current: PROTOCOL_VERSIONS.max });
  assert.is(info.uptimeSeconds, 42);
  assert.is(info.runtime.name, "Deno" in globalThis ? "deno" : "node");
  client.close();
  assert.is(await served, null);
});

test("meta: a heartbeat is never answered, and the connection goes on", async () => {
  const { frames, served } = await agentConnection();
  const empty = new Uint8Array(0);
  await frames.send({ target: META_TARGET, code: MetaCode.Heartbeat, token: 0, payload: empty });
  await frames.send({ target: META_TARGET, code: MetaCode.Ping, token: 7, payload: empty });
  const next = await frames.receive();
  assert.equal([next?.code, next?.token], [MetaCode.Pong, 7]);
  frames.close();
  await served;
});

test("meta: a code with no handler, a reply code or a retired one, is unknown-code and the connection stays", async () => {
  const { frames, served } = await agentConnection();
  const codes = [MetaCode.Pong, 17, MetaCode.Ended, 999];
  for (const [i, code] of codes.entries()) {
    await frames.send({ target: META_TARGET, code, token: i + 1, payload: new Uint8Array(0) });
    const reply = (await frames.receive())!;
    assert.equal([reply.code, reply.token, decodeError(reply.payload).code], [ERROR_CODE, i + 1, "unknown-code"]);
  }
  frames.close();
  await served;
});

test("meta: a ping over 64 KiB is too-large; session messages go through the same table", async () => {
  const { frames, reply, served } = await agentConnection();
  const client = AgentClient.wrap(frames, reply);
  const error = await client.ping(new Uint8Array(MAX_PING_PAYLOAD + 1)).catch((e) => e);
  assert.is(error.code, "too-large");
  const list = await client.request(META_TARGET, MetaCode.List, new Uint8Array([0x80])); // {}
  assert.is(list.code, MetaCode.ListReply);
  const malformed = new Uint8Array([0xc1]); // a byte MessagePack never uses
  const attach = await client.request(META_TARGET, MetaCode.Attach, malformed).catch((e) => e);
  assert.is(attach.code, "invalid-argument");
  const unknown = await client.request(META_TARGET, MetaCode.Attach, new Uint8Array([0x80])).catch((e) => e);
  assert.is(unknown.code, "not-found");
  client.close();
  await served;
});

test.run();
