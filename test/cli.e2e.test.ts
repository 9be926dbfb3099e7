// The operator's view: the built `agent` binary driven as a person would.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import {
  agentCommand,
  cleanExit,
  hermeticEnv,
  IS_DENO,
  ROOT,
  runAgent,
  runAgentAsync,
  startAgent,
  stopAll,
  tempDir,
  writeKeyFile,
} from "./helpers/agent-process.ts";
import { fakeServer } from "./helpers/net.ts";
import { encodeReply, EncryptionMode, PROTOCOL_VERSIONS } from "../core/wire/hello.ts";
import { generateKey } from "../core/secure/keys.ts";

const cli = suite("cli e2e");
cli.after(stopAll);

cli("--version and --help work from the binary alone, with no node_modules beside it", () => {
  if (IS_DENO) return; // the Deno run uses the bundle, not the SEA binary
  const dir = tempDir();
  const exe = path.join(dir, "agent");
  fs.copyFileSync(path.join(ROOT, "dist/agent"), exe);
  fs.chmodSync(exe, 0o755);
  const v = spawnSync(exe, ["--version"], { cwd: dir, encoding: "utf8", env: hermeticEnv() });
  assert.is(v.status, 0);
  assert.match(v.stdout, /agent\/\d+\.\d+\.\d+/);
  const h = spawnSync(exe, ["--help"], { cwd: dir, encoding: "utf8", env: hermeticEnv() });
  for (const c of ["start", "status", "keygen", "probe"]) assert.match(h.stdout, new RegExp(`\\n\\s+${c}`));
  const ph = spawnSync(exe, ["probe", "--help"], { cwd: dir, encoding: "utf8", env: hermeticEnv() });
  assert.match(ph.stdout, /7 wrong key/);
});

cli("an unknown command or option is a usage error", () => {
  const r = runAgent(["frobnicate"]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  const o = runAgent(["keygen", "--frob"]);
  assert.is(o.code, 2);
  assert.match(o.stderr, /Unknown option `--frob`/);
});

cli('an option that needs a value and was given none is a usage error, not the value "true"', () => {
  const dir = tempDir();
  for (
    const args of [["keygen", "--out"], ["keygen", "--show"], ["status", "--state-dir"], ["run", "h", "--key-file"]]
  ) {
    const r = spawnSync(agentCommand()[0], [...agentCommand().slice(1), ...args], {
      cwd: dir,
      encoding: "utf8",
      env: hermeticEnv(),
    });
    assert.is(r.status, args[0] === "run" ? 254 : 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${args[args.length - 1]} needs a value`), args.join(" "));
  }
  assert.equal(fs.readdirSync(dir), [], "no file named true");
});

cli("every command's help says what it does and how it exits; help for no such command is an error", () => {
  for (const command of ["start", "status", "keygen", "probe", "run", "cp", "service"]) {
    const r = runAgent([command, "--help"]);
    assert.is(r.code, 0, command);
    assert.match(r.stdout, /Usage:\n {2}\$ agent \S+.*\n\n {2}[A-Z]/, `${command}: a description under the usage`);
    assert.match(r.stdout, /Exit codes: /, `${command}: its exit codes`);
  }
  const none = runAgent(["help", "frobnicate"]);
  assert.is(none.code, 2);
  assert.match(none.stderr, /no command "frobnicate"/);
});

cli("completion bash and zsh complete the commands and each command's options, from the command table", () => {
  const bash = runAgent(["completion", "bash"]);
  assert.is(bash.code, 0, bash.stderr);
  const script = path.join(tempDir(), "agent.bash");
  fs.writeFileSync(script, bash.stdout);
  const complete = (line: string) =>
    spawnSync("bash", [
      "-c",
      `source ${script}; COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _agent; echo "\${COMPREPLY[*]}"`,
    ], {
      encoding: "utf8",
    }).stdout.trim().split(" ");
  assert.ok(complete("agent ''").includes("probe"));
  assert.ok(complete("agent cp --").includes("--recursive"));
  assert.ok(complete("agent run --").includes("--tty"));
  const zsh = runAgent(["completion", "zsh"]);
  assert.is(zsh.code, 0);
  assert.match(zsh.stdout, /#compdef agent/);
  assert.match(zsh.stdout, /--dereference/);
  assert.is(runAgent(["completion", "fish"]).code, 2);
});

cli("status shows the spare hosts and the memory of the agent and its hosts", async () => {
  const key = generateKey();
  const agent = await startAgent(["--key", key.hex]);
  const keyFile = writeKeyFile(tempDir(), key.hex);
  const ran = await runAgentAsync(["run", `127.0.0.1:${agent.port}`, "--key-file", keyFile, "--", "true"]);
  assert.is(ran.code, 0, ran.stderr);
  await agent.waitForLog(/spare host for cli ready \(pid (\d+)\)/);
  const sparePid = Number(/spare host for cli ready \(pid (\d+)\)/.exec(agent.stderr())![1]);
  const text = await runAgentAsync(["status"], { AGENT_STATE_DIR: agent.stateDir });
  const json = JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: agent.stateDir })).stdout);
  await agent.stop();
  assert.match(text.stdout, new RegExp(`spare hosts  1: cli \\(pid ${sparePid}, `));
  assert.match(text.stdout, /memory {7}agent \d+(\.\d)? MiB, hosts \d+(\.\d)? MiB \(1 process\)/);
  assert.equal(json.spares.map((s: { product: string; hostPid: number }) => [s.product, s.hostPid]), [[
    "cli",
    sparePid,
  ]]);
  assert.ok(json.memory.agentKiB > 0 && json.memory.hostsKiB > 0, JSON.stringify(json.memory));
});

cli("keygen prints a key and its id, as text and as JSON", () => {
  const text = runAgent(["keygen"]);
  assert.is(text.code, 0);
  assert.match(text.stdout, /Key id: [0-9a-f]{12}\nKey: {4}[0-9a-f]{64}\n/);
  assert.match(text.stdout, /Outbound/);
  const json = JSON.parse(runAgent(["keygen", "--json"]).stdout);
  assert.match(json.key, /^[0-9a-f]{64}$/);
  assert.match(json.keyId, /^[0-9a-f]{12}$/);
  assert.is.not(json.key, /Key:\s+([0-9a-f]{64})/.exec(text.stdout)![1]);
});

cli("keygen --out writes a 0600 file and will not overwrite one", () => {
  const file = path.join(tempDir(), "k");
  const r = runAgent(["keygen", "--out", file]);
  assert.is(r.code, 0, r.stderr);
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  assert.not.match(r.stdout, /[0-9a-f]{64}/);
  const again = runAgent(["keygen", "--out", file]);
  assert.is(again.code, 2);
  assert.is(
    again.stderr.trim(),
    `agent: ${file} already exists; not overwriting a key that may be in use (pass --force to replace it)`,
  );
  const before = fs.readFileSync(file, "utf8");
  assert.is(runAgent(["keygen", "--out", file, "--force"]).code, 0);
  assert.is.not(fs.readFileSync(file, "utf8"), before, "--force replaced it");
});

cli("keygen --out creates a missing directory with mode 0700, as the README types it", () => {
  const dir = path.join(tempDir(), "etc", "agent");
  const r = runAgent(["keygen", "--out", path.join(dir, "keys")]);
  assert.is(r.code, 0, r.stderr);
  assert.is(fs.statSync(dir).mode & 0o777, 0o700);
  assert.is(fs.statSync(path.join(dir, "keys")).mode & 0o777, 0o600);
});

cli("keygen --show prints the id of every key in a file, offline, and refuses a file others can read", () => {
  const dir = tempDir();
  const a = JSON.parse(runAgent(["keygen", "--json"]).stdout), b = JSON.parse(runAgent(["keygen", "--json"]).stdout);
  const file = path.join(dir, "keys");
  fs.writeFileSync(file, `# two keys, for rotation\n${a.key}\n${b.key}\n`, { mode: 0o600 });
  assert.equal(JSON.parse(runAgent(["keygen", "--show", file, "--json"]).stdout), { file, keyIds: [a.keyId, b.keyId] });
  fs.chmodSync(file, 0o644);
  const r = runAgent(["keygen", "--show", file]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /readable by others \(mode 0644\); run: chmod 600/);
});

cli(
  "first start creates a 0600 key and names its id and file, never printing the key where no one watches",
  async () => {
    const agent = await startAgent();
    const keyFile = path.join(agent.stateDir, "agent.key");
    assert.is(agent.keyHex, null, "stdout is not a terminal: no key printed");
    const id = /key id ([0-9a-f]{12})/.exec(agent.stdout())?.[1];
    assert.ok(id, agent.stdout());
    assert.ok(agent.stdout().includes(keyFile), "the key file's path is named");
    assert.match(agent.stdout(), /--show-key prints it/);
    const keyHex = fs.readFileSync(keyFile, "utf8").split("\n").find((l) => /^[0-9a-f]{64}$/.test(l))!;
    assert.is(fs.statSync(keyFile).mode & 0o777, 0o600);
    assert.is(fs.statSync(agent.stateDir).mode & 0o777, 0o700);
    assert.not.match(agent.stderr() + agent.stdout(), new RegExp(keyHex), "neither log nor stdout holds the key");
    assert.equal(
      runAgent(["keygen", "--show", keyFile]).stdout,
      `${id}  ${keyFile}\n`,
      "keygen --show names the same id",
    );

    const probe = await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", keyHex, "--count", "7"]);
    assert.is(probe.code, 0, probe.stderr);
    assert.match(probe.stdout, /agent\s+0\.\d+\.\d+ on \w+\/\w+/);
    assert.match(
      probe.stdout,
      /round trip\s+min [\d.]+ ms\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms\s+\(7 pings\)/,
    );

    const json = JSON.parse(
      (await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key-file", keyFile, "--json", "--count", "3"]))
        .stdout,
    );
    assert.is(json.ok, true);
    assert.is(json.rtt.count, 3);
    assert.is(json.agent.protocol.current, PROTOCOL_VERSIONS.max);
    assert.ok(json.rtt.minMs <= json.rtt.p50Ms && json.rtt.p50Ms <= json.rtt.maxMs);
    assert.ok(cleanExit(await agent.stop()));
    assert.match(agent.stderr(), /stopped\n$/);

    const second = await startAgent([], { stateDir: agent.stateDir });
    assert.not.match(second.stdout(), /new one was created/, "no new key on a second start");
    assert.match(second.stderr(), /listening on/);
    await second.stop();

    const shown = await startAgent(["--show-key"]);
    assert.ok(shown.keyHex, "--show-key prints the new key");
    assert.ok(fs.readFileSync(path.join(shown.stateDir, "agent.key"), "utf8").includes(shown.keyHex!));
    await shown.stop();
  },
);

cli("status reports the running agent, and says clearly when none runs", async () => {
  const dir = tempDir();
  const down = runAgent(["status"], { AGENT_STATE_DIR: dir });
  assert.is(down.code, 3);
  assert.match(down.stderr, /no agent is running/);
  assert.is(JSON.parse(runAgent(["status", "--json"], { AGENT_STATE_DIR: dir }).stdout).running, false);

  const k1 = generateKey().hex, k2 = generateKey().hex;
  const agent = await startAgent(["--key-file", writeKeyFile(dir, `${k1}\n${k2}`)], { stateDir: dir });
  await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", k2, "--count", "1"]);
  await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex, "--count", "1"]);
  const text = await runAgentAsync(["status"], { AGENT_STATE_DIR: dir });
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`pid ${agent.pid}`));
  assert.match(text.stdout, /listening\s+127\.0\.0\.1:\d+ \(key mode\)/);
  assert.match(text.stdout, /key ids\s+[0-9a-f]{12}, [0-9a-f]{12}\n/);
  assert.match(text.stdout, /1 accepted; rejected: bad-key 1/);
  assert.not.match(text.stdout, new RegExp(`${k1}|${k2}`));
  const s = JSON.parse((await runAgentAsync(["status", "--json"], { AGENT_STATE_DIR: dir })).stdout);
  assert.equal([s.running, s.pid, s.mode, s.keyIds.length, s.handshakes.accepted, s.handshakes.rejected["bad-key"]], [
    true,
    agent.pid,
    "key",
    2,
    1,
    1,
  ]);
  assert.is(typeof s.uptimeSeconds, "number");
  assert.equal(s.connections, { open: 0, handshaking: 0 });
  assert.is(fs.statSync(path.join(dir, "agent.sock")).mode & 0o777, 0o600);
  await agent.stop();
});

cli("SIGTERM and SIGINT shut the agent down cleanly and remove its control socket", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const agent = await startAgent();
    assert.ok(cleanExit(await agent.stop(signal)));
    assert.match(agent.stderr(), new RegExp(`received ${signal}, shutting down[\\s\\S]*stopped`));
    assert.not.ok(fs.existsSync(path.join(agent.stateDir, "agent.sock")));
  }
});

cli("a second agent on the same state directory refuses to start", async () => {
  const agent = await startAgent();
  const second = await runAgentAsync(["start", "--host", "127.0.0.1", "--port", "0"], {
    AGENT_STATE_DIR: agent.stateDir,
  });
  assert.is(second.code, 1);
  assert.match(second.stderr, new RegExp(`another agent \\(pid ${agent.pid}\\) is already running`));
  await agent.stop();
});

cli("bad settings stop start with a clear message and exit code 2", async () => {
  const dir = tempDir();
  const loose = path.join(dir, "loose.key");
  fs.writeFileSync(loose, generateKey().hex, { mode: 0o644 });
  fs.chmodSync(loose, 0o644);
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [["--key", "abc"], {}, /--key #1 is not a valid agent key: expected 64 hex digits/],
    [["--key-file", loose], {}, /readable by others \(mode 0644\); run: chmod 600/],
    [["--key-file", path.join(dir, "missing.key")], {}, /key file .*missing\.key does not exist/],
    [["--port", "70000"], {}, /--port \(or AGENT_PORT\) must be a whole number from 0 to 65535, not "70000"/],
    [["--config", path.join(dir, "nope.json")], {}, /cannot read config file/],
  ];
  fs.writeFileSync(path.join(dir, "typo.json"), JSON.stringify({ prot: 1 }));
  cases.push([["--config", path.join(dir, "typo.json")], {}, /unknown setting "prot"/]);
  fs.writeFileSync(path.join(dir, "broken.json"), "{ port: ");
  cases.push([["--config", path.join(dir, "broken.json")], {}, /is not valid JSON/]);
  for (const [args, env, message] of cases) {
    const r = await runAgentAsync(["start", "--host", "127.0.0.1", ...args], { AGENT_STATE_DIR: tempDir(), ...env });
    assert.is(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.not.match(r.stderr, /listening on/);
  }
});

cli("settings come from the config file, then environment, then flags", async () => {
  const dir = tempDir();
  const key = generateKey().hex;
  const config = path.join(dir, "agent.json");
  fs.writeFileSync(config, JSON.stringify({ host: "127.0.0.1", port: 1, keyFiles: ["k"], handshakeTimeoutSeconds: 7 }));
  writeKeyFile(dir, key, "k");
  // file says port 1 (privileged, would fail); env overrides with 0; the key comes from the file's keyFiles.
  const agent = await startAgent([], {
    stateDir: dir,
    env: { AGENT_CONFIG: config, AGENT_PORT: "0" },
    listenFlags: false,
  });
  assert.match(agent.stderr(), /listening on 127\.0\.0\.1:/, "host from the config file");
  assert.is(agent.keyHex, null);
  const ok = await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", key, "--count", "1"]);
  assert.is(ok.code, 0, ok.stderr);
  await agent.stop();
  // a flag beats the environment
  const flagged = await startAgent(["--port", "0"], {
    stateDir: dir,
    env: { AGENT_CONFIG: config, AGENT_PORT: "1" },
    listenFlags: false,
  });
  assert.ok(flagged.port > 1);
  await flagged.stop();
});

cli("probe: each failed stage has its own message and exit code", async () => {
  const key = generateKey().hex;
  const agent = await startAgent(["--key", key]);
  const probe = (target: string, ...extra: string[]) =>
    runAgentAsync(["probe", target, "--key", key, "--timeout", "1", ...extra]);

  const notFound = await probe("no-such-host.invalid:46336");
  assert.is(notFound.code, 3, notFound.stderr);
  assert.match(notFound.stderr, /cannot resolve "no-such-host\.invalid": no such host name/);

  const closed = await fakeServer(() => {});
  const closedPort = closed.port;
  await closed.close();
  const refused = await probe(`127.0.0.1:${closedPort}`);
  assert.is(refused.code, 4, refused.stderr);
  assert.match(refused.stderr, /connection refused/);

  const silent = await fakeServer(() => {});
  const timedOut = await probe(`127.0.0.1:${silent.port}`);
  assert.is(timedOut.code, 5, timedOut.stderr);
  assert.match(timedOut.stderr, /timed out after 1000 ms waiting for the agent's handshake reply/);
  await silent.close();

  const http = await fakeServer((s) =>
    s.once("data", () => s.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
  );
  const notAgent = await probe(`127.0.0.1:${http.port}`);
  assert.is(notAgent.code, 6, notAgent.stderr);
  assert.match(notAgent.stderr, /not an agent/);
  await http.close();

  const wrong = await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex]);
  assert.is(wrong.code, 7, wrong.stderr);
  assert.match(wrong.stderr, /FAILED at authenticate: wrong key/);

  const future = await fakeServer((s) =>
    s.once("data", () => s.end(encodeReply({ mode: EncryptionMode.Key, version: 0, agent: { min: 7, max: 9 } })))
  );
  const incompatible = await probe(`127.0.0.1:${future.port}`);
  assert.is(incompatible.code, 8, incompatible.stderr);
  const ours = `${PROTOCOL_VERSIONS.min}\\.\\.${PROTOCOL_VERSIONS.max}`;
  assert.match(incompatible.stderr, new RegExp(`incompatible version: .*this side speaks ${ours}, the peer 7\\.\\.9`));
  await future.close();

  const json = JSON.parse((await probe(`127.0.0.1:${closedPort}`, "--json")).stdout);
  assert.equal([json.ok, json.stage, json.error.code], [false, "connect", "refused"]);

  const usage = await runAgentAsync(["probe", "127.0.0.1:99999", "--key", key]);
  assert.is(usage.code, 2);
  await agent.stop();
});

cli("an --insecure agent is never used without --insecure on the client too", async () => {
  const agent = await startAgent(["--insecure"]);
  assert.match(agent.stderr(), /warn: --insecure: encryption and authentication are OFF/);
  const refused = await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex]);
  assert.is(refused.code, 9, refused.stderr);
  assert.match(refused.stderr, /without encryption/);
  const allowed = await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--insecure", "--count", "1"]);
  assert.is(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stdout, /INSECURE/);
  await agent.stop();
});

cli.run();
