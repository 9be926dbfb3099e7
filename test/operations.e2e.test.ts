// Operating the agent as a service, on the built binary: log levels and formats, config errors,
// keys, help, signals. (Issue "Operable as a service".)
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import { AuthenticationError, connect, listen } from "../mod.ts";
import { selfSigned } from "./helpers/certs.ts";
import { connectProxy } from "./helpers/net.ts";
import { serviceUnit, UNIT_PATH } from "../agent/service.ts";
import {
  agentCommand,
  hermeticEnv,
  IS_DENO,
  ROOT,
  runAgent,
  runAgentAsync,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
} from "./helpers/agent-process.ts";

const ops = suite("operations e2e");
const KEY = generateKey();
ops.after(stopAll);

ops("text logs: every line has a time, the pid and a level", async () => {
  const agent = await startAgent(["--key", KEY.hex]);
  await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex]); // a rejection: a warning
  await agent.waitForLog(/rejected: bad-key/);
  await agent.stop();
  const lines = agent.stderr().trim().split("\n");
  assert.ok(lines.length >= 4);
  for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT[\d:.]+Z agent\[\d+\] (info|warn|error): \S/, l);
  assert.ok(lines.some((l) => / warn: connection .* rejected: bad-key/.test(l)));
});

ops("--log-format json: every line is one JSON object with time, level, pid and message", async () => {
  const agent = await startAgent(["--key", KEY.hex, "--log-format", "json"], { ready: /"msg":"listening on \S+:\d+/ });
  await agent.stop();
  const lines = agent.stderr().trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(lines.length >= 3);
  for (const l of lines) assert.equal(Object.keys(l), ["time", "level", "pid", "msg"]);
  assert.ok(lines.some((l) => l.level === "info" && /^listening on/.test(l.msg)));
});

ops("under systemd (JOURNAL_STREAM names standard error) lines carry journald priorities and no time", async () => {
  const dir = tempDir();
  const logFile = path.join(dir, "journal");
  const fd = fs.openSync(logFile, "w");
  const st = fs.fstatSync(fd);
  const [cmd, ...pre] = agentCommand();
  const child = spawn(cmd, [...pre, "start", "--host", "127.0.0.1", "--port", "0", "--key", KEY.hex, "--insecure"], {
    env: hermeticEnv({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }),
    stdio: ["ignore", "ignore", fd],
  });
  fs.closeSync(fd);
  try {
    await until(() => /listening on/.test(fs.readFileSync(logFile, "utf8")), "the agent listens");
  } finally {
    sendSignal(child, "SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  const lines = fs.readFileSync(logFile, "utf8").trim().split("\n");
  assert.match(lines.find((l) => l.includes("--insecure"))!, /^<4>--insecure: encryption and authentication are OFF/);
  assert.ok(lines.some((l) => /^<6>listening on /.test(l)));
  for (const l of lines) assert.match(l, /^<[346]>\S/, l);
});

ops(
  "a config file with a setting of the wrong type fails to start, naming the file, the setting and what is allowed",
  async () => {
    const dir = tempDir();
    const file = path.join(dir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ insecure: "false" }));
    const r = await runAgentAsync(["start", "--config", file]);
    assert.is(r.code, 2);
    assert.is(
      r.stderr.trim(),
      `agent: config file ${file}: setting "insecure" is "false" (a string); allowed: true or false (a JSON boolean, not a string)`,
    );
    fs.writeFileSync(file, JSON.stringify({ host: 5 }));
    assert.match((await runAgentAsync(["start", "--config", file])).stderr, /setting "host" is 5 \(a number\)/);
    assert.match(
      (await runAgentAsync(["start", "--log-format", "xml"])).stderr,
      /--log-format must be one of text, journal, json, not "xml"/,
    );
  },
);

ops("`agent help` and `agent help <command>` teach; an unknown option is named as it was typed", () => {
  const h = runAgent(["help"]);
  assert.is(h.code, 0);
  for (const c of ["start", "status", "keygen", "probe"]) assert.match(h.stdout, new RegExp(`\\n\\s+${c}`));
  const k = runAgent(["help", "keygen"]);
  assert.is(k.code, 0);
  assert.match(k.stdout, /--show <file>/);
  const o = runAgent(["keygen", "--bogus-flag"]);
  assert.is(o.code, 2);
  assert.match(o.stderr, /Unknown option `--bogus-flag`/);
});

ops("a system user with no home directory: under systemd the state goes to its StateDirectory", async () => {
  const dir = tempDir();
  const agent = await startAgent(["--key", KEY.hex], {
    env: { AGENT_STATE_DIR: "", HOME: "/nonexistent", STATE_DIRECTORY: dir },
  });
  assert.match(agent.stderr(), new RegExp(`state in ${dir}`));
  assert.ok(fs.existsSync(path.join(dir, "agent.sock")));
  await agent.stop();
});

ops("`deno task start` runs the agent with the Deno from the npm registry", async () => {
  const deno = path.join(ROOT, "node_modules", ".bin", "deno");
  const child = spawn(deno, ["task", "start", "--host", "127.0.0.1", "--port", "0", "--insecure"], {
    cwd: ROOT,
    env: hermeticEnv(),
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  try {
    await until(() => /listening on 127\.0\.0\.1:\d+/.test(err), "deno task start listens", 60_000);
  } finally {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch { /* gone */ }
    await new Promise((r) => child.once("exit", r));
  }
  assert.not.match(err, /SyntaxError/);
});

ops(
  "SIGHUP rotates keys: a removed key admits no one new, its live connection closes after the grace, sessions survive",
  async () => {
    const dir = tempDir();
    const [oldKey, newKey] = [generateKey(), generateKey()];
    const config = path.join(dir, "config.json");
    const keys = path.join(dir, "keys");
    fs.writeFileSync(keys, `${oldKey.hex}\n`, { mode: 0o600 });
    fs.writeFileSync(config, JSON.stringify({ keyFiles: ["keys"], revokedKeyGraceSeconds: 1 }));
    const agent = await startAgent(["--config", config]);
    const c1 = await connect({ host: "127.0.0.1", port: agent.port, key: oldKey.hex });
    const s = await c1.openSession("alpha");
    await s.files.writeFile("kept.txt", new TextEncoder().encode("still here"));

    fs.writeFileSync(keys, `${newKey.hex}\n`, { mode: 0o600 }); // add the new key, drop the old one
    sendSignal(agent.child, "SIGHUP");
    await agent.waitForLog(
      /reloaded on SIGHUP: accepting key id [0-9a-f]{12}; added [0-9a-f]{12}; removed [0-9a-f]{12} \(its connections close in 1 s\)/,
    );
    const refused = await connect({ host: "127.0.0.1", port: agent.port, key: oldKey.hex }).then(
      (a) => (a.close(), null),
      (e) => e,
    );
    assert.instance(refused, AuthenticationError);
    const closed = await Promise.race([
      c1.closed.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 5000)),
    ]);
    assert.ok(closed, "the connection that used the removed key was closed");
    const c2 = await connect({ host: "127.0.0.1", port: agent.port, key: newKey.hex });
    await s.resume(c2.client);
    assert.is(
      new TextDecoder().decode(await s.files.readFile("kept.txt")),
      "still here",
      "the session survived the reload",
    );
    await s.close();
    c2.close();
    await agent.stop();
  },
);

ops("a reload with a broken config keeps the running one; a restart-only change is named, not applied", async () => {
  const dir = tempDir();
  const config = path.join(dir, "config.json");
  fs.writeFileSync(config, JSON.stringify({ keys: [KEY.hex] }), { mode: 0o600 }); // it holds a key: private
  const agent = await startAgent(["--config", config]);
  fs.writeFileSync(config, '{ "keys": [');
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(
    /error: reload on SIGHUP failed, keeping the running configuration: config file .* is not valid JSON/,
  );
  (await connect({ host: "127.0.0.1", port: agent.port, key: KEY.hex })).close();
  fs.writeFileSync(config, JSON.stringify({ keys: [KEY.hex], handshakeTimeoutSeconds: 5 }));
  sendSignal(agent.child, "SIGHUP");
  await agent.waitForLog(/warn: reload: handshakeTimeoutSeconds changed; these take effect at the next restart/);
  (await connect({ host: "127.0.0.1", port: agent.port, key: KEY.hex })).close();
  await agent.stop();
});

ops("agent start --check validates settings and keys without starting, like sshd -t", () => {
  const dir = tempDir();
  const config = path.join(dir, "config.json");
  fs.writeFileSync(path.join(dir, "keys"), `${KEY.hex}\n`, { mode: 0o600 });
  fs.writeFileSync(config, JSON.stringify({ keyFiles: ["keys"], port: 4999 }));
  const ok = runAgent(["start", "--check", "--config", config]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    new RegExp(
      `configuration OK \\(${config}\\): 1 key \\([0-9a-f]{12}\\); listening on 0\\.0\\.0\\.0:4999; 0 outbound targets`,
    ),
  );
  assert.not.ok(fs.existsSync(path.join(dir, "agent.sock")), "nothing started");
  fs.chmodSync(path.join(dir, "keys"), 0o644);
  const bad = runAgent(["start", "--check", "--config", config]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /readable by others/);
  const none = runAgent(["start", "--check"]);
  assert.is(none.code, 2);
  assert.match(none.stderr, /no key is configured and .*agent\.key does not exist yet/);
});

ops("--metrics serves /healthz, /readyz and Prometheus /metrics that count what happens", async () => {
  const agent = await startAgent([
    "--key",
    KEY.hex,
    "--metrics",
    "127.0.0.1:0",
    "--connect",
    "127.0.0.1:1",
    "--fingerprint",
    "ab".repeat(32),
  ], {
    ready: /health and metrics on http:\/\/127\.0\.0\.1:\d+/,
  });
  const base = /health and metrics on (http:\/\/127\.0\.0\.1:\d+)\//.exec(agent.stderr())![1];
  const get = async (p: string) => {
    const r = await fetch(base + p);
    return { status: r.status, type: r.headers.get("content-type") ?? "", body: await r.text() };
  };
  assert.equal(await get("/healthz"), { status: 200, type: "text/plain; charset=utf-8", body: "ok\n" });
  const ready = await get("/readyz");
  assert.is(ready.status, 503, "the outbound target is not connected");
  assert.match(ready.body, /outbound 127\.0\.0\.1:1 is (connecting|waiting)/);
  const c = await connect({ host: "127.0.0.1", port: agent.port, key: KEY.hex });
  const s = await c.openSession("alpha");
  await runAgentAsync(["probe", `127.0.0.1:${agent.port}`, "--key", generateKey().hex]);
  await agent.waitForLog(/rejected: bad-key/);
  const m = await get("/metrics");
  assert.is(m.status, 200);
  assert.match(m.type, /^text\/plain; version=0\.0\.4/);
  assert.match(m.body, /# TYPE agent_handshakes_total counter\nagent_handshakes_total\{outcome="accepted"\} [1-9]/);
  assert.match(m.body, /\nagent_handshakes_total\{outcome="bad-key"\} 1\n/);
  assert.match(m.body, /\nagent_sessions 1\n/);
  assert.match(m.body, /\nagent_connections_open 1\n/);
  assert.match(m.body, /\nagent_received_bytes_total [1-9]\d*\n/);
  assert.match(m.body, /\nagent_outbound_connected\{address="127\.0\.0\.1:1",state="(connecting|waiting)"\} 0\n/);
  assert.match(m.body, /\nagent_ready 0\n/);
  for (const line of m.body.trim().split("\n")) {
    assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? \d+(\.\d+)?)$/, line);
  }
  assert.is((await get("/nope")).status, 404);
  await s.close();
  c.close();
  await agent.stop();
});

ops(
  "outbound through an HTTP CONNECT proxy: --proxy, HTTPS_PROXY and NO_PROXY; a refusing proxy is named",
  async () => {
    const cert = await selfSigned();
    const serverKey = generateKey().hex;
    const listener = await listen({
      host: "127.0.0.1",
      port: 0,
      cert: cert.cert,
      key: cert.key,
      agents: { web1: serverKey },
    });
    const proxy = await connectProxy();
    const target = `127.0.0.1:${listener.port}`;
    const dial = ["--no-listen", "--connect", target, "--fingerprint", cert.fingerprint, "--key", serverKey];
    try {
      const viaFlag = await startAgent([...dial, "--proxy", proxy.url], {
        listenFlags: false,
        ready: /outbound .* connected/,
      });
      assert.match(viaFlag.stderr(), /dialing .* through the proxy 127\.0\.0\.1:\d+/);
      const tunnels = () => proxy.requests.filter((r) => r === target).length;
      assert.ok(tunnels() >= 1, `the proxy opened a tunnel to the listener: ${proxy.requests}`);
      const web1 = await listener.waitForAgent("web1", 10_000);
      const s = await web1.openSession("alpha");
      assert.is((await s.files.stat(".")).type, "directory", "a session works through the tunnel");
      await s.close();
      await viaFlag.stop();

      let before = tunnels();
      const viaEnv = await startAgent(dial, {
        listenFlags: false,
        ready: /outbound .* connected/,
        env: { HTTPS_PROXY: proxy.url },
      });
      assert.ok(tunnels() > before, "HTTPS_PROXY is used");
      await viaEnv.stop();
      before = tunnels();
      const bypass = await startAgent(dial, {
        listenFlags: false,
        ready: /outbound .* connected/,
        env: { HTTPS_PROXY: proxy.url, NO_PROXY: "localhost,127.0.0.1" },
      });
      assert.is(tunnels(), before, "NO_PROXY skips the proxy");
      await bypass.stop();

      const refusing = await connectProxy({ refuse: "403 Forbidden" });
      const refused = await startAgent([...dial, "--proxy", refusing.url], {
        listenFlags: false,
        ready: /retrying in/,
      });
      assert.match(
        refused.stderr(),
        new RegExp(
          `the proxy 127\\.0\\.0\\.1:${refusing.port} refused CONNECT to ${
            target.replace(/\./g, "\\.")
          }: 403 Forbidden`,
        ),
      );
      await refused.stop();

      const probe = await runAgentAsync([
        "probe",
        target,
        "--tls",
        "--fingerprint",
        cert.fingerprint,
        "--key",
        serverKey,
        "--proxy",
        proxy.url,
      ]);
      assert.is(probe.code, 0, probe.stderr);
      assert.match(probe.stdout, /proxy\s+127\.0\.0\.1:\d+ \(HTTP CONNECT\)/);
      const blocked = await runAgentAsync([
        "probe",
        target,
        "--tls",
        "--fingerprint",
        cert.fingerprint,
        "--proxy",
        refusing.url,
      ]);
      assert.is(blocked.code, 13);
      assert.match(blocked.stderr, /FAILED at proxy: .*refused CONNECT .*403 Forbidden/);
      const nobody = await runAgentAsync([
        "probe",
        target,
        "--tls",
        "--fingerprint",
        cert.fingerprint,
        "--proxy",
        "http://127.0.0.1:1",
      ]);
      assert.is(nobody.code, 13);
      assert.match(nobody.stderr, /FAILED at proxy: cannot reach the proxy 127\.0\.0\.1:1: connection refused/);
      await refusing.close();
    } finally {
      await proxy.close();
      await listener.close();
    }
  },
);

ops("agent service install: a hardened unit that systemd-analyze accepts; idempotent; status and uninstall", () => {
  const root = tempDir("agent-root-");
  const binary = path.join(root, "usr/local/bin/agent");
  if (IS_DENO) {
    // Under Deno the CLI is not the single executable, so the binary must already be in place.
    fs.mkdirSync(path.dirname(binary), { recursive: true });
    fs.copyFileSync(path.join(ROOT, "dist/agent"), binary);
  }
  const first = runAgent(["service", "install", "--root", root]);
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, /unit .*agent\.service: written/);
  assert.ok(fs.readFileSync(binary).equals(fs.readFileSync(path.join(ROOT, "dist/agent"))), "the binary is in place");
  const unit = fs.readFileSync(path.join(root, UNIT_PATH), "utf8");
  for (
    const line of [
      "User=agent",
      "ExecStart=/usr/local/bin/agent start",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=on-failure",
      "StateDirectory=agent",
      "RuntimeDirectory=agent",
      "NoNewPrivileges=yes",
      "ProtectSystem=full",
      "KillMode=mixed",
      "TimeoutStopSec=20s",
      "Type=notify",
      "WatchdogSec=30s",
      "CapabilityBoundingSet=",
    ]
  ) {
    assert.ok(unit.split("\n").includes(line), `the unit has ${line}`);
  }
  const again = runAgent(["service", "install", "--root", root]);
  assert.is(again.code, 0);
  assert.not.match(again.stdout, /written|installed from|updated/, "a second install changes nothing");
  assert.match(again.stdout, /unit .*: up to date/);

  const verifier = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
  if (verifier.status !== 0) {
    console.log(`\n  (systemd-analyze verify skipped: ${verifier.error?.message ?? verifier.stderr})`);
  } else {
    const copy = path.join(tempDir(), "agent.service");
    fs.writeFileSync(copy, unit.replace("ExecStart=/usr/local/bin/agent", `ExecStart=${binary}`)); // the installed binary, under the test root
    const v = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8" });
    assert.is(v.status, 0, v.stderr);
    assert.is(v.stderr.trim(), "", v.stderr);
  }

  const st = runAgent(["service", "status", "--root", root]);
  assert.is(st.code, 0);
  assert.match(st.stdout, /installed, up to date/);
  const gone = runAgent(["service", "uninstall", "--root", root]);
  assert.is(gone.code, 0);
  assert.match(gone.stdout, /unit .*: removed/);
  assert.ok(gone.stdout.includes(`kept: ${binary}; remove it with: rm ${binary}`), gone.stdout); // the root's, not /usr/local/bin
  const after = runAgent(["service", "status", "--root", root]);
  assert.is(after.code, 3);
  assert.match(after.stdout, /not installed/);
});

ops("the unit in docs/operations.md is the one agent service install writes", () => {
  const docs = fs.readFileSync(path.join(ROOT, "docs/operations.md"), "utf8");
  const shown = /```ini\n(# Installed by `agent service install`[\s\S]*?)```/.exec(docs)?.[1];
  assert.is(shown, serviceUnit({ user: "agent", binary: "/usr/local/bin/agent" }));
});

ops("the README's commands work as typed (its /etc/agent under a temp root, server1 on loopback)", async () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const block = /## Using it\n\n```sh\n([\s\S]*?)```/.exec(readme)![1];
  const commands = block.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) =>
    l.startsWith("dist/agent ")
  );
  assert.equal(commands.map((c) => c.split(" ")[1]), [
    "keygen",
    "keygen",
    "start",
    "status",
    "probe",
    "run",
    "cp",
    "cp",
  ]);
  const root = tempDir("agent-readme-");
  const stateDir = tempDir();
  // The listener's address comes from the environment, so the start line runs as typed.
  const env = { AGENT_STATE_DIR: stateDir, AGENT_HOST: "127.0.0.1", AGENT_PORT: "0" };
  // Its absolute and relative paths land under the temp root too.
  fs.writeFileSync(path.join(root, "release.tar.gz"), "a release\n");
  const argv = (line: string, port?: number) =>
    line.replace(/^dist\/agent /, "").replaceAll("/etc/agent", path.join(root, "etc/agent")).replaceAll(
      /(^|[\s:])\/srv\b/g,
      `$1${root}/srv`,
    )
      .replace(" release.tar.gz ", ` ${root}/release.tar.gz `).replace("./app-copy", `${root}/app-copy`)
      .replace("server1:46336", `127.0.0.1:${port}`).replace(
        "--key-file keys",
        `--key-file ${path.join(root, "etc/agent/keys")}`,
      ).split(/\s+/);
  for (const line of commands) {
    const [command] = argv(line);
    if (command === "start") {
      const agent = await startAgent(argv(line).slice(1), { stateDir, env, listenFlags: false }); // it adds "start" itself
      const status = runAgent(argv(commands.find((c) => c.includes(" status"))!), env);
      assert.is(status.code, 0, status.stderr);
      assert.match(status.stdout, /listening\s+127\.0\.0\.1:\d+/);
      const probe = await runAgentAsync(argv(commands.find((c) => c.includes(" probe "))!, agent.port), env);
      assert.is(probe.code, 0, probe.stdout + probe.stderr);
      for (const later of commands.filter((c) => / (run|cp) /.test(c))) {
        const r = await runAgentAsync(argv(later, agent.port), env);
        assert.is(r.code, 0, `${later}: ${r.stderr}`);
      }
      assert.is(fs.readFileSync(path.join(root, "app-copy/release.tar.gz"), "utf8"), "a release\n");
      await agent.stop();
      break;
    }
    const r = runAgent(argv(line), env);
    assert.is(r.code, 0, `${line}: ${r.stderr}`);
  }
  assert.is(fs.statSync(path.join(root, "etc/agent")).mode & 0o777, 0o700);
});

ops.run();
