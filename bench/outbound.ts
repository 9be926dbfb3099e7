/**
 * Outbound mode next to inbound, same agent binary, same run:
 *   handshake to ready   inbound: connect + key exchange, timed by the client;
 *                        outbound: TCP accept to key proof done, timed by the product's listener
 *   round trip           meta ping and a product message through each kind of connection
 * @module
 */
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { generate } from "selfsigned";
import { AgentClient } from "../core/client/agent-client.ts";
import { ServiceCode } from "../core/session/contract.ts";
import { type Agent, connect, listen } from "../mod.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { dialTcp } from "../runtime/tcp.ts";
import { median, ratio, table, us } from "./stats.ts";

export async function benchOutbound(agentBin: string, inboundPort: number, key: string): Promise<void> {
  // Inbound handshakes, timed by the client.
  const inbound: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const c = await AgentClient.open(await dialTcp("127.0.0.1", inboundPort, { timeoutMs: 5000 }), {
      key: Buffer.from(key, "hex"),
      provider: runtimeCryptoProvider(),
    });
    inbound.push(performance.now() - t0);
    c.close();
  }

  // Outbound: a listener here; the agent dials it, and is cut after each connection to come back.
  const pems = await generate([{ name: "commonName", value: "bench.listener" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [{ name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] }],
  } as never);
  const fingerprint = new crypto.X509Certificate(pems.cert).fingerprint256;
  const outbound: number[] = [];
  const listener = await listen({
    host: "127.0.0.1",
    port: 0,
    cert: pems.cert,
    key: pems.private,
    agents: { bench: key },
  });
  const accepted: number[] = [];
  listener.server.prependListener("connection", () => accepted.push(performance.now()));
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-bench-out-"));
  const agent = spawn(agentBin, [
    "start",
    "--no-listen",
    "--connect",
    `127.0.0.1:${listener.port}`,
    "--fingerprint",
    fingerprint,
    "--key",
    key,
  ], {
    env: { ...process.env, AGENT_STATE_DIR: stateDir },
    stdio: "ignore",
  });
  let connected: Agent | null = null;
  try {
    for (let i = 0; i < 6; i++) {
      const a = await listener.waitForAgent("bench", 30_000);
      outbound.push(performance.now() - accepted[accepted.length - 1]);
      if (i < 5) {
        a.client.frames.close();
        while (listener.agent("bench") === a) await new Promise((r) => setTimeout(r, 5));
      } else connected = a;
    }
    const rt = async (agentConn: Agent) => {
      const s = await agentConn.openSession("bench");
      const ping: number[] = [], product: number[] = [];
      for (let i = 0; i < 1500; i++) ping.push((await agentConn.ping()).rttMs);
      for (let i = 0; i < 1500; i++) {
        const t0 = performance.now();
        await s.call(ServiceCode.SystemProductRoot, {});
        product.push(performance.now() - t0);
      }
      await s.close();
      return { ping: median(ping), product: median(product) };
    };
    const viaOut = await rt(connected!);
    const inboundAgent = await connect({ host: "127.0.0.1", port: inboundPort, key });
    const viaIn = await rt(inboundAgent);
    inboundAgent.close();

    console.log("\noutbound (agent dials a TLS listener) next to inbound");
    table([
      ["", "inbound", "outbound", "ratio out/in"],
      [
        "handshake to ready, p50",
        `${median(inbound).toFixed(2)} ms`,
        `${median(outbound).toFixed(2)} ms`,
        ratio(median(outbound), median(inbound)),
      ],
      ["meta ping round trip, p50", us(viaIn.ping), us(viaOut.ping), ratio(viaOut.ping, viaIn.ping)],
      ["product message round trip, p50", us(viaIn.product), us(viaOut.product), ratio(viaOut.product, viaIn.product)],
    ]);
    console.log("  (outbound handshake = TLS 1.3 + key proof inside it; records then ride TLS without a second AEAD)");
  } finally {
    agent.kill();
    await listener.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}
