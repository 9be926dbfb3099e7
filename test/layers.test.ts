// The folder layout is the architecture (README "Layers"): each folder may import only the folders
// below it, and core/ runs on any runtime. Read from the sources' import statements.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers/agent-process.ts";

const test = suite("layers");

/** Who may import whom. A folder always may import itself. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  runtime: ["core"],
  agent: ["core", "runtime"],
  host: ["core", "runtime"],
  client: ["core", "runtime"],
  cli: ["core", "runtime", "agent", "host", "client"],
  "mod.ts": ["client", "core"],
  "local.ts": ["client"],
  "cluster.ts": ["client", "core"],
};
const ENTRY_FILES = ["mod.ts", "local.ts", "cluster.ts"];
/** The one deliberate exception: LocalAgent runs the agent's session manager in-process. */
const EXCEPTIONS = new Set(["client/local.ts -> agent"]);
const CORE_PACKAGES = new Set(["@msgpack/msgpack"]);

/** Every relative or package import of every .ts file in `dir` (recursively), comments stripped. */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']|require\(\s*["']([^"']+)["']/g)].map((m) =>
    m[1] ?? m[2]
  );
}

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true }).map(String).filter((f) => f.endsWith(".ts")).map((
    f,
  ) => path.join(dir, f));
}

const layerOf = (rel: string) => (ENTRY_FILES.includes(rel) ? rel : rel.split(path.sep)[0]);

/** The imports of `file` (relative to the root) that break the layering. */
function violations(file: string, specs: string[]): string[] {
  const from = layerOf(file);
  return specs.filter((spec) => spec.startsWith(".")).flatMap((spec) => {
    const to = layerOf(path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec)));
    if (to === from || ALLOWED[from].includes(to) || EXCEPTIONS.has(`${file} -> ${to}`)) return [];
    return [`${file} imports ${spec} (${from} may not import ${to})`];
  });
}

test("each folder imports only the folders below it", () => {
  const files = [...Object.keys(ALLOWED).filter((d) => !ENTRY_FILES.includes(d)).flatMap(sources), ...ENTRY_FILES];
  assert.ok(files.length > 40, "sources found");
  assert.equal(files.flatMap((f) => violations(f, imports(path.join(ROOT, f)))), []);
});

test("the layering check catches an upward import, and allows only the named exception", () => {
  assert.equal(violations(path.join("core", "x.ts"), ["../runtime/log.ts"]), [
    `${path.join("core", "x.ts")} imports ../runtime/log.ts (core may not import runtime)`,
  ]);
  assert.equal(violations(path.join("client", "connect.ts"), ["../agent/sessions.ts"]).length, 1);
  assert.equal(violations(path.join("client", "local.ts"), ["../agent/sessions.ts"]), []);
  assert.equal(violations("mod.ts", ["./runtime/tcp.ts"]).length, 1);
});

/** Every file and package reachable from `entry` through static imports. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>(), packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of imports(path.join(ROOT, file))) {
      if (spec.startsWith(".")) visit(path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec)));
      else if (!spec.startsWith("node:")) packages.add(spec);
    }
  };
  visit(entry);
  return { files, packages };
}

test("the main entry (connect, listen) reaches no agent server code and no FFI; only local.ts does", () => {
  const main = importGraph("mod.ts");
  assert.equal(
    [...main.files].filter((f) => /^(agent|host|cli)\b/.test(f) || f === path.join("runtime", "mmap.ts")),
    [],
  );
  assert.equal([...main.packages].sort(), ["@msgpack/msgpack"]);
  const local = importGraph("local.ts");
  assert.ok(local.files.has(path.join("runtime", "mmap.ts")), "LocalAgent uses the shared-memory channel");
  assert.not.ok(local.packages.has("zod"), "LocalAgent does not need the config schema");
});

test("core/ imports no node: module, no Deno global, and only runtime-free packages", () => {
  const problems: string[] = [];
  for (const f of sources("core")) {
    const text = fs.readFileSync(path.join(ROOT, f), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    for (const spec of imports(path.join(ROOT, f))) {
      if (spec.startsWith("node:")) problems.push(`${f}: imports ${spec}`);
      else if (!spec.startsWith(".") && !CORE_PACKAGES.has(spec)) problems.push(`${f}: imports package ${spec}`);
    }
    if (/\bDeno\s*\./.test(text)) problems.push(`${f}: uses the Deno global`);
    if (/(?<![.\w])(process|Buffer|__dirname)\b\s*[.(]/.test(text)) problems.push(`${f}: uses a Node global`);
  }
  assert.equal(problems, []);
});

test("every error class extends AgentError, so it has a stable code and a name", () => {
  const parent = new Map<string, string>();
  for (const f of Object.keys(ALLOWED).filter((d) => !ENTRY_FILES.includes(d)).flatMap(sources)) {
    for (const m of fs.readFileSync(path.join(ROOT, f), "utf8").matchAll(/class (\w+Error) extends (\w+)/g)) {
      parent.set(m[1], m[2]);
    }
  }
  assert.ok(parent.size > 20, `${parent.size} error classes found`);
  const rootOf = (
    name: string,
  ): string => (parent.has(name) && name !== "AgentError" ? rootOf(parent.get(name)!) : name);
  assert.equal([...parent.keys()].filter((n) => rootOf(n) !== "AgentError"), []);
});

test("package.json and the CLI agree on the version", async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const { VERSION } = await import("../core/version.ts");
  assert.is(VERSION, pkg.version);
});

test.run();
