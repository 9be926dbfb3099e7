// `agent service install --root DIR` into a tree others could write (security finding 7): a planted symlink is
// replaced or refused, never written through.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { serviceUnit, UNIT_PATH } from "../agent/service.ts";
import { IS_DENO, ROOT, runAgent, stopAll, tempDir } from "./helpers/agent-process.ts";

const test = suite("service e2e");

/** A root with the binary in place under Deno (whose CLI is not the single executable and copies nothing). */
function installRoot(): { root: string; binary: string } {
  const root = tempDir("agent-root-");
  const binary = path.join(root, "usr/local/bin/agent");
  fs.mkdirSync(path.dirname(binary), { recursive: true });
  if (IS_DENO) fs.copyFileSync(path.join(ROOT, "dist/agent"), binary);
  return { root, binary };
}

test.after(() => stopAll());

test("symlinks planted at the unit and the binary's temporary name are replaced, their targets untouched", () => {
  const { root, binary } = installRoot();
  const victims = tempDir("agent-victim-");
  const unitVictim = path.join(victims, "unit-target"), binaryVictim = path.join(victims, "binary-target");
  fs.writeFileSync(unitVictim, "precious\n");
  fs.writeFileSync(binaryVictim, "precious\n");
  fs.mkdirSync(path.dirname(path.join(root, UNIT_PATH)), { recursive: true });
  fs.symlinkSync(unitVictim, path.join(root, UNIT_PATH));
  fs.symlinkSync(binaryVictim, `${binary}.new`);

  const r = runAgent(["service", "install", "--root", root]);
  assert.is(r.code, 0, r.stderr);
  assert.is(fs.readFileSync(unitVictim, "utf8"), "precious\n");
  assert.is(fs.readFileSync(binaryVictim, "utf8"), "precious\n");
  assert.not.ok(fs.lstatSync(path.join(root, UNIT_PATH)).isSymbolicLink(), "the unit is a file of its own");
  assert.match(fs.readFileSync(path.join(root, UNIT_PATH), "utf8"), /ExecStart=\/usr\/local\/bin\/agent start/);
  assert.ok(fs.readFileSync(binary).equals(fs.readFileSync(path.join(ROOT, "dist/agent"))), "the binary is in place");
});

test("with --root, install and uninstall name the files inside the root and nothing of the real system", () => {
  const { root, binary } = installRoot();
  const install = runAgent(["service", "install", "--root", root, "--json"]);
  assert.is(install.code, 0, install.stderr);
  const installed = JSON.parse(install.stdout).report.join("\n");
  assert.match(installed, new RegExp(`binary ${binary}: `));
  const uninstall = runAgent(["service", "uninstall", "--root", root, "--json"]);
  assert.is(uninstall.code, 0, uninstall.stderr);
  const removed = JSON.parse(uninstall.stdout).report.join("\n");
  assert.match(removed, new RegExp(`rm ${binary}`));
  for (const system of [/rm \/usr\/local\/bin\/agent/, /userdel/, /\/var\/lib\/agent/]) {
    assert.not.match(removed, system);
    assert.not.match(installed, system);
  }
});

test("a symlinked directory inside the root is refused with the link named, and nothing is written there", () => {
  const { root } = installRoot();
  const elsewhere = tempDir("agent-victim-");
  fs.symlinkSync(elsewhere, path.join(root, "etc"));
  const r = runAgent(["service", "install", "--root", root]);
  assert.is.not(r.code, 0);
  assert.match(r.stderr, new RegExp(`refusing to install through the symlink ${path.join(root, "etc")}`));
  assert.equal(fs.readdirSync(elsewhere), []);
});

test("the unit's exposure, as systemd-analyze security rates it, is at most 5.0 (security finding 15)", () => {
  const file = path.join(tempDir(), "agent.service");
  fs.writeFileSync(file, serviceUnit({ user: "agent", binary: "/usr/local/bin/agent" }));
  const r = spawnSync("systemd-analyze", ["security", "--offline=true", file], { encoding: "utf8" });
  if (r.error) return console.log(`\n  (systemd-analyze security skipped: ${r.error.message})`);
  const score = Number(/Overall exposure level for agent\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
  assert.ok(score <= 5.0, `exposure ${score}:\n${r.stdout.slice(-3000)}`);
});

test.run();
