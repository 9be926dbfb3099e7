// After a host crash the agent ends the session's process groups: TERM, the grace, KILL. A group
// that emptied meanwhile may have a new owner by the KILL (pids recycle; here pid_max is 32768),
// and must not be signalled. The test makes that happen on purpose: it becomes the subreaper of
// the session's orphans so it decides when the emptied group's id is free, then hands that id to
// a decoy process (ns_last_pid, root only) before the grace ends.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { connect } from "../mod.ts";
import { generateKey } from "../core/secure/keys.ts";
import { bindC, libcName } from "../runtime/native.ts";
import { startAgent, stopAll, tempDir, until } from "./helpers/agent-process.ts";

const recycle = suite("pid recycling e2e");
const KEY = generateKey();
const PR_SET_CHILD_SUBREAPER = 36, WNOHANG = 1;
const CAN_RUN = process.platform === "linux" && process.getuid?.() === 0 &&
  fs.existsSync("/proc/sys/kernel/ns_last_pid");

recycle.after(() => stopAll());

function libc() {
  return bindC(libcName(), {
    prctl: "int prctl(int option, size_t a2, size_t a3, size_t a4, size_t a5)",
    waitpid: "int waitpid(int pid, void *status, int options)",
  }) as Record<"prctl" | "waitpid", (...a: unknown[]) => number>;
}

function state(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "")[0];
  } catch {
    return null;
  }
}

/** A process that leads its own group with id `pgid`, if the next pid can be made that. */
async function decoyWithPid(pgid: number): Promise<ChildProcess | null> {
  for (let attempt = 0; attempt < 100; attempt++) {
    fs.writeFileSync("/proc/sys/kernel/ns_last_pid", String(pgid - 1));
    const child = spawn("sleep", ["30"], { detached: true, stdio: "ignore" });
    await new Promise((r) => child.once("spawn", r));
    if (child.pid === pgid) return child;
    child.kill("SIGKILL");
  }
  return null;
}

recycle("after a host crash, a process group that emptied is not signalled again once its id is reused", async () => {
  if (!CAN_RUN) return console.warn("  (skipped: needs root on Linux, to set the next pid)");
  const c = libc();
  c.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); // the session's orphans become this process's children
  try {
    await crashAndRecycle(c);
  } finally {
    // Later suites' orphans must go to init again: adopted here, they would stay zombies in their groups
    // (which a zombie keeps), and an agent would wait out its whole grace for groups that look alive.
    c.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  }
});

async function crashAndRecycle(c: ReturnType<typeof libc>) {
  const stateDir = tempDir();
  fs.writeFileSync(path.join(stateDir, "config.json"), JSON.stringify({ keys: [KEY.hex], processGraceSeconds: 3 }), {
    mode: 0o600,
  });
  const agent = await startAgent(["--warm-hosts", "0"], { stateDir });
  const client = await connect({ host: "127.0.0.1", port: agent.port, key: KEY.hex });
  const s = await client.openSession("alpha");
  const ends = await s.processes.start({ program: "sleep", args: ["30"] }); // ends at the TERM
  const stays = await s.processes.start({ program: "sh", args: ["-c", 'trap "" TERM; while :; do sleep 0.2; done'] });
  await new Promise((r) => setTimeout(r, 500)); // the host reports both groups to the agent
  const hostPid = (await s.system.info()).pid;
  process.kill(hostPid, "SIGKILL");
  await agent.waitForLog(/failed: the session's host process ended unexpectedly/);

  await until(() => state(ends.pid!) === "Z", "the TERM ends the first process (a zombie of ours)");
  const status = new Int32Array(1);
  assert.is(c.waitpid(ends.pid!, status, 0), ends.pid, "reaped: its group's id is free");
  await new Promise((r) => setTimeout(r, 300)); // the agent looks at its groups every 50 ms
  const decoy = await decoyWithPid(ends.pid!);
  assert.ok(decoy, `a decoy got pid ${ends.pid}`);
  const decoyExit = new Promise<string | null>((r) => decoy!.once("exit", (_code, signal) => r(signal)));

  await until(() => state(stays.pid!) === "Z" || state(stays.pid!) === null, "the KILL after the grace", 10_000);
  const hit = await Promise.race([decoyExit, new Promise((r) => setTimeout(() => r("alive"), 500))]);
  assert.is(hit, "alive", "the decoy that took the emptied group's id was not signalled");
  decoy!.kill("SIGKILL");
  while (c.waitpid(-stays.pid!, status, WNOHANG) > 0) { /* reap the orphans of the group that stayed */ }
  c.waitpid(stays.pid!, status, WNOHANG);
  client.close();
  await agent.stop();
}

recycle.run();
