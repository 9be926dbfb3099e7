// Log lines (runtime/log.ts): one line per event in every format, with its level.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatLine } from "../runtime/log.ts";

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

test.run();
