// Style gates the linter has no rule for: a function does one step, so none in the product's folders runs
// past 70 lines (DEVELOPERS "Style"), save the named exceptions below, each with its reason.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { ROOT } from "./helpers/agent-process.ts";

const test = suite("style");

const FOLDERS = ["agent", "host", "client", "core", "runtime", "cli"];
const MAX_LINES = 70;
/** `file:name` -> why it stays long. Keep it short; an entry that no longer applies fails the test. */
const LONG_ON_PURPOSE: Record<string, string> = {};

/** The name a function is known by: its own, or the variable, property or method that holds it. */
function nameOf(node: ts.FunctionLikeDeclaration): string {
  const own = node.name?.getText();
  if (own) return own;
  const parent = node.parent;
  if ((ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))) {
    return parent.name.getText();
  }
  return "(anonymous)";
}

/** Every function body in `source` longer than MAX_LINES, as `file:name` with its length. */
export function longFunctions(file: string, source: string): Array<{ where: string; lines: number }> {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: Array<{ where: string; lines: number }> = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const first = sf.getLineAndCharacterOfPosition(node.getStart()).line;
      const last = sf.getLineAndCharacterOfPosition(node.end).line;
      if (last - first + 1 > MAX_LINES) found.push({ where: `${file}:${nameOf(node)}`, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function productSources(): string[] {
  return FOLDERS.flatMap((dir) =>
    fs.readdirSync(path.join(ROOT, dir), { recursive: true }).map(String).filter((f) => f.endsWith(".ts"))
      .map((f) => path.join(dir, f).split(path.sep).join("/"))
  );
}

test(`no function in the product's folders is over ${MAX_LINES} lines, but the named exceptions`, () => {
  const long = productSources().flatMap((file) => longFunctions(file, fs.readFileSync(path.join(ROOT, file), "utf8")));
  const unexpected = long.filter((f) => !(f.where in LONG_ON_PURPOSE)).map((f) => `${f.where} (${f.lines} lines)`);
  assert.equal(unexpected, [], "split these into steps, or name them in LONG_ON_PURPOSE with the reason");
  const stale = Object.keys(LONG_ON_PURPOSE).filter((where) => !long.some((f) => f.where === where));
  assert.equal(stale, [], "these are short now: take them out of LONG_ON_PURPOSE");
});

test("the length check counts a function's lines, nested ones included, and names it", () => {
  const body = Array.from({ length: MAX_LINES }, (_, i) => `  const v${i} = ${i};`).join("\n");
  const found = longFunctions("x.ts", `export function outer() {\n${body}\n  const inner = () => 1;\n}\n`);
  assert.equal(found, [{ where: "x.ts:outer", lines: MAX_LINES + 3 }]);
  assert.equal(longFunctions("x.ts", `const short = () => {\n${body.split("\n").slice(2).join("\n")}\n};`), []);
});

test("every test file's suite has a name, so that a failure or a count says where it came from", () => {
  const unnamed = fs.readdirSync(path.join(ROOT, "test")).filter((f) => f.endsWith(".ts")).filter((f) =>
    /import \{[^}]*\btest\b[^}]*\} from "uvu"/.test(fs.readFileSync(path.join(ROOT, "test", f), "utf8"))
  );
  assert.equal(unnamed, [], "these use uvu's nameless test(): make a suite(name)");
});

test.run();
