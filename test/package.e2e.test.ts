// The client library as a product author gets it: `npm pack`, installed into an empty project
// (without optional dependencies), imported by name from a plain Node script or a Deno script, and
// run against a live agent. The README's programs run here as written, from the installed package.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { generateKey } from "../core/secure/keys.ts";
import {
  hermeticEnv,
  IS_DENO,
  ROOT,
  type RunningAgent,
  startAgent,
  stopAll,
  tempDir,
} from "./helpers/agent-process.ts";

const test = suite("package e2e");

const KEY = generateKey();
const NAME = "@agent/client";
const DENO = path.join(ROOT, "node_modules/.bin/deno");
const TSX = pathToFileURL(path.join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;
let project = "";
let tarball = "";
let agent: RunningAgent;

/** npm, run as a user would, with its output kept for the failure message. */
function npm(args: string[], cwd: string) {
  // The developer's HOME stays, for npm's package cache: nothing of the agent's state is read.
  const r = spawnSync("npm", args, {
    cwd,
    encoding: "utf8",
    env: { ...hermeticEnv(), HOME: process.env.HOME ?? "" },
    timeout: 180_000,
  });
  assert.is(r.status, 0, `npm ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Runs a script in the consumer project with this test run's runtime; resolves with its output. */
function runScript(file: string, env: Record<string, string> = {}, check = true) {
  const args = IS_DENO
    ? [DENO, "run", "-A", ...(check ? ["--check"] : []), file]
    : [process.execPath, ...(file.endsWith(".ts") ? ["--import", TSX] : []), file];
  const runtime = IS_DENO ? DENO : process.execPath;
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(runtime, args.slice(1), {
      cwd: project,
      env: hermeticEnv({ AGENT_HOST: "127.0.0.1", AGENT_PORT: String(agent.port), AGENT_KEY: KEY.hex, ...env }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test.before(async () => {
  const packed = tempDir("agent-pack-");
  // dist/lib is built by `npm test` (build.ts); packing without scripts packs exactly that.
  npm(["pack", "--ignore-scripts", "--pack-destination", packed, ROOT], packed);
  tarball = path.join(packed, fs.readdirSync(packed).find((f) => f.endsWith(".tgz"))!);
  project = tempDir("agent-consumer-");
  fs.writeFileSync(
    path.join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  fs.writeFileSync(path.join(project, "deno.json"), JSON.stringify({ nodeModulesDir: "manual" }));
  npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=optional", tarball], project);
  agent = await startAgent(["--key", KEY.hex]);
});

test.after(async () => {
  await agent?.stop();
  stopAll();
});

test("the packed tarball holds the built library and its types, nothing else; koffi is optional", () => {
  const files = spawnSync("tar", ["tzf", tarball], { encoding: "utf8" }).stdout.trim().split("\n");
  const strays = files.filter((f) => !/^package\/(package\.json|README\.md|dist\/lib\/.+\.(js|d\.ts))$/.test(f));
  assert.equal(strays, []);
  assert.ok(
    files.includes("package/dist/lib/mod.js") && files.includes("package/dist/lib/mod.d.ts") &&
      files.includes("package/dist/lib/local.js"),
  );
  const manifest = JSON.parse(fs.readFileSync(path.join(project, "node_modules", NAME, "package.json"), "utf8"));
  assert.equal(Object.keys(manifest.dependencies), ["@msgpack/msgpack"]);
  assert.equal(Object.keys(manifest.optionalDependencies), ["koffi"]);
  assert.not.ok(fs.existsSync(path.join(project, "node_modules/koffi")), "installed without optional dependencies");
});

test(`a script that imports "${NAME}" by name works against a live agent`, async () => {
  // Plain JavaScript on Node (no TypeScript loader); on Deno, TypeScript through the npm: specifier, type-checked against the .d.ts.
  const file = IS_DENO ? "check.ts" : "check.mjs";
  const specifier = IS_DENO ? `npm:${NAME}` : NAME;
  fs.writeFileSync(
    path.join(project, file),
    `
import { connect, NotFoundError, runOnAgents } from "${specifier}";
const agent = await connect({ host: String(process.env.AGENT_HOST), port: Number(process.env.AGENT_PORT), key: String(process.env.AGENT_KEY) });
const session = await agent.openSession("consumer");
const run = await session.processes.run({ program: "sh", args: ["-c", "echo from-the-package"] });
let digest = "";
await session.files.writeFile("data.bin", new TextEncoder().encode("hello"), { onSha256: (hex) => (digest = hex) });
const missing = await session.files.readFile("nope").then(() => "found", (e) => e instanceof NotFoundError ? "NotFoundError" : String(e));
await session.close();
agent.close();
const fleet = await runOnAgents([{ name: "a", host: String(process.env.AGENT_HOST), port: Number(process.env.AGENT_PORT), key: String(process.env.AGENT_KEY) }], async (a) => (await a.info()).os);
console.log(JSON.stringify({ out: new TextDecoder().decode(run.stdout).trim(), code: run.code, digest, missing, fleet: fleet[0].ok }));
`,
  );
  const r = await runScript(file);
  assert.is(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split("\n").pop()!), {
    out: "from-the-package",
    code: 0,
    digest: crypto.createHash("sha256").update("hello").digest("hex"),
    missing: "NotFoundError",
    fleet: true,
  });
});

test("LocalAgent comes from its own entry; on Node without koffi it says what to install", async () => {
  fs.writeFileSync(
    path.join(project, "local.mjs"),
    `
import { LocalAgent } from "${IS_DENO ? `npm:${NAME}/local` : `${NAME}/local`}";

// Its own state directory (the test's temp one), never the machine's default.
try { await (await LocalAgent.start({ stateDir: process.env.AGENT_STATE_DIR, agentCommand: ["false"] })).stop(); console.log("started"); } catch (e) { console.log(e.message); }
`,
  );
  const r = await runScript("local.mjs");
  assert.is(r.code, 0, r.stderr);
  if (IS_DENO) assert.is(r.stdout.trim(), "started", "Deno maps files itself: no koffi needed");
  else {assert.match(
      r.stdout,
      /needs koffi on Node, an optional dependency that is not installed: run `npm install koffi`/,
    );}
});

test("the README's programs run as written, from the installed package", async () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const programs = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).filter((code) =>
    /^import /m.test(code) && code.includes(`"${NAME}"`)
  );
  assert.ok(programs.length >= 2, `${programs.length} programs found`);
  fs.writeFileSync(path.join(project, "release.tar.gz"), crypto.randomBytes(100_000));
  for (const [i, code] of programs.entries()) {
    const file = `readme-${i}.ts`;
    fs.writeFileSync(path.join(project, file), code); // as written: Deno resolves the bare name through package.json too
    // No type check on Deno here: node:fs types need @types/node, which this bare project lacks.
    const r = await runScript(file, { AGENT_HOSTS: "127.0.0.1" }, false);
    assert.is(r.code, 0, `README program ${i + 1}:\n${code}\n${r.stderr}`);
    assert.not.match(r.stdout, /failed:/, r.stdout);
  }
});

test("the README's steps, typed literally into a fresh npm init -y project, run its program with tsx", () => {
  if (IS_DENO) return; // the steps are npm's and tsx's
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const steps = /```sh\n(mkdir my-product[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(steps, "the README has the steps");
  const program = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).find((code) =>
    code.includes(`"${NAME}"`)
  )!;
  const home = tempDir("agent-fresh-");
  const lines = steps.split("\n").filter((l) => l.trim() && !l.startsWith("#")).flatMap((l) => l.split(" && "));
  let cwd = home;
  for (const line of lines) {
    const [command, ...args] = line.trim().split(/\s+/);
    if (command === "mkdir") fs.mkdirSync(path.join(cwd, args[0]));
    else if (command === "cd") cwd = path.join(cwd, args[0]);
    else if (command === "cp") fs.copyFileSync(tarball, path.join(cwd, path.basename(args[0])));
    else if (command === "npm" && args[0] === "install") {
      // Offline: the tarball's one dependency comes from npm's cache; tsx, which this machine cannot
      // fetch, from the checkout's node_modules.
      const offline = args.map((a) => (a === "tsx" ? path.join(ROOT, "node_modules/tsx") : a));
      npm([...offline, "--offline", "--no-audit", "--no-fund"], cwd);
    } else if (command === "npm") npm(args, cwd);
    else if (line.includes("npx tsx example.mts")) {
      fs.writeFileSync(path.join(cwd, "example.mts"), program);
      fs.writeFileSync(path.join(cwd, "release.tar.gz"), crypto.randomBytes(1000));
      const r = spawnSync(path.join(cwd, "node_modules/.bin/tsx"), ["example.mts"], {
        cwd,
        encoding: "utf8",
        timeout: 60_000,
        env: hermeticEnv({ AGENT_HOST: "127.0.0.1", AGENT_PORT: String(agent.port), AGENT_KEY: KEY.hex }),
      });
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, /stored 1000 bytes, sha256 [0-9a-f]{64}/);
    } else assert.unreachable(`a step this test does not know: ${line}`);
  }
  assert.is(
    JSON.parse(fs.readFileSync(path.join(cwd, "package.json"), "utf8")).type,
    "commonjs",
    "npm init -y's project",
  );
});

test("the README's Deno commands run as typed in a checkout after npm ci, with no deno on the PATH", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const commands = [...readme.matchAll(/`((?:npx )?deno (?:run|task) [^`]+)`/g)].map((m) => m[1]);
  assert.ok(commands.length >= 2, commands.join("; "));
  for (const command of commands) assert.match(command, /^npx deno /, command);
  const version = commands.find((c) => c.includes("dist/agent.mjs start"))!.replace(/ start$/, " --version").split(" ");
  const env = hermeticEnv({
    PATH: "/usr/local/bin:/usr/bin:/bin".split(":").filter((d) => !fs.existsSync(`${d}/deno`)).join(":"),
  });
  const r = spawnSync(version[0], version.slice(1), { cwd: ROOT, encoding: "utf8", env, timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /agent\/\d+\.\d+\.\d+/);
});

test.run();
