// The host's request path (host/main.ts dispatch) against malformed requests the fuzzer found,
// in this process, on real files and real processes.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { serializeError } from "../core/wire/error-reply.ts";
import { ServiceCode } from "../core/session/contract.ts";
import { encodeFields } from "../core/wire/messages.ts";
import { InProcessHost } from "./helpers/in-process-host.ts";
import { stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("host requests");

test.after(stopAll);

/** An envelope whose fields are `fields` encoded as they are: a map or not. */
function envelope(fields: unknown): Uint8Array {
  const f = encodeFields(fields);
  const out = new Uint8Array(4 + f.length);
  new DataView(out.buffer).setUint32(0, f.length, true);
  out.set(f, 4);
  return out;
}

// Found by `npm run fuzz`: nil fields on a handle's code threw in the host's serve loop, which
// would end the host and the session with it; on other codes the reply was `failed`.
test("host: a request whose fields are not a map is invalid-argument, and the host goes on", async () => {
  const host = new InProcessHost(tempDir());
  for (const fields of [null, 7, "path", [1, 2], true]) {
    for (
      const code of [ServiceCode.FileRead, ServiceCode.ProcessWrite, ServiceCode.FileSetMode, ServiceCode.FileStat]
    ) {
      const answer = await host.send(code, envelope(fields));
      assert.is(
        answer.ok ? "ok" : answer.error.code,
        "invalid-argument",
        `${JSON.stringify(fields)} on 0x${code.toString(16)}`,
      );
    }
  }
  const answer = await host.call(ServiceCode.SystemProductRoot, {});
  assert.ok(answer.ok);
});

// Found by `npm run fuzz`: a write after closing stdin was `failed` ("write after end").
test("host: writing to a process's stdin after closing it is stdin-closed", async () => {
  const host = new InProcessHost(tempDir());
  const started = await host.call(ServiceCode.ProcessStart, { program: "sleep", args: ["5"] });
  assert.ok(started.ok);
  if (!started.ok) return;
  const id = started.fields.id;
  assert.ok((await host.call(ServiceCode.ProcessCloseStdin, { id })).ok);
  const answer = await host.call(ServiceCode.ProcessWrite, { id }, new Uint8Array([1]));
  assert.is(answer.ok ? "ok" : answer.error.code, "stdin-closed");
  await host.close();
});

// Found by `npm run fuzz` on Deno: times that are not finite numbers, and positions past 2^53, were
// `failed` there (Node happened to call them invalid arguments); now checked alike on both.
test("host: times, positions and lengths out of range are invalid-argument", async () => {
  const root = tempDir();
  fs.writeFileSync(path.join(root, "a"), "hello");
  const host = new InProcessHost(root);
  for (const bad of [NaN, Infinity, "x", { a: 1 }, [1]]) {
    for (const fields of [{ path: "a", atimeMs: bad }, { path: "a", mtimeMs: bad }]) {
      const answer = await host.call(ServiceCode.FileSetTimes, fields);
      assert.is(answer.ok ? "ok" : answer.error.code, "invalid-argument", JSON.stringify(fields));
    }
  }
  const opened = await host.call(ServiceCode.FileOpen, { path: "a", flags: "r+" });
  assert.ok(opened.ok);
  const handle = opened.ok ? opened.fields.handle : 0;
  for (const bad of [2 ** 53, -5, 1.5, "x", NaN]) {
    const requests: Array<[number, Record<string, unknown>]> = [
      [ServiceCode.FileRead, { handle, position: bad }],
      [ServiceCode.FileRead, { handle, length: bad }],
      [ServiceCode.FileWrite, { handle, position: bad }],
      [ServiceCode.FileSeek, { handle, position: bad }],
    ];
    for (const [code, fields] of requests) {
      const answer = await host.call(code, fields, new Uint8Array([1]));
      assert.is(answer.ok ? "ok" : answer.error.code, "invalid-argument", `0x${code.toString(16)} ${bad}`);
    }
  }
  assert.is(fs.readFileSync(path.join(root, "a"), "utf8"), "hello");
  await host.close();
});

// Deno reports an operating-system error it has no name for with "(os error N)" and no code.
test("host: an operating-system error without a code is io-error, not failed", () => {
  assert.is(serializeError(new Error("File too large (os error 27)")).code, "io-error");
  assert.is(serializeError(new Error("x is undefined")).code, "failed");
});

test.run();
