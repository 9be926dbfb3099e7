// `agent cp -r` downloads (security finding 4, the class of scp's CVE-2019-6111): every name a server lists is
// placed under the destination, or the copy is refused before anything is written.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import path from "node:path";
import { CP_EXIT, localPathFor } from "../cli/commands/cp.ts";
import { CommandFailure } from "../cli/errors.ts";

const test = suite("cp-paths");

const into = path.resolve("/tmp/dest");

test("a listed name lands under the destination", () => {
  assert.is(localPathFor(into, "a/b/c.txt"), path.join(into, "a", "b", "c.txt"));
  assert.is(localPathFor(into, "..hidden/x..y"), path.join(into, "..hidden", "x..y"));
});

test("names that climb out, are absolute, or are empty or odd are refused, naming the entry, exit 27", () => {
  for (const hostile of ["../../home/op/.bashrc", "a/../../x", "/etc/passwd", "", ".", "a//b", "a/./b", "a/.."]) {
    try {
      localPathFor(into, hostile);
      assert.unreachable(`${JSON.stringify(hostile)} was accepted`);
    } catch (e) {
      assert.instance(e, CommandFailure, String(e));
      assert.is((e as CommandFailure).failure, "unsafe-listing");
      assert.is((e as CommandFailure).exitCode, 27);
      assert.is(CP_EXIT["unsafe-listing"], 27);
      assert.match((e as Error).message, /the server listed .* which is not a plain name under the copied directory/);
    }
  }
});

test("a name with control characters is shown escaped in the refusal", () => {
  try {
    localPathFor(into, "../\x1b[2Jx");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /\\x1b\[2Jx/);
    assert.not.ok((e as Error).message.includes("\x1b"));
  }
});

test.run();
