// The files service's suspicions settled on the host's real request path, in this process, on real files.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ServiceCode } from "../core/session/contract.ts";
import { globMatcher, MAX_MASK_LENGTH, MAX_MASKS } from "../host/services/files-metadata.ts";
import { InProcessHost } from "./helpers/in-process-host.ts";
import { ROOT, scriptCommand, stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("files service");

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

// Found by the fuzzer (npm run fuzz): a mode of 2^31 aborted the whole host process inside Node's
// chmod (an assertion, not an exception); other bad modes were `failed`, an unclassified error.
test("files: a mode that is not a permission is refused, and the host stays up", async () => {
  const root = tempDir();
  fs.writeFileSync(path.join(root, "a"), "x");
  const host = new InProcessHost(root);
  for (const mode of [2 ** 31, 2 ** 32 - 1, -1, 1.5, "x", NaN, 2 ** 53]) {
    const requests: Array<[number, Record<string, unknown>, Uint8Array?]> = [
      [ServiceCode.FileSetMode, { path: "a", mode }],
      [ServiceCode.FileMkdir, { path: "m", mode }],
      [ServiceCode.FileOpen, { path: "a", mode }],
      [ServiceCode.FileWriteBatch, { files: [{ path: "w", size: 1, mode }] }, new Uint8Array(1)],
    ];
    for (const [code, fields, data] of requests) {
      const answer = await host.call(code, fields, data);
      const got = answer.ok ? "ok" : answer.error.code;
      assert.is(got, "invalid-argument", `code 0x${code.toString(16)} mode ${mode}`);
    }
  }
  // A whole st_mode (file type bits and all) still sets the permissions.
  const answer = await host.call(ServiceCode.FileSetMode, { path: "a", mode: 0o100600 });
  assert.ok(answer.ok);
  assert.is(fs.statSync(path.join(root, "a")).mode & 0o7777, 0o600);
});

// Found by the fuzzer: fs.cp reports with codes of its own (ERR_FS_CP_EEXIST, ...), so a copy
// refused for a plain reason came back as `failed`.
test("files: a refused copy says why with the usual codes", async () => {
  const root = tempDir();
  fs.mkdirSync(path.join(root, "d"));
  fs.writeFileSync(path.join(root, "a"), "x");
  fs.writeFileSync(path.join(root, "b"), "y");
  const host = new InProcessHost(root);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ from: "a", to: "b", overwrite: false }, "already-exists"],
    [{ from: ".", to: "d/e" }, "invalid-argument"],
    [{ from: "d", to: "a" }, "is-a-directory"], // as fs.cp says: EISDIR, a directory over a file
    [{ from: "a", to: "d" }, "not-a-directory"], // ENOTDIR, a file over a directory
  ];
  for (const [fields, code] of cases) {
    const answer = await host.call(ServiceCode.FileCopy, fields);
    assert.is(answer.ok ? "ok" : answer.error.code, code, JSON.stringify(fields));
  }
  assert.is(fs.readFileSync(path.join(root, "b"), "utf8"), "y");
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
