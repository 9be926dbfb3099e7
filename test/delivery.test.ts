// The reliable-delivery link (core/session/delivery.ts), as transcripts: two links, a wire between
// them that the test controls frame by frame, and the messages each side hands up.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { concat } from "../core/bytes.ts";
import { DeliveryLink } from "../core/session/delivery.ts";
import { ACK_CODE, decodeSessionHeader, encodeSessionHeader } from "../core/session/protocol.ts";
import { ProtocolError } from "../core/errors.ts";
import { FrameStream } from "../core/secure/frame-stream.ts";
import { memoryStreamPair } from "../core/wire/memory-stream.ts";
import { StreamReader } from "../core/wire/stream.ts";

const test = suite("delivery");

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const DATA = 0x100;

interface InFlight {
  code: number;
  payload: Uint8Array;
}

/** One side: its link, the frames it has put on the wire, and the messages it handed up. */
class Side {
  wire: InFlight[] = [];
  got: string[] = [];
  link: DeliveryLink;
  constructor(readonly name: string, options: ConstructorParameters<typeof DeliveryLink>[0] = {}) {
    this.link = new DeliveryLink({ ackDelayMs: 5, ...options, transmit: this.transport().transmit });
  }
  transport() {
    return {
      transmit: (code: number, _token: number, parts: readonly Uint8Array[]) =>
        void this.wire.push({ code, payload: concat([...parts]) }),
    };
  }
  send(...messages: string[]) {
    for (const m of messages) this.link.send(DATA, 0, [text(m)]);
  }
  /** Delivers the next `n` frames this side sent (all by default) to `peer`. */
  deliverTo(peer: Side, n = this.wire.length) {
    for (const f of this.wire.splice(0, n)) {
      const body = peer.link.receive(f.code, f.payload);
      if (body) peer.got.push(str(body));
    }
  }
  /** The connection drops: whatever is still on the wire is lost. */
  cut() {
    this.wire = [];
    this.link.disconnect();
  }
}

/** After a cut, both sides say what they last received and each sends again what the other missed. */
function resume(a: Side, b: Side) {
  const aHas = a.link.lastReceived, bHas = b.link.lastReceived;
  a.link.resume(a.transport(), bHas);
  b.link.resume(b.transport(), aHas);
}

test("client sends three, agent hands up three in order; the agent's reply acknowledges them", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a", "b", "c");
  client.deliverTo(agent);
  assert.equal(agent.got, ["a", "b", "c"]);
  assert.ok(client.link.keptBytes > 0, "kept until acknowledged");
  agent.send("reply");
  agent.deliverTo(client);
  assert.equal(client.got, ["reply"]);
  assert.is(client.link.keptBytes, 0, "the reply's header carried the acknowledgement");
});

test("nothing goes back: a bare acknowledgement follows within the delay", async () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a");
  client.deliverTo(agent);
  assert.is(agent.wire.length, 0);
  await new Promise((r) => setTimeout(r, 30));
  assert.is(agent.wire.length, 1);
  assert.is(agent.wire[0].code, ACK_CODE);
  assert.equal(decodeSessionHeader(agent.wire[0].payload), { seq: 0, ack: 1 });
  agent.deliverTo(client);
  assert.is(client.link.keptBytes, 0);
  assert.equal(client.got, [], "a bare acknowledgement is not a message");
});

test("a large inflow is acknowledged at once, without waiting for the delay", () => {
  const client = new Side("client"), agent = new Side("agent", { ackEveryBytes: 100, ackDelayMs: 60_000 });
  client.link.send(DATA, 0, [new Uint8Array(150)]);
  client.deliverTo(agent);
  assert.is(agent.wire.length, 1);
  agent.deliverTo(client);
  assert.is(client.link.keptBytes, 0);
  agent.link.close();
});

test("a transfer's 512 KiB requests, each answered, put no bare acknowledgement on the wire: the replies carry them", async () => {
  const client = new Side("client"), agent = new Side("agent");
  for (let i = 0; i < 8; i++) {
    client.link.send(DATA, 0, [new Uint8Array(512 * 1024)]);
    client.deliverTo(agent);
    agent.send(`written ${i}`);
    assert.equal(agent.wire.map((f) => f.code), [DATA], `request ${i}: only the reply`);
    agent.deliverTo(client);
    assert.is(client.link.keptBytes, 0, `request ${i} acknowledged by its reply`);
  }
  await new Promise((r) => setTimeout(r, 30)); // past the delay: nothing is owed, so nothing follows
  assert.is(agent.wire.length, 0, "no bare acknowledgement after the replies carried them");
  agent.link.close();
  client.link.close();
});

test("requests answered one after another: each unanswered one is still acknowledged within the delay", async () => {
  const client = new Side("client"), agent = new Side("agent", { ackDelayMs: 20 });
  client.send("a");
  client.deliverTo(agent);
  agent.send("reply a"); // carries the acknowledgement of a
  agent.deliverTo(client);
  await new Promise((r) => setTimeout(r, 15));
  client.send("b"); // arrives while the timer armed for a still runs, with nothing owed
  client.deliverTo(agent);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(agent.wire.map((f) => f.code), [ACK_CODE], "b, never answered, is acknowledged");
  assert.equal(decodeSessionHeader(agent.wire[0].payload), { seq: 0, ack: 2 });
  agent.link.close();
  client.link.close();
});

test("duplication: a frame that arrives twice is handed up once", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a", "b");
  client.wire.splice(1, 0, client.wire[0]); // a, a, b
  client.deliverTo(agent);
  assert.equal(agent.got, ["a", "b"]);
  agent.link.close();
});

test("reordering: a frame that overtakes another is refused as a gap, never handed up", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a", "b", "c");
  [client.wire[1], client.wire[2]] = [client.wire[2], client.wire[1]]; // a, c, b
  assert.throws(() => client.deliverTo(agent), /session frame 3 arrived after 1: frames were lost/);
  assert.equal(agent.got, ["a"]);
  agent.link.close();
});

test("loss and resume at every boundary, both ways: every message exactly once, in order", () => {
  const messages = ["1", "2", "3", "4", "5"];
  for (let delivered = 0; delivered <= messages.length; delivered++) {
    for (let acked = 0; acked <= 1; acked++) {
      const client = new Side("client"), agent = new Side("agent");
      client.send(...messages);
      agent.send(...messages.map((m) => `r${m}`));
      client.deliverTo(agent, delivered);
      agent.deliverTo(client, delivered);
      if (acked) {
        agent.link.send(DATA, 0, [text("r6")]); // its header acknowledges what the agent got before the cut
        agent.deliverTo(client);
      }
      client.cut();
      agent.cut();
      resume(client, agent);
      client.deliverTo(agent);
      agent.deliverTo(client);
      const label = `cut after ${delivered} frames${acked ? ", acknowledged" : ""}`;
      assert.equal(agent.got, messages, label);
      assert.equal(client.got.filter((m) => m !== "r6"), messages.map((m) => `r${m}`), label);
      client.link.close();
      agent.link.close();
    }
  }
});

test("resume when the peer already has everything: nothing is sent again", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a", "b");
  client.deliverTo(agent);
  client.cut();
  agent.cut();
  resume(client, agent);
  assert.is(client.wire.length, 0);
  assert.is(client.link.keptBytes, 0, "the resume exchange acknowledged them");
  agent.link.close();
});

test("a second cut during the resend: still exactly once", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.send("a", "b", "c", "d");
  client.deliverTo(agent, 1);
  client.cut();
  agent.cut();
  resume(client, agent);
  client.deliverTo(agent, 1); // b arrives, then the line drops again
  client.cut();
  agent.cut();
  resume(client, agent);
  client.deliverTo(agent);
  assert.equal(agent.got, ["a", "b", "c", "d"]);
  agent.link.close();
});

test("keep bound: saturated at the limit, room again once acknowledged", () => {
  let rooms = 0;
  const agent = new Side("agent", { keepLimitBytes: 10, onRoom: () => rooms++ });
  const client = new Side("client");
  agent.link.send(DATA, 0, [new Uint8Array(6)]);
  assert.is(agent.link.saturated, false);
  agent.link.send(DATA, 0, [new Uint8Array(6)]);
  assert.is(agent.link.saturated, true, "12 kept bytes against a bound of 10");
  agent.deliverTo(client, 1);
  client.send("ack carrier");
  client.deliverTo(agent);
  assert.is(agent.link.keptBytes, 6);
  assert.is(agent.link.saturated, false);
  assert.is(rooms, 1, "the producer is told once");
  agent.link.close();
  client.link.close();
});

test("while disconnected nothing is transmitted; everything is kept for the resume", () => {
  const client = new Side("client"), agent = new Side("agent");
  client.cut();
  client.send("a", "b");
  assert.is(client.wire.length, 0);
  resume(client, agent);
  client.deliverTo(agent);
  assert.equal(agent.got, ["a", "b"]);
  agent.link.close();
});

test("a body is recycled once acknowledged, and not while a transmission still reads it", async () => {
  const recycled: string[] = [];
  // A transport that reads the parts later (as a queued seal does) and says when it has.
  const finish: Array<() => void> = [];
  const slow = {
    transmit: (_c: number, _t: number, _parts: readonly Uint8Array[]) => new Promise<void>((r) => finish.push(r)),
  };
  const agent = new DeliveryLink({ transmit: slow.transmit, recycle: (body) => recycled.push(str(body[0])) });
  agent.send(DATA, 0, [text("one")]);
  agent.send(DATA, 0, [text("two")]);
  agent.acknowledge(1);
  assert.equal(recycled, [], "acknowledged, but its transmission has not read it yet");
  finish.shift()!(); // one's transmission has read it
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(recycled, ["one"], "read and acknowledged: recycled; two is still unacknowledged");
  // A cut while two's transmission still reads it: two is sent again on the new transport.
  agent.disconnect();
  agent.resume(slow, 0);
  agent.acknowledge(2);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(recycled, ["one"], "both transmissions of two still read it");
  finish.shift()!(); // the old transmission finishes; the new one still reads
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(recycled, ["one"]);
  finish.shift()!();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(recycled, ["one", "two"]);
  agent.send(DATA, 0, [text("three")]);
  agent.close();
  for (const f of finish.splice(0)) f();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(recycled, ["one", "two"], "dropped by close, never acknowledged: not recycled");
});

test("a transport that reads the parts at once: the body is recycled at the acknowledgement", () => {
  const recycled: string[] = [];
  const agent = new Side("agent", { recycle: (body) => recycled.push(str(body[0])) });
  agent.send("x", "y");
  agent.link.acknowledge(2);
  assert.equal(recycled, ["x", "y"]);
});

test("over real frame streams: a connection lost mid-exchange and replaced by a new one", async () => {
  const got: string[] = [];
  const connect = () => {
    const [a, b] = memoryStreamPair();
    const clientFrames = new FrameStream(new StreamReader(a), null);
    const agentFrames = new FrameStream(new StreamReader(b), null);
    return { clientFrames, agentFrames };
  };
  const sender = (frames: FrameStream) => ({
    transmit: (code: number, token: number, parts: readonly Uint8Array[]) =>
      void frames.sendParts(1, code, token, parts).catch(() => {}),
  });
  const agentLink = new DeliveryLink();
  const pump = async (frames: FrameStream, limit: number) => {
    for (let i = 0; i < limit; i++) {
      const f = await frames.receive().catch(() => null);
      if (!f) return;
      const body = agentLink.receive(f.code, f.payload);
      if (body) got.push(str(body));
    }
  };
  let conn = connect();
  const clientLink = new DeliveryLink({ transmit: sender(conn.clientFrames).transmit });
  for (const m of ["a", "b", "c"]) clientLink.send(DATA, 0, [text(m)]);
  await pump(conn.agentFrames, 2); // a and b arrive; c is lost with the connection
  conn.clientFrames.close();
  clientLink.disconnect();
  clientLink.send(DATA, 0, [text("d")]); // sent while down: kept
  conn = connect();
  agentLink.resume(sender(conn.agentFrames), clientLink.lastReceived);
  clientLink.resume(sender(conn.clientFrames), agentLink.lastReceived);
  await pump(conn.agentFrames, 2);
  assert.equal(got, ["a", "b", "c", "d"]);
  conn.clientFrames.close();
  clientLink.close();
  agentLink.close();
});

test("a peer that acknowledges what was never sent is refused, and everything kept stays kept", () => {
  const client = new Side("client"), agent = new Side("agent");
  agent.send("a", "b"); // numbered 1 and 2
  const kept = agent.link.keptBytes;
  const forged = (seq: number, ack: number) => concat([encodeSessionHeader(seq, ack), text("x")]);
  for (const [code, seq] of [[ACK_CODE, 0], [DATA, 1]]) {
    assert.throws(
      () => agent.link.receive(code, forged(seq, 3)),
      (e: unknown) =>
        e instanceof ProtocolError && /acknowledges 3 messages, but only 2 were sent/.test((e as Error).message),
    );
    assert.is(agent.link.keptBytes, kept, "nothing dropped on the peer's word");
  }
  agent.deliverTo(client); // an honest peer still gets both, and its acknowledgement is taken
  assert.equal(client.got, ["a", "b"]);
  client.send("ok");
  client.deliverTo(agent);
  assert.is(agent.link.keptBytes, 0);
  agent.link.close();
  client.link.close();
});

test("a resume that claims more than was ever sent is refused before anything is sent again", () => {
  const agent = new Side("agent");
  agent.send("a", "b");
  agent.cut();
  assert.throws(
    () => agent.link.resume(agent.transport(), 5),
    (e: unknown) =>
      e instanceof ProtocolError && /acknowledges 5 messages, but only 2 were sent/.test((e as Error).message),
  );
  assert.is(agent.wire.length, 0, "nothing resent on a bad resume");
  agent.link.resume(agent.transport(), 1); // a true one still works: b again
  assert.equal(agent.wire.length, 1);
  agent.link.close();
});

test.run();
