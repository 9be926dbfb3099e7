// `agent run -t` under a real pseudo-terminal (util-linux `script`), as an operator types at it: an
// interactive shell on the server, a window-size change seen by `stty size`, Ctrl-C reaching the
// remote program, and this terminal restored afterwards.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { generateKey } from "../core/secure/keys.ts";
import {
  agentCommand,
  hermeticEnv,
  type RunningAgent,
  sendSignal,
  startAgent,
  stopAll,
  tempDir,
  until,
  writeKeyFile,
} from "./helpers/agent-process.ts";

const tty = suite("agent run -t e2e");
const KEY = generateKey();
let agent: RunningAgent;
let keyFile: string;

tty.before(async () => {
  keyFile = writeKeyFile(tempDir(), KEY.hex);
  agent = await startAgent(["--key", KEY.hex]);
});

tty.after(async () => {
  await agent.stop();
  stopAll();
});

const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

/** Runs the shell command line `line` on a pseudo-terminal of its own; `screen()` is all it has shown. */
function onTerminal(line: string) {
  const child = spawn("script", ["-qfec", line, "/dev/null"], { env: hermeticEnv(), stdio: ["pipe", "pipe", "pipe"] });
  let shown = "";
  child.stdout!.on("data", (d) => (shown += d));
  child.stderr!.on("data", (d) => (shown += d));
  const timer = setTimeout(() => sendSignal(child, "SIGKILL"), 60_000);
  const done = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve(code);
    })
  );
  return {
    type: (keys: string) => child.stdin!.write(keys),
    screen: () => shown,
    shows: (text: string | RegExp, what: string) =>
      until(() => (typeof text === "string" ? shown.includes(text) : text.test(shown)), what, 15_000).catch((e) => {
        throw new Error(`${e.message}; the screen:\n${JSON.stringify(shown)}`);
      }),
    done,
  };
}

tty("an interactive shell: commands, a window-size change, Ctrl-C, and the terminal restored on exit", async () => {
  const run = [...agentCommand(), "run", `127.0.0.1:${agent.port}`, "--key-file", keyFile, "-t", "--", "sh", "-i"];
  const term = onTerminal(`echo "local tty $(tty)"; ${run.map(quote).join(" ")}; echo "[exit $?]"; stty -a`);
  await term.shows(/local tty (\/dev\/pts\/\d+)/, "the local terminal's name");
  const local = /local tty (\/dev\/pts\/\d+)/.exec(term.screen())![1];
  await term.shows(/[$#] $/, "the remote shell's prompt");
  term.type("echo $((6*7)) $(tty)\r");
  await term.shows(/42 \/dev\/pts\/\d+/, "the shell runs commands, on a terminal of its own");

  spawnSync("stty", ["-F", local, "rows", "40", "cols", "132"]); // the kernel sends the client SIGWINCH
  // The resize travels as a message: ask again until it has arrived.
  for (let i = 0; i < 20 && !term.screen().includes("40 132"); i++) {
    term.type("stty size\r");
    await new Promise((r) => setTimeout(r, 300));
  }
  await term.shows("40 132", "the remote terminal took the new size");

  term.type("sleep 30; echo slept\r");
  await new Promise((r) => setTimeout(r, 500));
  term.type("\x03");
  term.type("echo after-interrupt\r");
  await term.shows(/(^|[#$] )after-interrupt\r*\n/m, "Ctrl-C ended the remote sleep"); // the output, not the typed line
  assert.not.match(term.screen(), /\nslept/, "the sleep did not run its course");

  term.type("exit 3\r");
  await term.shows("[exit 3]", "the client exits with the shell's code");
  const code = await term.done;
  assert.is(code, 0);
  const settings = term.screen().slice(term.screen().indexOf("[exit 3]"));
  assert.match(settings, /(^|\s)icanon(\s|$)/m, "canonical mode is back");
  assert.match(settings, /(^|\s)echo(\s|$)/m, "echo is back");
});

tty.run();
