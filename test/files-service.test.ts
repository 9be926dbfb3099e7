// The files service's suspicions settled on the host's real request path, in this process, on real files.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ServiceCode } from "../core/session/contract.ts";
import { globMatcher, MAX_MASK_LENGTH, MAX_MASKS } from "../host/services/files-metadata.ts";
import { InProcessHost } from "./helpers/in-process-host.ts";
import { ROOT, scriptCommand, stopAll, tempDir } from "./helpers/agent-process.ts";

test.after(stopAll);

test("files: a listing mask with many stars against a long name finishes at once", async () => {
  const root = tempDir();
  fs.writeFileSync(path.join(root, "a".repeat(64)), "");
  fs.writeFileSync(path.join(root, "a".repeat(20) + "b"), "");
  const host = new InProcessHost(root);
  const started = performance.now();
  // As a backtracking regular expression this takes about C(64, 12) steps: longer than anyone waits.
  const answer = await host.call(ServiceCode.FileList, { path: ".", include: ["a*".repeat(12) + "b"] });
  const ms = performance.now() - started;
  assert.ok(answer.ok);
  if (answer.ok) assert.equal((answer.fields.entries as { path: string }[]).map((e) => e.path), ["a".repeat(20) + "b"]);
  assert.ok(ms < 2000, `listing took ${ms.toFixed(0)} ms`);
});

test("files: listing masks keep their meaning: * and ? stay within a name, ** crosses directories", () => {
  const cases: Array<[string, string, boolean]> = [
    ["*.txt", "a.txt", true],
    ["*.txt", "x/a.txt", false],
    ["**/*.txt", "a.txt", true],
    ["**/*.txt", "x/y/a.txt", true],
    ["**/*.txt", "x/a.txt/b", false],
    ["x/**", "x/y/z", true],
    ["a**", "a/b/c", true],
    ["a?c", "abc", true],
    ["a?c", "a/c", false],
    ["[x](y)+.$", "[x](y)+.$", true],
    ["", "", true],
    ["", "a", false],
    ["a*b*c", "aXbYc", true],
    ["a*b*c", "aXbY/c", false],
  ];
  for (const [glob, relPath, expected] of cases) {
    assert.is(globMatcher(glob)(relPath), expected, `${glob} against ${relPath}`);
  }
});

test("files: a listing refuses masks that are not a short list of strings", async () => {
  const host = new InProcessHost(tempDir());
  for (const include of [3, "*.txt", [null], [7], Array(MAX_MASKS + 1).fill("*"), ["*".repeat(MAX_MASK_LENGTH + 1)]]) {
    const answer = await host.call(ServiceCode.FileList, { path: ".", include });
    assert.equal(answer.ok ? "ok" : answer.error.code, "invalid-argument", JSON.stringify(include).slice(0, 40));
  }
});

// The read batch looks at a path, then reads it: a FIFO swapped in between must not block the host
// (opening a FIFO without a writer waits for one, and here the whole session would wait).
test("files: a read batch racing a swap of its file for a FIFO never blocks", async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, "x"), "regular");
  execFileSync("mkfifo", [path.join(dir, "fifo")]);
  const [cmd, ...prefix] = scriptCommand();
  const child = (helper: string, ms: number) =>
    new Promise<{ status: number | null; out: string }>((resolve) => {
      const run = spawn(cmd, [...prefix, path.join(ROOT, "test/helpers", helper), dir, String(ms)], {
        stdio: ["ignore", "pipe", "inherit"],
        timeout: 15_000,
      });
      let out = "";
      run.stdout.on("data", (c) => (out += c));
      run.on("close", (status) => resolve({ status, out }));
    });
  const [reader, swapper] = await Promise.all([child("read-batch-race.ts", 4000), child("swap-fifo.ts", 5000)]);
  assert.is(swapper.status, 0, "the swapper failed");
  assert.is(reader.status, 0, "the reader blocked (killed after 15 s)");
  const outcomes = JSON.parse(reader.out) as Record<string, number>;
  assert.ok((outcomes["files-1"] ?? 0) > 0, `read the file: ${reader.out}`);
  assert.ok((outcomes["files-0"] ?? 0) > 0, `met the FIFO: ${reader.out}`);
});

test.run();
