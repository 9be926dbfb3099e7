// Files the agent trusts for its keys (security findings 6 and 12): a state directory another user owns or
// that is a symlink, and a config file holding keys that others may read or that another user owns, are
// refused before anything in them is used. Run as root here, so files can be given to another user.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import path from "node:path";
import { generateKey } from "../core/secure/keys.ts";
import { runAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("state-trust e2e");

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** A state directory holding a config.json that lists a key, as another user could leave it. */
function plantedStateDir(owner: number): string {
  const dir = tempDir("agent-state-");
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ keys: [generateKey().hex] }), { mode: 0o600 });
  fs.chownSync(path.join(dir, "config.json"), owner, owner);
  fs.chownSync(dir, owner, owner);
  return dir;
}

test.after(() => stopAll());

test("a state directory another user owns is refused before its config.json is read", () => {
  assert.ok(isRoot, "these tests need root (CI runs as root), to hand files to another user");
  const dir = plantedStateDir(NOBODY);
  const r = runAgent(["start", "--check", "--state-dir", dir]);
  assert.is(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`state directory ${dir} belongs to uid ${NOBODY}, not to this agent's user`));
  assert.not.match(r.stdout, /configuration OK/);
});

test("a symlinked state directory is refused, and its target is neither changed nor written", () => {
  const target = tempDir("agent-target-");
  fs.chmodSync(target, 0o755);
  const link = path.join(tempDir(), "state");
  fs.symlinkSync(target, link);
  const r = runAgent(["start", "--port", "0", "--state-dir", link], {}, 15_000);
  assert.is(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`state directory ${link} is a symlink`));
  assert.is(fs.statSync(target).mode & 0o777, 0o755);
  assert.equal(fs.readdirSync(target), []);
});

test("a config file that holds keys is checked like a key file: mode and owner", () => {
  const dir = tempDir();
  const config = path.join(dir, "agent.json");
  fs.writeFileSync(config, JSON.stringify({ keys: [generateKey().hex] }), { mode: 0o644 });
  fs.chmodSync(config, 0o644);
  const open = runAgent(["start", "--check", "--config", config]);
  assert.is(open.code, 2);
  assert.match(
    open.stderr,
    new RegExp(`config file ${config} holds keys and is readable by others \\(mode 0644\\); run: chmod 600`),
  );

  fs.chmodSync(config, 0o600);
  fs.chownSync(config, NOBODY, NOBODY);
  const foreign = runAgent(["start", "--check", "--config", config]);
  assert.is(foreign.code, 2);
  assert.match(foreign.stderr, new RegExp(`config file ${config} holds keys and belongs to uid ${NOBODY}`));

  fs.chownSync(config, 0, 0);
  const ok = runAgent(["start", "--check", "--config", config]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /configuration OK/);
});

test("a config file without keys may be readable by others", () => {
  const config = path.join(tempDir(), "agent.json");
  fs.writeFileSync(config, JSON.stringify({ keyFiles: [], port: 4999 }), { mode: 0o644 });
  fs.chmodSync(config, 0o644);
  const r = runAgent(["start", "--check", "--config", config, "--key", generateKey().hex]);
  assert.is(r.code, 0, r.stderr);
});

test.run();
