// A product listener in its own process, run under a low open-file limit by the test.
// Env: CERT, KEY (PEM files). Prints "port N", then each event as a JSON line.
import fs from "node:fs";
import { listen } from "../../mod.ts";

const listener = await listen({
  host: "127.0.0.1",
  port: 0,
  cert: fs.readFileSync(process.env.CERT!, "utf8"),
  key: fs.readFileSync(process.env.KEY!, "utf8"),
  agents: {},
  onEvent: (e) => console.log(JSON.stringify(e)),
});
console.log(`port ${listener.port}`);
