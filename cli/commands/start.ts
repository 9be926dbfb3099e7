/**
 * `agent start`: run the agent in the foreground until SIGINT or SIGTERM.
 * @module
 */
import type { AcceptedKey } from "../../core/secure/opening.ts";
import path from "node:path";
import { AgentServer } from "../../agent/server.ts";
import { cleanStaleChannels } from "../../agent/host-process.ts";
import { RING_CAPACITY, SessionManager } from "../../agent/sessions.ts";
import { controlPath, serveControl } from "../../agent/control.ts";
import { type Flags, resolveConfig, str } from "../../agent/config.ts";
import { ensureStateDir, loadAgentKeys } from "../../agent/keystore.ts";
import { log, LOG_FORMATS, type LogFormat, setLogFormat } from "../../runtime/log.ts";
import { runtimeCryptoProvider } from "../../runtime/crypto.ts";
import { selfCommand } from "../../runtime/self.ts";
import { parseFingerprint } from "../../runtime/tls.ts";
import { OutboundTarget } from "../../agent/dialer.ts";
import { ConfigError } from "../../agent/config.ts";
import fs from "node:fs";

function readCa(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read CA file ${file}: ${(e as Error).message}`);
  }
}

function fingerprintOf(text: string): Uint8Array {
  try {
    return parseFingerprint(text);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}
import { formatHost, isLoopback } from "../../runtime/tcp.ts";

export async function startCommand(flags: Flags): Promise<void> {
  const format = str(flags.logFormat);
  if (format !== undefined) {
    if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new ConfigError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, not "${format}"`);
    setLogFormat(format as LogFormat);
  }
  const config = resolveConfig(flags, process.env);
  ensureStateDir(config.stateDir);
  let keys: AcceptedKey[] = [];
  if (config.insecure) {
    log.warn("--insecure: encryption and authentication are OFF; only loopback peers will be served. Never use this in production.");
    if (!isLoopback(config.host)) log.warn(`listening on ${config.host} with --insecure; non-loopback peers will be refused`);
  } else {
    const loaded = await loadAgentKeys(config);
    keys = loaded.keys;
    if (loaded.generated) {
      // The key goes to stdout only when a person is watching (or asked for it): under systemd stdout is the journal.
      const show = Boolean(flags.showKey) || process.stdout.isTTY === true;
      process.stdout.write(
        `No key was configured, so a new one was created (key id ${keys[0].id}) and saved to ${loaded.generated.file} (mode 0600).\n` +
          (show
            ? `\n  ${loaded.generated.hex}\n\nGive this key to the product that will connect to this agent; it stays in that file.\n`
            : `Give the product the key in that file (it is not printed here, since this is not a terminal; --show-key prints it).\n`),
      );
    }
  }

  // A bug in one connection's handling must not take every session down with it: log it, keep serving.
  process.on("uncaughtException", (e) => log.error(`internal error (please report): ${e.stack ?? e}`));
  process.on("unhandledRejection", (e) => log.error(`internal error (please report): ${(e as Error)?.stack ?? e}`));

  // Signal handlers go in before anything listens, so an early SIGTERM still shuts down cleanly.
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onSignal = (signal: NodeJS.Signals) => () => stop(signal);
  process.on("SIGINT", onSignal("SIGINT"));
  process.on("SIGTERM", onSignal("SIGTERM"));
  process.on("SIGHUP", () => log.info("received SIGHUP: this version does not reload; nothing changed (SIGTERM stops the agent)"));

  // The control socket first: it refuses while another agent runs on this state directory, and
  // only then is it safe to treat channel files as left over.
  let server: AgentServer | null = null;
  const control = await serveControl(controlPath(config.stateDir), () => server?.status());
  const runDir = path.join(config.stateDir, "run");
  const stale = cleanStaleChannels(runDir);
  if (stale > 0) log.warn(`removed ${stale} channel file(s) left by an agent that did not stop cleanly`);
  const sessions = new SessionManager({
    stateDir: config.stateDir,
    runDir,
    products: config.products,
    idleTimeoutMs: config.idleTimeoutSeconds * 1000,
    reconnectGraceMs: config.reconnectGraceSeconds * 1000,
    replayLimitBytes: config.replayLimitMiB * 1024 * 1024,
    ringCapacity: RING_CAPACITY,
    processGraceMs: config.processGraceSeconds * 1000,
    hostCommand: selfCommand(),
    log,
  });
  if (config.insecure && config.connect.length > 0) {
    await control.close();
    throw new ConfigError("--insecure applies to inbound connections only; outbound connections always use TLS and the key");
  }
  const provider = runtimeCryptoProvider();
  server = new AgentServer(config, keys, provider, sessions);
  const outbound = config.connect.map((t) => new OutboundTarget({
    host: t.host, port: t.port, serverName: t.serverName,
    ca: t.ca ? readCa(t.ca) : undefined,
    fingerprint: t.fingerprint ? fingerprintOf(t.fingerprint) : undefined,
  }, {
    key: keys[0], provider, sessions, meta: { info: () => server!.info() },
    handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000, keepaliveMs: config.keepaliveSeconds * 1000, log,
  }));
  server.outbound = outbound;
  if (config.listen) {
    let address;
    try {
      address = await server.listen();
    } catch (e) {
      await control.close();
      throw e;
    }
    const mode = config.insecure ? "INSECURE plaintext mode" : `key mode, accepting key id${keys.length > 1 ? "s" : ""} ${keys.map((k) => k.id).join(", ")}`;
    log.info(`listening on ${formatHost(address.host)}:${address.port} (${mode}); state in ${config.stateDir}`);
  }
  for (const t of outbound) {
    log.info(`outbound: dialing ${t.address} over TLS as key id ${keys[0].id}`);
    t.start();
  }

  log.info(`received ${await stopped}, shutting down`);
  await Promise.all([server.close(), control.close(), ...outbound.map((t) => t.stop())]);
  log.info("stopped");
}
