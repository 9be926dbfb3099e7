// The hand-over's state file (agent/handover.ts): what a new version refuses to carry on, and how the file is made.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { CHANNEL_LAYOUT_VERSION } from "../core/shm/ring.ts";
import { encodeFields } from "../core/wire/messages.ts";
import { HANDOVER_FORMAT, readHandoverState, writeHandoverState } from "../agent/handover.ts";
import { tempDir } from "./helpers/agent-process.ts";

const test = suite("handover");

const STATE = {
  from: { pid: 1, version: "0.1.0" },
  startedAt: 0,
  history: { build: "ab", previousBuild: null, previousVersion: null, changedAt: null },
  listenFd: null,
  sessions: { nextAttachment: 1, sessions: [] },
};

test("the state is written 0600, exclusively, and removed once read", () => {
  const dir = tempDir();
  const file = writeHandoverState(dir, STATE);
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  const read = readHandoverState(file);
  assert.is(read.history.build, "ab");
  assert.not.ok(fs.existsSync(file), "removed as it is read");
});

test("a state from a build with another channel layout or format is refused, saying which", () => {
  const dir = tempDir();
  for (
    const [change, reason] of [
      [{ channelLayout: CHANNEL_LAYOUT_VERSION + 1 }, /channels use layout \d+; this build speaks layout \d+/],
      [{ format: HANDOVER_FORMAT + 1 }, /hands over in format \d+; this build reads \d+/],
    ] as const
  ) {
    const file = path.join(dir, `state-${Object.keys(change)[0]}`);
    fs.writeFileSync(
      file,
      encodeFields({ format: HANDOVER_FORMAT, channelLayout: CHANNEL_LAYOUT_VERSION, ...STATE, ...change }),
    );
    assert.throws(() => readHandoverState(file), reason);
    assert.not.ok(fs.existsSync(file), "removed even when refused");
  }
});

test.run();
