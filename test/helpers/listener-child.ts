// A product listener in its own process (so a test can freeze it with SIGSTOP).
// Env: CERT, KEY (PEM files), AGENT_KEY, KEEPALIVE (seconds). Prints "port N".
import fs from "node:fs";
import { listen } from "../../mod.ts";

const listener = await listen({
  host: "127.0.0.1",
  port: 0,
  cert: fs.readFileSync(process.env.CERT!, "utf8"),
  key: fs.readFileSync(process.env.KEY!, "utf8"),
  agents: { frozen: process.env.AGENT_KEY! },
  keepaliveSeconds: Number(process.env.KEEPALIVE ?? 15),
});
console.log(`port ${listener.port}`);
