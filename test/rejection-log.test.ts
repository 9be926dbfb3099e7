import { suite } from "uvu";
import * as assert from "uvu/assert";
import { RejectionLog } from "../agent/rejection-log.ts";

const test = suite("rejection log");

test("rejection log: the first lines of a window are written, the rest summed up by reason when it ends", async () => {
  const lines: string[] = [];
  const rejections = new RejectionLog(2, 200, (line) => lines.push(line));
  for (const reason of ["bad-key", "busy", "bad-key", "bad-key", "busy", "timeout"]) {
    rejections.note(reason, `rejected: ${reason}`);
  }
  assert.equal(lines, ["rejected: bad-key", "rejected: busy"]);
  await new Promise((r) => setTimeout(r, 300));
  assert.is(lines.length, 3);
  assert.match(
    lines[2],
    /^4 more connections rejected in the last 0.2 s, not logged one by one \(bad-key 2, busy 1, timeout 1;/,
  );
  rejections.note("busy", "rejected: busy"); // a new window logs again
  assert.is(lines.at(-1), "rejected: busy");
  rejections.close();
  assert.is(lines.length, 4, "nothing left to sum up");
});

test.run();
