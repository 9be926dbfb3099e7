/**
 * A minimal product that uses outbound agents: it runs a TLS listener, waits
 * for one server's agent to dial in, runs a command on it and prints the
 * output. Run it, then start the agent on the server (see README, "Outbound
 * set-up"):
 *
 *   PRODUCT_CERT=cert.pem PRODUCT_KEY=key.pem AGENT_KEY=<64 hex digits> \
 *     npx tsx examples/outbound-product.ts web1 uname -a
 *
 *   # on the server:
 *   agent start --connect product.example.com:46340 --ca ca.pem --no-listen
 *
 * Runs on Deno too: `deno run -A examples/outbound-product.ts …`.
 * @module
 */
import fs from "node:fs";
import { listen } from "../mod.ts"; // from the package: "@agent/client"

const [server = "web1", program = "uname", ...args] = process.argv.slice(2);
const port = Number(process.env.PRODUCT_PORT ?? 46340);
const need = (name: string) => process.env[name] ?? (console.error(`set ${name}`), process.exit(2));

const listener = await listen({
  port,
  cert: fs.readFileSync(need("PRODUCT_CERT"), "utf8"),
  key: fs.readFileSync(need("PRODUCT_KEY"), "utf8"),
  agents: { [server]: need("AGENT_KEY") },
  onEvent: (e) => console.error(`[listener] ${JSON.stringify(e)}`),
});
console.error(`listening on port ${listener.port}; waiting for server "${server}" to dial in…`);

const agent = await listener.waitForAgent(server, 10 * 60_000);
const session = await agent.openSession("example");
const proc = await session.processes.start({ program, args });
for await (const chunk of proc.stdout) process.stdout.write(chunk);
const { code, signal } = await proc.wait();
console.error(`${program} exited with ${signal ?? code}`);
await session.close();
await listener.close();
