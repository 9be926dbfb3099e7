// Error messages an operator reads (issue 34, item 13): each names the thing that is wrong once, in
// plain words, with no raw system error and no internal name.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { generateKey } from "../core/secure/keys.ts";
import { selfSigned } from "./helpers/certs.ts";
import {
  runAgentAsync,
  type RunningAgent,
  startAgent,
  stopAll,
  tempDir,
  writeKeyFile,
} from "./helpers/agent-process.ts";

const messages = suite("messages e2e");
const KEY = generateKey();
let agent: RunningAgent;
let keyFile: string;
let target: string;

messages.before(async () => {
  keyFile = writeKeyFile(tempDir(), KEY.hex);
  agent = await startAgent(["--key", KEY.hex]);
  target = `127.0.0.1:${agent.port}`;
});

messages.after(async () => {
  await agent.stop();
  stopAll();
});

messages("a config typo suggests the setting meant, instead of listing them all", async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ prot: 4000 }));
  const r = await runAgentAsync(["start", "--check", "--config", path.join(dir, "config.json")], {
    AGENT_STATE_DIR: dir,
  });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /unknown setting "prot" \(did you mean "port"\?\)/);
});

messages("a missing key file is named as missing, with no raw ENOENT", async () => {
  const r = await runAgentAsync(["run", target, "--key-file", "/no/such/key.file", "--", "true"]);
  assert.is(r.code, 254, r.stderr);
  assert.match(r.stderr, /key file \/no\/such\/key\.file does not exist/);
  assert.not.match(r.stderr, /ENOENT|stat '/);
});

messages("a bad key's line number counts every line of the file, comments too", async () => {
  const file = path.join(tempDir(), "keys");
  fs.writeFileSync(file, `# the agent's keys\n\n${KEY.hex}\nnot-a-key\n`, { mode: 0o600 });
  const r = await runAgentAsync(["run", target, "--key-file", file, "--", "true"]);
  assert.match(r.stderr, new RegExp(`line 4 of ${file}`));
});

messages("probe --tls with a pinned fingerprint that differs says why it is not trusted", async () => {
  const cert = await selfSigned({ cn: "listener" });
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const r = await runAgentAsync(["probe", `127.0.0.1:${port}`, "--tls", "--fingerprint", "ab".repeat(32)]);
    assert.match(r.stdout + r.stderr, /trusted\s+no: /);
    assert.not.match(r.stdout + r.stderr, /undefined/);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

messages("cp names a missing remote directory, not its temporary file, and a missing file once", async () => {
  const source = path.join(tempDir(), "x.sh");
  fs.writeFileSync(source, "echo\n");
  const up = await runAgentAsync(["cp", "--key-file", keyFile, source, `${target}:/srv-missing/dir/x.sh`]);
  assert.is(up.code, 20, up.stderr);
  assert.not.match(up.stderr, /agent-cp|agent-\d/, "no temporary name");
  assert.match(up.stderr, /\/srv-missing\/dir/);
  const down = await runAgentAsync(["cp", "--key-file", keyFile, `${target}:/srv-missing.txt`, tempDir()]);
  assert.is(down.code, 20, down.stderr);
  assert.is(down.stderr.split("/srv-missing.txt").length - 1, 1, down.stderr);
});

messages.run();
