// systemd notifications (runtime/sd-notify.ts), received on a real Unix datagram socket.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { systemdNotifier, watchdogIntervalMs } from "../runtime/sd-notify.ts";
import { notifySocket } from "./helpers/notify-socket.ts";
import { startAgent, stopAll } from "./helpers/agent-process.ts";
import { generateKey } from "../core/secure/keys.ts";

const test = suite("sd-notify");

const KEY = generateKey();

test.after(() => stopAll());

test("READY=1 reaches the socket NOTIFY_SOCKET names, and the watchdog is fed at half its interval", async () => {
  const socket = notifySocket();
  try {
    const systemd = systemdNotifier({ NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "200000" });
    assert.ok(systemd.enabled);
    assert.ok(systemd.notify("READY=1\nSTATUS=listening"));
    systemd.startWatchdog();
    const got = await socket.waitFor((m) => m.filter((x) => x === "WATCHDOG=1").length >= 3, 2000);
    systemd.stopWatchdog();
    assert.is(got[0], "READY=1\nSTATUS=listening");
    assert.ok(got.filter((x) => x === "WATCHDOG=1").length >= 3, JSON.stringify(got));
  } finally {
    socket.close();
  }
});

test("without NOTIFY_SOCKET nothing is sent and nothing fails; a watchdog meant for another pid is ignored", () => {
  const systemd = systemdNotifier({});
  assert.not.ok(systemd.enabled);
  assert.not.ok(systemd.notify("READY=1"));
  systemd.startWatchdog();
  systemd.stopWatchdog();
  assert.is(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" }), 30_000);
  assert.is(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "1" }, 2), null);
  assert.is(watchdogIntervalMs({ WATCHDOG_USEC: "nonsense" }), null);
});

test("a notification socket nobody reads never blocks the sender: a full queue drops the message", () => {
  const socket = notifySocket({ drain: false });
  try {
    const systemd = systemdNotifier({ NOTIFY_SOCKET: socket.path });
    const t0 = performance.now();
    const sent = Array.from({ length: 2000 }, () => systemd.notify("WATCHDOG=1"));
    assert.ok(performance.now() - t0 < 5000, "no call waited for a reader");
    assert.ok(sent.includes(false), "past the queue's length, messages are dropped, not waited on");
  } finally {
    socket.close();
  }
});

test("agent start under Type=notify: READY=1 once it listens, the watchdog fed, RELOADING on SIGHUP, STOPPING", async () => {
  const socket = notifySocket();
  try {
    const agent = await startAgent(["--key", KEY.hex], {
      env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "400000" },
    });
    const ready = await socket.waitFor((m) => m.some((x) => x.startsWith("READY=1")));
    assert.ok(ready[0].startsWith("READY=1\nSTATUS=listening on 127.0.0.1:"), JSON.stringify(ready));
    await socket.waitFor((m) => m.filter((x) => x === "WATCHDOG=1").length >= 3, 5000);
    assert.ok(socket.messages().filter((x) => x === "WATCHDOG=1").length >= 3, "the watchdog is fed");
    process.kill(agent.pid, "SIGHUP");
    const reloadedAt = (m: string[]) => m.findIndex((x) => x.startsWith("RELOADING=1"));
    const reloaded = await socket.waitFor((m) =>
      reloadedAt(m) >= 0 && m.findLastIndex((x) => x.startsWith("READY=1")) > reloadedAt(m)
    );
    assert.ok(reloaded.findLastIndex((x) => x.startsWith("READY=1")) > reloadedAt(reloaded), JSON.stringify(reloaded));
    assert.ok(reloaded.some((x) => x.startsWith("RELOADING=1")), JSON.stringify(reloaded));
    await agent.stop();
    const stopping = await socket.waitFor((m) => m.some((x) => x.startsWith("STOPPING=1")), 5000);
    assert.ok(stopping.some((x) => x.startsWith("STOPPING=1")), JSON.stringify(stopping));
  } finally {
    socket.close();
  }
});

test.run();
