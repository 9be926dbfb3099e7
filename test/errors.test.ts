// The error table: every error class in its layer's errors module, every code registered (the type
// admits no other) and documented where it crosses the wire, causes kept, one serializer.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import {
  AgentError,
  ERROR_CODES,
  type ErrorCode,
  isErrorCode,
  ProtocolError,
  remoteError,
  REPLY_ERROR_CODES,
  ServiceError,
} from "../core/errors.ts";
import { serializeError } from "../core/wire/error-reply.ts";
import { DialError } from "../runtime/errors.ts";
import { dialTcp } from "../runtime/tcp.ts";
import { ROOT } from "./helpers/agent-process.ts";

const test = suite("errors");

const LAYERS = ["core", "runtime", "agent", "host", "client", "cli"];

function sources(): string[] {
  return LAYERS.flatMap((dir) =>
    fs.readdirSync(path.join(ROOT, dir), { recursive: true }).map(String).filter((f) => f.endsWith(".ts")).map((f) =>
      path.join(dir, f)
    )
  );
}

test("every error class is declared in its layer's errors.ts", () => {
  const declared = new Map<string, { parent: string; file: string }>();
  for (const file of sources()) {
    for (const m of fs.readFileSync(path.join(ROOT, file), "utf8").matchAll(/\bclass (\w+) extends (\w+)/g)) {
      declared.set(m[1], { parent: m[2], file });
    }
  }
  const isError = (name: string): boolean =>
    name === "AgentError" || (declared.has(name) && isError(declared.get(name)!.parent));
  const errors = [...declared].filter(([name]) => isError(name));
  assert.ok(errors.length > 30, `${errors.length} error classes found`);
  const misplaced = errors.filter(([, d]) => !/^(core|runtime|agent|cli)\/errors\.ts$/.test(d.file))
    .map(([name, d]) => `${name} in ${d.file}`);
  assert.equal(misplaced, []);
});

test("a code outside the table does not compile, and every code has its meaning", () => {
  // @ts-expect-error: "no-such-code" is not an ErrorCode
  const e = new AgentError("no-such-code", "never");
  assert.is(isErrorCode(e.code), false);
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^[a-z]+(-[a-z]+)*$/);
    assert.ok(meaning.length > 10, code);
  }
});

test("docs/protocol.md's error table lists exactly the codes a reply may carry", () => {
  const doc = fs.readFileSync(path.join(ROOT, "docs/protocol.md"), "utf8");
  const section = doc.slice(doc.indexOf("### Errors (every target)"), doc.indexOf("### Meta codes"));
  const documented = [...section.matchAll(/^\| `([a-z-]+)` \| [^|]+ \|$/gm)].map((m) => m[1]);
  assert.equal([...documented].sort(), [...REPLY_ERROR_CODES].sort());
});

test("a peer's code this side does not know arrives as unknown, keeping what was sent", () => {
  const e = remoteError({ code: "quota-exceeded", message: "over quota" });
  assert.is(e.code, "unknown");
  assert.is(e.message, "over quota (code quota-exceeded)");
  assert.is(remoteError({ code: "not-found", message: "x" }).code, "not-found");
});

test("one serializer: the code for each kind of failure", () => {
  const os = (code: string, extra: object = {}) => Object.assign(new Error(`${code}: something`), { code, ...extra });
  const cases: Array<[unknown, ErrorCode]> = [
    [new ServiceError("unknown-process", "no process 7"), "unknown-process"],
    [new ProtocolError("malformed message fields"), "invalid-argument"],
    [os("ERR_INVALID_ARG_VALUE"), "invalid-argument"],
    [os("ENOENT", { path: "/x" }), "not-found"],
    [os("EROFS"), "io-error"],
    [os("ELOOP"), "io-error"],
    [new TypeError("cannot read properties of undefined"), "failed"],
    ["a thrown string", "failed"],
    [undefined, "failed"],
  ];
  for (const [thrown, code] of cases) assert.is(serializeError(thrown).code, code, String(thrown));
  assert.equal(serializeError(os("ENOENT", { path: "/x" })), {
    code: "not-found",
    message: "/x: no such file or directory",
    detail: "/x",
  });
});

test("a wrapped error stays reachable as cause: a refused dial carries the socket's error", async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r())); // nothing listens there now
  const e = await dialTcp("127.0.0.1", port, { timeoutMs: 5000 }).then(() => null, (e) => e);
  assert.ok(e instanceof DialError);
  assert.is(e.code, "refused");
  assert.is((e.cause as NodeJS.ErrnoException).code, "ECONNREFUSED");
});

test.run();
