/**
 * Simulated agents for the fleet benchmark: thousands per process, each the
 * agent's own outbound code (OutboundTarget, ClientConnection) with its own
 * key. Env: PORT (or PORTS, "p1,p2,p3": the nodes of a listener cluster), FINGERPRINT, KEYS (JSON file: [hex, ...]), RAMP_MS (spread
 * of the first dials), KEEPALIVE. Runs until killed.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { OutboundTarget } from "../agent/dialer.ts";
import { SessionManager, sessionSettings } from "../agent/sessions.ts";
import { keyId, parseKey } from "../core/secure/keys.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import { silent } from "../runtime/log.ts";
import { parseFingerprint } from "../runtime/tls.ts";

const keys: string[] = JSON.parse(fs.readFileSync(process.env.KEYS!, "utf8"));
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-fleet-sim-"));
const sessions = new SessionManager(
  sessionSettings({
    stateDir,
    products: null,
    warmHosts: 0,
    idleTimeoutSeconds: 60,
    reconnectGraceSeconds: 0,
    replayLimitMiB: 1,
    processGraceSeconds: 1,
  }, { runDir: path.join(stateDir, "run"), hostCommand: [process.execPath, "-e", "0"], log: silent }),
);
const provider = runtimeCryptoProvider();
const rampMs = Number(process.env.RAMP_MS ?? 2000);
const keepaliveMs = Number(process.env.KEEPALIVE ?? 15) * 1000;
const startedAt = Date.now();
const targets: OutboundTarget[] = [];
const ports = (process.env.PORTS ?? process.env.PORT!).split(",").map(Number);
const alternates = ports.slice(1).map((port) => ({ host: "127.0.0.1", port }));
for (const hex of keys) {
  const bytes = parseKey(hex).bytes;
  const target = new OutboundTarget(
    { host: "127.0.0.1", port: ports[0], alternates, fingerprint: parseFingerprint(process.env.FINGERPRINT!) },
    {
      key: { id: await keyId(bytes), bytes },
      provider,
      sessions,
      startedAt,
      handshakeTimeoutMs: 30_000,
      dialTimeoutMs: 60_000,
      keepaliveMs,
      log: silent,
    },
  );
  targets.push(target);
  setTimeout(() => target.start(), Math.random() * rampMs);
}
process.on("SIGTERM", () => {
  fs.rmSync(stateDir, { recursive: true, force: true });
  process.exit(0);
});
if (process.env.FLEET_VERBOSE) {
  setInterval(() => {
    const states: Record<string, number> = {}, errors: Record<string, number> = {};
    for (const t of targets) {
      const st = t.status();
      states[st.state] = (states[st.state] ?? 0) + 1;
      if (st.state !== "connected" && st.lastError) errors[st.lastError] = (errors[st.lastError] ?? 0) + 1;
    }
    console.error(`agents ${process.pid}: ${JSON.stringify(states)} ${JSON.stringify(errors)}`);
  }, 5000).unref();
}
console.log("started");
