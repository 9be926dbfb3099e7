// Log lines (runtime/log.ts): one line per event in every format, with its level.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { formatLine } from "../runtime/log.ts";
import { escapeControls } from "../core/text.ts";

const test = suite("log");

const stack = "internal error (please report): Error: boom\n    at f (/x.ts:1:1)\n    at g (/y.ts:2:2)";

test("text: a stack trace is folded onto the line, after the time, pid and level", () => {
  const line = formatLine("error", stack, "text");
  assert.not.match(line, /\n/);
  assert.match(
    line,
    /^\d{4}-\d\d-\d\dT[\d:.]+Z agent\[\d+\] error: internal error \(please report\): Error: boom \| at f \(\/x\.ts:1:1\) \| at g \(\/y\.ts:2:2\)$/,
  );
});

test("journal: the priority journald filters on, and one line", () => {
  assert.is(
    formatLine("error", stack, "journal"),
    "<3>internal error (please report): Error: boom | at f (/x.ts:1:1) | at g (/y.ts:2:2)",
  );
  assert.is(formatLine("warn", "w", "journal"), "<4>w");
  assert.is(formatLine("info", "i", "journal"), "<6>i");
});

test("json: one object per line; the message keeps its line breaks, escaped", () => {
  const line = formatLine("warn", stack, "json");
  assert.not.match(line, /\n/);
  const o = JSON.parse(line);
  assert.equal([o.level, o.msg, typeof o.pid, typeof o.time], ["warn", stack, "number", "string"]);
});

// Security finding 8: a peer's certificate subject, a proxy's reason phrase or a host's stderr reach the log.
const hasRawControl = (line: string) =>
  [...line].some((c) =>
    c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f) || c === "\u2028" || c === "\u2029"
  );
const hostile = "cn=evil\x1b[2J\x1b]0;owned\x07\rFAKE: accepted\x9b31m\x7f\u2028\u2029";

test("text and journal: control characters an outsider sent are escaped, never written raw", () => {
  for (const layout of ["text", "journal"] as const) {
    const line = formatLine("warn", `rejected: ${hostile}`, layout);
    assert.not.ok(hasRawControl(line), layout);
    assert.ok(
      line.endsWith("rejected: cn=evil\\x1b[2J\\x1b]0;owned\\x07\\x0dFAKE: accepted\\x9b31m\\x7f\\u2028\\u2029"),
      line,
    );
  }
});

test("json: C1, DEL and the Unicode line separators are escaped as well as C0", () => {
  const line = formatLine("warn", hostile, "json");
  assert.not.ok(hasRawControl(line));
  assert.is(JSON.parse(line).msg, escapeControls(hostile));
});

test("escapeControls leaves printable text alone, tabs included, and shows the rest as escapes", () => {
  assert.is(escapeControls("plain ünïcode\ttab"), "plain ünïcode\ttab");
  assert.is(escapeControls("a\x00b\x85c\u2028"), "a\\x00b\\x85c\\u2028");
});

test.run();
