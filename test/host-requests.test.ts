// The host's request path (host/main.ts dispatch) against malformed requests the fuzzer found,
// in this process, on real files and real processes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ServiceCode } from "../core/session/contract.ts";
import { encodeFields } from "../core/wire/messages.ts";
import { InProcessHost } from "./helpers/in-process-host.ts";
import { stopAll, tempDir } from "./helpers/agent-process.ts";

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

test.run();
