/**
 * `agent probe host:port`: the first diagnostic an operator runs. Goes
 * through each stage (resolve, connect, handshake, authenticate, info, ping)
 * and stops at the first that fails, with its own message and exit code.
 * @module
 */
import dns from "node:dns/promises";
import fs from "node:fs";
import { AgentClient } from "../../core/client/agent-client.ts";
import {
  AgentError,
  AuthenticationError,
  InsecurePeerError,
  KeyRejectedError,
  ProtocolError,
  TimeoutError,
  VersionMismatchError,
} from "../../core/errors.ts";
import { keyId } from "../../core/secure/keys.ts";
import type { AgentInfo } from "../../core/wire/messages.ts";
import { type Flags, str } from "../../agent/config.ts";
import { runtimeCryptoProvider } from "../../runtime/crypto.ts";
import { dialTcp, formatHost } from "../../runtime/tcp.ts";
import { CertificateError, DialError, ProxyError } from "../../runtime/errors.ts";
import { type CertificateReport, dialTls, formatFingerprint, parseFingerprint } from "../../runtime/tls.ts";
import { proveToListener } from "../../agent/dialer.ts";
import { ExitError, StageError } from "../errors.ts";
import { keyFromFlags, parseAddress } from "./remote.ts";
import { proxyFor } from "../../runtime/proxy.ts";

/** Exit codes, one per failed stage (docs/operations.md lists them too). */
export const PROBE_EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  nameNotFound: 3,
  refused: 4,
  timeout: 5,
  notAnAgent: 6,
  wrongKey: 7,
  incompatibleVersion: 8,
  insecureAgent: 9,
  certificateUntrusted: 10,
  certificateExpired: 11,
  fingerprintMismatch: 12,
  proxyFailed: 13,
} as const;

export type Stage = "resolve" | "connect" | "handshake" | "authenticate" | "info" | "ping";

interface ProbeReport {
  ok: boolean;
  target: string;
  address?: string;
  stage?: Stage;
  error?: { code: string; message: string };
  keyId?: string;
  protocolVersion?: number;
  agent?: AgentInfo;
  timings?: { connectMs: number; handshakeMs: number };
  rtt?: { count: number; minMs: number; p50Ms: number; p99Ms: number; maxMs: number };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((
      _,
      reject,
    ) => (timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms ${what}`)), ms))),
  ]);
}

export async function probeCommand(target: string | undefined, flags: Flags): Promise<void> {
  if (!target) throw new ExitError(PROBE_EXIT.usage, "probe needs a target: agent probe host:port");
  const { host, port } = parseAddress(target, PROBE_EXIT.usage);
  if (flags.tls) return await probeListener(host, port, flags);
  const count = Number(flags.count ?? 5);
  if (!Number.isInteger(count) || count < 0 || count > 10000) {
    throw new ExitError(PROBE_EXIT.usage, "--count must be a whole number from 0 to 10000");
  }
  const timeoutMs = Number(flags.timeout ?? 10) * 1000;
  if (!(timeoutMs > 0)) throw new ExitError(PROBE_EXIT.usage, "--timeout must be a positive number of seconds");
  const key = keyFromFlags(flags);
  if (!key && !flags.insecure) {
    throw new ExitError(
      PROBE_EXIT.usage,
      "probe needs the agent's key: pass --key-file FILE (or --key HEX); see `agent keygen`",
    );
  }
  const report: ProbeReport = { ok: false, target: `${formatHost(host)}:${port}` };
  if (key) report.keyId = await keyId(key);
  let client: AgentClient | null = null;
  try {
    client = await runStages(host, port, key, count, timeoutMs, Boolean(flags.insecure), report);
    report.ok = true;
  } catch (e) {
    const err = e instanceof StageError
      ? e
      : new StageError(report.stage ?? "connect", PROBE_EXIT.failed, "failed", (e as Error).message);
    report.stage = err.stage;
    report.error = { code: err.code, message: err.message };
    print(report, flags);
    throw new ExitError(err.exitCode, "");
  } finally {
    client?.close();
  }
  print(report, flags);
}

async function runStages(
  host: string,
  port: number,
  key: Uint8Array | undefined,
  count: number,
  timeoutMs: number,
  insecure: boolean,
  report: ProbeReport,
): Promise<AgentClient> {
  report.stage = "resolve";
  const address = await resolveStage(host, timeoutMs);
  report.address = address;

  report.stage = "connect";
  const t0 = performance.now();
  let stream;
  try {
    stream = await dialTcp(address, port, { timeoutMs });
  } catch (e) {
    if (e instanceof DialError && e.stage === "refused") {
      throw new StageError("connect", PROBE_EXIT.refused, "refused", e.message);
    }
    if (e instanceof DialError && e.stage === "timeout") {
      throw new StageError("connect", PROBE_EXIT.timeout, "timeout", e.message);
    }
    throw new StageError("connect", PROBE_EXIT.refused, "unreachable", (e as Error).message);
  }
  const connectMs = performance.now() - t0;

  report.stage = "handshake";
  const t1 = performance.now();
  let client: AgentClient;
  try {
    client = await withTimeout(
      AgentClient.open(stream, {
        key,
        insecure,
        provider: runtimeCryptoProvider(),
        onStage: (s) => s === "reply" && (report.stage = "authenticate"),
      }),
      timeoutMs,
      report.stage === "handshake"
        ? "waiting for the agent's handshake reply (is this an agent port?)"
        : "during authentication",
    );
  } catch (e) {
    stream.close();
    throw classify(e as Error, report.stage as Stage);
  }
  report.protocolVersion = client.version;
  report.timings = { connectMs, handshakeMs: performance.now() - t1 };

  report.stage = "info";
  report.agent = await withTimeout(client.info(), timeoutMs, "waiting for agent info").catch((e) => {
    client.close();
    throw classify(e, "info");
  });

  report.stage = "ping";
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    rtts.push(
      (await withTimeout(client.ping(), timeoutMs, "waiting for a ping reply").catch((e) => {
        client.close();
        throw classify(e, "ping");
      })).rttMs,
    );
  }
  if (rtts.length > 0) {
    rtts.sort((a, b) => a - b);
    const q = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))];
    report.rtt = { count: rtts.length, minMs: rtts[0], p50Ms: q(0.5), p99Ms: q(0.99), maxMs: rtts[rtts.length - 1] };
  }
  return client;
}

/** The resolve stage: the host's address, or a {@link StageError} for a missing name or a timeout. */
async function resolveStage(host: string, timeoutMs: number): Promise<string> {
  try {
    return (await withTimeout(dns.lookup(host), timeoutMs, `resolving ${host}`)).address;
  } catch (e) {
    if (e instanceof TimeoutError) throw new StageError("resolve", PROBE_EXIT.timeout, "timeout", e.message);
    throw new StageError(
      "resolve",
      PROBE_EXIT.nameNotFound,
      "name-not-found",
      `cannot resolve "${host}": no such host name (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

function classify(e: Error, stage: Stage): StageError {
  if (e instanceof TimeoutError) return new StageError(stage, PROBE_EXIT.timeout, "timeout", e.message);
  if (e instanceof VersionMismatchError) {
    return new StageError(
      stage,
      PROBE_EXIT.incompatibleVersion,
      e.code,
      `incompatible version: ${e.message}; upgrade the older side`,
    );
  }
  if (e instanceof InsecurePeerError) return new StageError(stage, PROBE_EXIT.insecureAgent, e.code, e.message);
  if (e instanceof AuthenticationError) {
    return new StageError(
      stage,
      PROBE_EXIT.wrongKey,
      "wrong-key",
      `wrong key: ${e.message}; check the key id against the agent's \`agent status\``,
    );
  }
  if (stage === "handshake" && (e instanceof ProtocolError || e instanceof AgentError)) {
    return new StageError(
      stage,
      PROBE_EXIT.notAnAgent,
      "not-an-agent",
      `not an agent: ${e.message} (something else is listening on that port)`,
    );
  }
  if (e instanceof ProtocolError) {
    return new StageError(stage, PROBE_EXIT.notAnAgent, "not-an-agent", `not an agent: ${e.message}`);
  }
  return new StageError(stage, PROBE_EXIT.failed, e instanceof AgentError ? e.code : "failed", e.message);
}

function print(report: ProbeReport, flags: Flags) {
  if (flags.json) {
    process.stdout.write(JSON.stringify(report) + "\n");
    return;
  }
  const ms = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
  const lines = [
    `probe ${report.target}${
      report.address && report.address !== report.target.replace(/:\d+$/, "") ? ` (${report.address})` : ""
    }`,
  ];
  if (report.timings) {
    lines.push(
      `  connected      ${ms(report.timings.connectMs)}`,
      `  handshake      ${ms(report.timings.handshakeMs)}, protocol v${report.protocolVersion}${
        report.keyId ? `, key id ${report.keyId}` : ", INSECURE (no encryption)"
      }`,
    );
  }
  if (report.agent) {
    const a = report.agent;
    lines.push(
      `  agent          ${a.version} on ${a.os}/${a.arch}, host ${a.hostname}, ${a.runtime.name} ${a.runtime.version}, up ${a.uptimeSeconds} s`,
    );
  }
  if (report.rtt) {
    const r = report.rtt;
    lines.push(
      `  round trip     min ${ms(r.minMs)}  p50 ${ms(r.p50Ms)}  p99 ${ms(r.p99Ms)}  max ${
        ms(r.maxMs)
      }  (${r.count} pings)`,
    );
  }
  if (report.error) lines.push(`  FAILED at ${report.stage}: ${report.error.message}`);
  else lines.push("  ok");
  (report.ok ? process.stdout : process.stderr).write(lines.join("\n") + "\n");
}

/** `agent probe host:port --tls`: checks a product's listener from this server, as the agent would dial it. */
async function probeListener(host: string, port: number, flags: Flags): Promise<void> {
  const timeoutMs = Number(flags.timeout ?? 10) * 1000;
  const key = keyFromFlags(flags);
  const lines = [`probe listener ${formatHost(host)}:${port} (outbound TLS, as this agent would dial it)`];
  const report: Record<string, unknown> = { ok: false, target: `${formatHost(host)}:${port}` };
  const fail = (code: number, stage: string, errorCode: string, message: string): never => {
    report.stage = stage;
    report.error = { code: errorCode, message };
    lines.push(`  FAILED at ${stage}: ${message}`);
    if (flags.json) process.stdout.write(JSON.stringify(report) + "\n");
    else process.stderr.write(lines.join("\n") + "\n");
    throw new ExitError(code, "");
  };
  let proxy: URL | null;
  try {
    proxy = proxyFor(host, process.env, str(flags.proxy));
  } catch (e) {
    throw new ExitError(PROBE_EXIT.usage, (e as Error).message);
  }
  let address = host; // through a proxy, the proxy resolves the name
  if (proxy) {
    lines.push(`  proxy          ${proxy.host} (HTTP CONNECT)`);
    report.proxy = proxy.host;
  } else {
    try {
      address = await resolveStage(host, timeoutMs);
    } catch (e) {
      const s = e as StageError;
      return fail(s.exitCode, s.stage, s.code, s.message);
    }
  }
  const ca = str(flags.ca);
  let trust;
  try {
    trust = {
      ca: ca ? fs.readFileSync(ca, "utf8") : undefined,
      fingerprint: str(flags.fingerprint) ? parseFingerprint(str(flags.fingerprint)!) : undefined,
      serverName: str(flags.serverName) ?? host,
    };
  } catch (e) {
    throw new ExitError(PROBE_EXIT.usage, (e as Error).message);
  }
  const t0 = performance.now();
  let dialed;
  try {
    dialed = await dialTls(address, port, { ...trust, timeoutMs, proxy, reportTrust: true });
  } catch (e) {
    if (e instanceof ProxyError) return fail(PROBE_EXIT.proxyFailed, "proxy", e.stage, e.message);
    if (e instanceof CertificateError) {
      describeCertificate(e.certificate, lines, report);
      const code = e.reason === "fingerprint-mismatch"
        ? PROBE_EXIT.fingerprintMismatch
        : e.reason === "expired"
        ? PROBE_EXIT.certificateExpired
        : PROBE_EXIT.certificateUntrusted;
      return fail(code, "certificate", e.reason, e.message);
    }
    if (e instanceof DialError) {
      return fail(
        e.stage === "refused" ? PROBE_EXIT.refused : e.stage === "timeout" ? PROBE_EXIT.timeout : PROBE_EXIT.refused,
        "connect",
        e.stage,
        e.message,
      );
    }
    return fail(PROBE_EXIT.failed, "connect", "failed", (e as Error).message);
  }
  lines.push(`  reachable      yes, TLS in ${(performance.now() - t0).toFixed(1)} ms`);
  describeCertificate(dialed.certificate, lines, report);
  if (!key) {
    dialed.stream.close();
    lines.push("  key            not checked (no key: pass --key-file, or run where the agent's key file is)");
    report.ok = true;
  } else {
    const id = await keyId(key);
    report.keyId = id;
    try {
      const frames = await withTimeout(
        proveToListener(dialed.stream, { id, bytes: key }, runtimeCryptoProvider(), dialed.certificate.fingerprint),
        timeoutMs,
        "waiting for the listener's key exchange",
      );
      frames.close();
    } catch (e) {
      dialed.stream.close();
      if (e instanceof KeyRejectedError) return fail(PROBE_EXIT.wrongKey, "key", "key-rejected", e.message);
      if (e instanceof TimeoutError) return fail(PROBE_EXIT.timeout, "key", "timeout", e.message);
      if (e instanceof ProtocolError) {
        return fail(PROBE_EXIT.notAnAgent, "key", "not-a-listener", `not an agent listener: ${e.message}`);
      }
      return fail(PROBE_EXIT.failed, "key", "failed", (e as Error).message);
    }
    lines.push(`  key            accepted (key id ${id})`);
    report.keyAccepted = true;
    report.ok = true;
  }
  lines.push("  ok");
  if (flags.json) process.stdout.write(JSON.stringify(report) + "\n");
  else process.stdout.write(lines.join("\n") + "\n");
}

function describeCertificate(c: CertificateReport, lines: string[], report: Record<string, unknown>) {
  const days = Math.floor((Date.parse(c.validTo) - Date.now()) / 86_400_000);
  lines.push(
    `  certificate    ${c.subject}, issued by ${c.issuer}`,
    `  valid          ${c.validFrom} to ${c.validTo} (${
      days >= 0 ? `expires in ${days} days` : `EXPIRED ${-days} days ago`
    })`,
    `  fingerprint    ${formatFingerprint(c.fingerprint)}`,
    `  trusted        ${c.trusted ? "yes" : `no: ${c.problem}`}`,
  );
  report.certificate = { ...c, fingerprint: formatFingerprint(c.fingerprint) };
}
