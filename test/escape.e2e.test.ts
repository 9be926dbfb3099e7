// Strings an outsider controls never reach a terminal raw (security finding 8): a TLS certificate's subject,
// sent before any authentication, in probe's output, the agent's log, `agent status` and /readyz.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { generateKey } from "../core/secure/keys.ts";
import { selfSigned } from "./helpers/certs.ts";
import { runAgentAsync, startAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("escape e2e");

const HOSTILE_CN = "evil\x1b[2J\x1b]0;owned\x07\r\u009b31m\u2028end";

/** Any raw C0 (but tab and newline), DEL, C1 or Unicode line separator: what escaping must have removed. */
function rawControls(text: string): string[] {
  return [...text].filter((c) => {
    const n = c.charCodeAt(0);
    return (n < 0x20 && c !== "\n" && c !== "\t") || (n >= 0x7f && n <= 0x9f) || n === 0x2028 || n === 0x2029;
  }).map((c) => `U+${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

let server: tls.Server | null = null;
let port = 0;
let fingerprint = "";

test.before(async () => {
  const cert = await selfSigned({ cn: HOSTILE_CN });
  fingerprint = cert.fingerprint;
  server = tls.createServer({ cert: cert.cert, key: cert.key }, (socket) => socket.end());
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

test.after(async () => {
  stopAll();
  await new Promise((resolve) => server?.close(resolve));
});

test("probe --tls shows a hostile certificate subject escaped, in text and JSON, on both streams", async () => {
  const dir = tempDir();
  for (const args of [[], ["--fingerprint", fingerprint], ["--json"], ["--json", "--fingerprint", fingerprint]]) {
    const r = await runAgentAsync(["probe", `127.0.0.1:${port}`, "--tls", "--timeout", "3", ...args], {
      AGENT_STATE_DIR: dir,
    });
    assert.equal(rawControls(r.stdout + r.stderr), [], `${args.join(" ")}: ${JSON.stringify(r.stdout + r.stderr)}`);
    assert.match(r.stdout + r.stderr, /31m\\{1,2}u2028end/, JSON.stringify(r.stdout + r.stderr));
  }
});

test("an agent dialing that listener keeps the subject escaped in its log, status and /readyz", async () => {
  const agent = await startAgent(
    ["--no-listen", "--connect", `127.0.0.1:${port}`, "--key", generateKey().hex, "--metrics", "127.0.0.1:0"],
    { listenFlags: false, ready: /health and metrics on http:\/\/\S+\// },
  );
  await agent.waitForLog(/outbound .*retrying/);
  const metrics = /health and metrics on http:\/\/(\S+)\//.exec(agent.stderr())![1];
  const readyz = await (await fetch(`http://${metrics}/readyz`)).text();
  const text = await runAgentAsync(["status"], { AGENT_STATE_DIR: agent.stateDir });
  const json = await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: agent.stateDir });
  await agent.stop();
  for (
    const [name, output] of [["log", agent.stderr()], ["readyz", readyz], ["status", text.stdout], [
      "json",
      json.stdout,
    ]]
  ) {
    assert.equal(rawControls(output), [], `${name}: ${JSON.stringify(output)}`);
    assert.match(output, /31m\\{1,2}u2028end/, `${name}: ${JSON.stringify(output)}`);
  }
});

test.run();
