// core/ must run on any runtime: no node: modules, no Deno global, no runtime-specific packages.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers/agent-process.ts";

const ALLOWED_PACKAGES = new Set(["@msgpack/msgpack"]);

test("core/ imports no node: module, no Deno global, and only runtime-free packages", () => {
  const dir = path.join(ROOT, "core");
  const files = fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".ts"));
  assert.ok(files.length >= 10, "core/ files found");
  const problems: string[] = [];
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']|require\(\s*["']([^"']+)["']/g)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith("node:")) problems.push(`${f}: imports ${spec}`);
      else if (!spec.startsWith(".") && !ALLOWED_PACKAGES.has(spec)) problems.push(`${f}: imports package ${spec}`);
      else if (spec.startsWith(".") && !path.resolve(dir, path.dirname(f), spec).startsWith(dir + path.sep)) problems.push(`${f}: imports ${spec} outside core/`);
    }
    if (/\bDeno\s*\./.test(text)) problems.push(`${f}: uses the Deno global`);
    if (/(?<![.\w])(process|Buffer|__dirname)\b\s*[.(]/.test(text)) problems.push(`${f}: uses a Node global`);
  }
  assert.equal(problems, []);
});

test("package.json and the CLI agree on the version", async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const { VERSION } = await import("../core/version.ts");
  assert.is(VERSION, pkg.version);
});

test.run();
