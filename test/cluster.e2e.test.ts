// A listener cluster on NATS: three listener nodes and a real nats-server, real agents each dialling
// one node (given all three), and a product on any node reaching any agent; a node lost, the engine
// lost and back, and one key presented on two nodes.
import { suite } from "uvu";
import { controlPath, requestControl } from "../agent/control.ts";
import type { AgentStatus } from "../agent/server.ts";
import * as assert from "uvu/assert";
import { type Agent, type AgentListener, listen, type ListenerEvent } from "../mod.ts";
import { type Cluster, ClusterError, type ClusterEvent, joinCluster } from "../cluster.ts";
import { generateKey } from "../core/secure/keys.ts";
import { ACK_CODE, encodeSessionHeader } from "../core/session/protocol.ts";
import { type RunningAgent, startAgent, stopAll, until } from "./helpers/agent-process.ts";
import { selfSigned, type TestCert } from "./helpers/certs.ts";
import { natsAvailable, NatsServer } from "./helpers/nats.ts";

const test = suite("listener cluster e2e");

interface Node {
  name: string;
  listener: AgentListener<Agent>;
  cluster: Cluster;
  events: ClusterEvent[];
  listenerEvents: ListenerEvent[];
  alive: boolean;
}

const SERVERS = ["web1", "web2", "web3", "web4"];
const keys = Object.fromEntries(SERVERS.map((s) => [s, generateKey().hex]));
const nodes: Node[] = [];
const agents: RunningAgent[] = [];
let nats: NatsServer | null = null;
let cert: TestCert;
const enabled = natsAvailable("listener cluster e2e");

test.after(async () => {
  await Promise.all(agents.map((a) => a.stop("SIGKILL")));
  for (const n of nodes) await stopNode(n);
  await nats?.stop();
  stopAll();
});

async function startNode(name: string, port = 0): Promise<Node> {
  const listenerEvents: ListenerEvent[] = [], events: ClusterEvent[] = [];
  const listener = await listen({
    host: "127.0.0.1",
    port,
    cert: cert.cert,
    key: cert.key,
    agents: keys,
    onEvent: (e) => listenerEvents.push(e),
  });
  const cluster = await joinCluster(listener, { servers: nats!.url, node: name, onEvent: (e) => events.push(e) });
  return { name, listener, cluster, events, listenerEvents, alive: true };
}

async function stopNode(n: Node) {
  if (!n.alive) return;
  n.alive = false;
  await n.cluster.close().catch(() => {});
  await n.listener.close().catch(() => {});
}

async function dialer(server: string, ports: number[], ready = /outbound \S+: connected/) {
  const targets = ports.map((p) => `127.0.0.1:${p}`).join(",");
  const args = ["--no-listen", "--connect", targets, "--fingerprint", cert.fingerprint, "--key", keys[server]];
  const a = await startAgent(args, { listenFlags: false, ready });
  agents.push(a);
  return a;
}

const holder = (server: string) => nodes.find((n) => n.alive && n.listener.agent(server));
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Through `node`, opens a session on `server`'s agent, runs a command and moves a file both ways. */
async function exercise(node: Node, server: string, bytes = 1024) {
  const agent = await node.cluster.waitForAgent(server, 30_000);
  const session = await agent.openSession("cluster");
  try {
    const run = await session.processes.run({ program: "sh", args: ["-c", `echo ${server} via ${node.name}`] });
    assert.is(text(run.stdout).trim(), `${server} via ${node.name}`);
    const data = new Uint8Array(bytes).map((_, i) => (i * 7) & 0xff);
    const file = `${session.productRoot}/through-${node.name}.bin`;
    await session.files.writeFile(file, data);
    const back = await session.files.readFile(file);
    assert.ok(back.length === data.length && back.every((b, i) => b === data[i]), "the file came back whole");
  } finally {
    await session.close();
  }
}

test("any node reaches any agent: commands, output and files travel through the node holding it", async () => {
  if (!enabled) return;
  cert = await selfSigned();
  nats = await NatsServer.start();
  for (const name of ["a", "b", "c"]) nodes.push(await startNode(name));
  const ports = nodes.map((n) => n.listener.port);
  for (const s of SERVERS) await dialer(s, ports);
  await until(() => SERVERS.every((s) => holder(s)), "every agent held by a node");
  let remote = 0;
  for (const s of SERVERS) {
    for (const n of nodes) {
      if (holder(s) !== n) remote++;
      await exercise(n, s, s === "web1" ? 3 * 1024 * 1024 + 17 : 1024); // one file over several windows
    }
  }
  assert.ok(remote >= SERVERS.length * 2, `${remote} of the calls went through another node`);
  // Output streamed as it comes, through another node.
  const far = nodes.find((n) => n !== holder("web2"))!;
  const session = await (await far.cluster.waitForAgent("web2")).openSession("cluster");
  const proc = await session.processes.start({
    program: "sh",
    args: ["-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"],
  });
  assert.is(text(await proc.output()).replace(/\s+/g, " ").trim(), "1 2 3");
  assert.equal(await proc.wait(), { code: 0, signal: null });
  await session.close();
  // A delivery acknowledgement sent just before the requester heard its session ended (its timer ran):
  // the node holding the agent drops it, and the connection through it carries on.
  const proxy = await far.cluster.waitForAgent("web2");
  await proxy.client.post(session.attachment, ACK_CODE, 0, [encodeSessionHeader(0, 1)]);
  const after = await proxy.openSession("cluster");
  assert.is((await after.files.stat(".")).type, "directory", "the same connection still serves");
  await after.close();
  // A transfer's window report travels through the node too: the holding agent's status shows it.
  const web2 = agents[SERVERS.indexOf("web2")];
  const watched = await proxy.openSession("cluster");
  let shown = 0, done = false;
  const upload = watched.files.writeFile("window.bin", new Uint8Array(24 * 1024 * 1024)).finally(() => (done = true));
  while (!done) {
    const status = await requestControl(controlPath(web2.stateDir), "status") as AgentStatus;
    shown = Math.max(shown, ...status.sessions.flatMap((x) => (x.attachments ?? []).map((a) => a.windowBytes ?? 0)));
    await new Promise((r) => setTimeout(r, 5));
  }
  await upload;
  assert.ok(shown >= 2 * 1024 * 1024, `the agent holding web2 showed a window of ${shown} bytes`);
  await watched.close();
  assert.is(await nodes[0].cluster.agent("nobody-such").catch((e) => e instanceof ClusterError), true);
});

test("a node lost: its agents reconnect to the others and every agent is reachable again; a session resumes", async () => {
  if (!enabled) return;
  const victim = holder("web1")!;
  const other = nodes.find((n) => n !== victim)!;
  // A session through another node on an agent the victim holds, with a process running across the loss.
  const before = await other.cluster.waitForAgent("web1");
  const session = await before.openSession("cluster");
  const proc = await session.processes.start({ program: "sh", args: ["-c", "sleep 3; echo after the move"] });
  const lostAt = performance.now();
  await stopNode(victim);
  await until(() => SERVERS.every((s) => holder(s)), "every agent held again", 45_000).catch((e) => {
    for (const a of agents) console.log(a.stderr().slice(-1500));
    for (const n of nodes) console.log(n.name, n.alive, n.listenerEvents.slice(-6));
    throw e;
  });
  for (const s of SERVERS) for (const n of nodes.filter((n) => n.alive)) await exercise(n, s);
  const backMs = performance.now() - lostAt;
  await until(() => before.client.isClosed, "the old proxy noticed the loss");
  const again = await other.cluster.waitForAgent("web1");
  await session.resume(again.client);
  assert.is(text(await proc.output()).trim(), "after the move");
  assert.equal(await proc.wait(), { code: 0, signal: null });
  await session.close();
  console.log(`\n  (every agent reachable again ${(backMs / 1000).toFixed(1)} s after a node was lost)`);
  assert.ok(backMs < 45_000);
});

test("the engine lost: each node serves its own agents and says so; back, it heals", async () => {
  if (!enabled) return;
  const live = nodes.filter((n) => n.alive);
  await nats!.stop();
  await until(() => live.every((n) => n.events.some((e) => e.type === "engine-lost")), "engine-lost on every node");
  for (const s of SERVERS) assert.ok((await holder(s)!.listener.agent(s)!.info()).version, `${s} served locally`);
  const h = holder("web3")!, away = live.find((n) => n !== h)!;
  const e = await away.cluster.agent("web3").catch((e) => e);
  assert.ok(e instanceof ClusterError && e.code === "engine-unavailable", String(e));
  await nats!.resume();
  await until(() => live.every((n) => n.events.some((e) => e.type === "engine-restored")), "engine-restored", 20_000);
  for (const s of SERVERS) for (const n of live) await exercise(n, s);
});

test("one key on two nodes: the second is refused while the first answers, and names the node holding it", async () => {
  if (!enabled) return;
  const h = holder("web4")!, away = nodes.find((n) => n.alive && n !== h)!;
  const twin = await dialer("web4", [away.listener.port], /outbound \S+: (connected|.*retrying)/);
  await until(
    () => away.listenerEvents.some((e) => e.type === "rejected" && e.reason.includes(`through node ${h.name}`)),
    "the twin refused on the other node",
  );
  assert.is(holder("web4"), h, "the first connection kept its place");
  await twin.stop("SIGKILL");
});

test("one key on two nodes while the engine is away: once back, the newest connection wins and the other is told why", async () => {
  if (!enabled) return;
  const h = holder("web4")!, away = nodes.find((n) => n.alive && n !== h)!;
  await nats!.stop();
  await until(() => !away.cluster.engineConnected && !h.cluster.engineConnected, "both cut off");
  const twin = await dialer("web4", [away.listener.port]);
  await until(() => away.listener.agent("web4") !== undefined, "the twin accepted while cut off");
  await nats!.resume();
  await until(() => h.events.some((e) => e.type === "superseded" && e.node === away.name), "the older one superseded");
  await until(() => !h.listener.agent("web4"), "the older connection dropped");
  const gone = h.listenerEvents.find((e) => e.type === "disconnected" && e.server === "web4");
  assert.match(gone && gone.type === "disconnected" ? gone.reason : "", /superseded: .* through node/);
  await twin.stop("SIGKILL");
});

test.run();
