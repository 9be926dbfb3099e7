// Every public export of the library (mod.ts, and local.ts for LocalAgent) has a doc comment with an example, and every example
// type-checks and runs: against a live agent started here, on this test run's runtime.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import {
  hermeticEnv,
  ROOT,
  type RunningAgent,
  scriptCommand,
  startAgent,
  stopAll,
  tempDir,
} from "./helpers/agent-process.ts";
import { selfSigned } from "./helpers/certs.ts";

const test = suite("doc");

const DENO = path.join(ROOT, "node_modules/.bin/deno");
const EXAMPLES = path.join(ROOT, "test", ".doc-examples"); // inside the checkout, so imports resolve as the library's do
const KEY = generateKey();

/** The library's entry points, as package.json and deno.json export them. */
const ENTRIES = ["mod.ts", "local.ts"];

interface DocSymbol {
  module: string;
  name: string;
  kind: string;
  examples: string[];
}

/** The exports of the entry points with their `@example` code blocks, as `deno doc --json` reads them. */
function exportsWithExamples(): DocSymbol[] {
  const r = spawnSync(DENO, ["doc", "--json", ...ENTRIES], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.is(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as {
    nodes: Record<
      string,
      {
        symbols: Array<
          {
            name: string;
            declarations: Array<{ kind: string; jsDoc?: { tags?: Array<{ kind: string; doc?: string }> } }>;
          }
        >;
      }
    >;
  };
  return Object.entries(doc.nodes).flatMap(([url, node]) =>
    node.symbols.map((s) => {
      const decl = s.declarations[0];
      const examples = (decl.jsDoc?.tags ?? []).filter((t) => t.kind === "example")
        .flatMap((t) => [...(t.doc ?? "").matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]));
      return { module: url.replace(/^.*\//, ""), name: s.name, kind: decl.kind, examples };
    })
  );
}

let symbols: DocSymbol[] = [];
let agent: RunningAgent | null = null;

test.before(() => {
  symbols = exportsWithExamples();
  fs.rmSync(EXAMPLES, { recursive: true, force: true });
  fs.mkdirSync(EXAMPLES, { recursive: true });
  // As `deno test --doc` does: every export of the library is in scope, plus the Node modules examples use.
  const imports = ENTRIES.map((entry) => {
    const names = symbols.filter((s) => s.module === entry)
      .map((s) => (["interface", "typeAlias"].includes(s.kind) ? `type ${s.name}` : s.name));
    return `import { ${names.join(", ")} } from "../../${entry}";\n`;
  });
  // Re-exported so that names an example leaves unused pass the type-checker's noUnusedLocals.
  const names = [...symbols.map((s) => s.name), "fs", "os", "path"];
  const prelude = `${
    imports.join("")
  }import fs from "node:fs";\nimport os from "node:os";\nimport path from "node:path";\nexport { ${
    names.join(", ")
  } };\n`;
  for (const s of symbols) {
    s.examples.forEach((code, i) =>
      fs.writeFileSync(
        path.join(EXAMPLES, `${s.kind}-${s.name}${i ? `-${i}` : ""}.ts`),
        `${prelude}${code}\n`,
      )
    );
  }
});

test.after(async () => {
  await agent?.stop();
  stopAll();
  fs.rmSync(EXAMPLES, { recursive: true, force: true });
});

test("every export of the library has a doc comment with an example", () => {
  assert.ok(symbols.length >= 40, `${symbols.length} exports found`);
  assert.equal(symbols.filter((s) => s.examples.length === 0).map((s) => s.name), []);
});

test("every example type-checks", () => {
  const files = fs.readdirSync(EXAMPLES).map((f) => path.join(EXAMPLES, f));
  const r = spawnSync(DENO, ["check", "--quiet", ...files], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  assert.is(r.status, 0, r.stderr.replace(new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g"), "").slice(0, 4000));
});

test("every example runs, against a live agent", async () => {
  agent = await startAgent(["--key", KEY.hex, "--idle-timeout", "30"]);
  const cert = await selfSigned();
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "cert.pem"), cert.cert);
  fs.writeFileSync(path.join(dir, "key.pem"), cert.key);
  const files = fs.readdirSync(EXAMPLES).sort().map((f) => path.join(EXAMPLES, f));
  const [cmd, ...pre] = scriptCommand();
  const output = await new Promise<string>((resolve) => {
    const child = spawn(cmd, [...pre, path.join(ROOT, "test/helpers/run-examples.ts"), ...files], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...hermeticEnv({ TMPDIR: dir }),
        AGENT_HOST: "127.0.0.1",
        AGENT_PORT: String(agent!.port),
        AGENT_KEY: KEY.hex,
        LISTENER_CERT: path.join(dir, "cert.pem"),
        LISTENER_KEY: path.join(dir, "key.pem"),
      },
    });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
  const ran = output.match(/^example ok .*/gm) ?? [];
  const failed = output.match(/^example FAIL [\s\S]*?(?=^example |$(?![\s\S]))/gm) ?? [];
  assert.equal(failed, []);
  assert.is(ran.length, files.length, output.slice(-2000));
});

test.run();
