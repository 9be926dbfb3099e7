// The suite's own helpers keep their promises: what a test makes, it leaves nowhere.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, scriptCommand } from "./helpers/agent-process.ts";
import { defaultStateDir } from "../agent/state-dir.ts";

const test = suite("helpers");

test("a test file run on its own leaves no temporary directory behind, even if it never calls stopAll", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "helpers-test-"));
  try {
    const [cmd, ...prefix] = scriptCommand();
    const out = spawnSync(cmd, [...prefix, path.join(ROOT, "test/helpers/leave-temp-dir.ts")], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, TMPDIR: tmp },
    });
    assert.is(out.status, 0, out.stderr);
    const made = out.stdout.trim();
    assert.ok(made.startsWith(tmp), `${made} is under ${tmp}`);
    // tsx keeps its own cache there; what the suite's helpers make starts with "agent-".
    assert.equal(
      fs.readdirSync(tmp).filter((name) => name.startsWith("agent-")),
      [],
      "nothing of the suite's left in the temporary directory",
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test("the test process's own default state directory is a private temporary one, never the machine's", () => {
  // What a test starts without hermeticEnv (a LocalAgent with no stateDir, an in-process resolveConfig)
  // falls back to this; as root it would be /var/lib/agent.
  const dir = defaultStateDir(process.env);
  assert.ok(dir.startsWith(os.tmpdir() + path.sep), `${dir} is under ${os.tmpdir()}`);
  assert.not.ok(["/var/lib/agent", path.join(os.userInfo().homedir, ".local/state/agent")].includes(dir));
});

test.run();
