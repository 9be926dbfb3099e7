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
import type { ByteStream } from "../../core/wire/stream.ts";
import { type Flags, str } from "../flags.ts";
import { runtimeCryptoProvider } from "../../runtime/crypto.ts";
import { dialTcp, formatHost } from "../../runtime/tcp.ts";
import { CertificateError, DialError, ProxyError } from "../../runtime/errors.ts";
import { type CertificateReport, dialTls, formatFingerprint, parseFingerprint } from "../../runtime/tls.ts";
import { proveToListener } from "../../agent/dialer.ts";
import { ExitError, StageError } from "../errors.ts";
import { keyFromFlags, parseAddress } from "./remote.ts";
import { proxyFor } from "../../runtime/proxy.ts";
import { escapeLines, safeJson } from "../../core/text.ts";

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
  const stream = await connectStage(address, port, timeoutMs);
  const connectMs = performance.now() - t0;

  report.stage = "handshake";
  const t1 = performance.now();
  const client = await handshakeStage(stream, key, insecure, timeoutMs, report);
  report.protocolVersion = client.version;
  report.timings = { connectMs, handshakeMs: performance.now() - t1 };

  report.stage = "info";
  report.agent = await withTimeout(client.info(), timeoutMs, "waiting for agent info").catch((e) => {
    client.close();
    throw classify(e, "info");
  });

  report.stage = "ping";
  const rtt = await pingStage(client, count, timeoutMs);
  if (rtt) report.rtt = rtt;
  return client;
}

/** The connect stage: a TCP connection, or a {@link StageError} for refused, timed out or unreachable. */
async function connectStage(address: string, port: number, timeoutMs: number): Promise<ByteStream> {
  try {
    return await dialTcp(address, port, { timeoutMs });
  } catch (e) {
    if (e instanceof DialError && e.stage === "refused") {
      throw new StageError("connect", PROBE_EXIT.refused, "refused", e.message);
    }
    if (e instanceof DialError && e.stage === "timeout") {
      throw new StageError("connect", PROBE_EXIT.timeout, "timeout", e.message);
    }
    throw new StageError("connect", PROBE_EXIT.refused, "unreachable", (e as Error).message);
  }
}

/** The handshake and authenticate stages: an open client, or the {@link StageError} of the stage that failed. */
async function handshakeStage(
  stream: ByteStream,
  key: Uint8Array | undefined,
  insecure: boolean,
  timeoutMs: number,
  report: ProbeReport,
): Promise<AgentClient> {
  try {
    return await withTimeout(
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
}

/** The ping stage: `count` round trips and their spread (none for a count of 0). */
async function pingStage(client: AgentClient, count: number, timeoutMs: number): Promise<ProbeReport["rtt"]> {
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    rtts.push(
      (await withTimeout(client.ping(), timeoutMs, "waiting for a ping reply").catch((e) => {
        client.close();
        throw classify(e, "ping");
      })).rttMs,
    );
  }
  if (rtts.length === 0) return undefined;
  rtts.sort((a, b) => a - b);
  const q = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))];
  return { count: rtts.length, minMs: rtts[0], p50Ms: q(0.5), p99Ms: q(0.99), maxMs: rtts[rtts.length - 1] };
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
    process.stdout.write(safeJson(report) + "\n");
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
  (report.ok ? process.stdout : process.stderr).write(escapeLines(lines.join("\n")) + "\n");
}

/** A listener's TLS connection with the certificate it presented. */
type TlsDialed = Awaited<ReturnType<typeof dialTls>>;

/** `agent probe host:port --tls`: checks a product's listener from this server, as the agent would dial it. */
async function probeListener(host: string, port: number, flags: Flags): Promise<void> {
  const probe = new ListenerProbe(host, port, flags);
  const proxy = probe.proxy();
  const address = proxy ? host : await probe.resolve(); // through a proxy, the proxy resolves the name
  const dialed = await probe.dial(address, proxy);
  await probe.proveKey(dialed);
  probe.succeed();
}

/** The stages of a listener probe, each a method, with the lines and the report they add to. */
class ListenerProbe {
  readonly timeoutMs: number;
  readonly key: Uint8Array | undefined;
  readonly lines: string[];
  readonly report: Record<string, unknown>;

  constructor(readonly host: string, readonly port: number, readonly flags: Flags) {
    this.timeoutMs = Number(flags.timeout ?? 10) * 1000;
    this.key = keyFromFlags(flags);
    this.lines = [`probe listener ${formatHost(host)}:${port} (outbound TLS, as this agent would dial it)`];
    this.report = { ok: false, target: `${formatHost(host)}:${port}` };
  }

  /** Prints what was found and the failed stage, and exits with `code`. */
  fail(code: number, stage: string, errorCode: string, message: string): never {
    this.report.stage = stage;
    this.report.error = { code: errorCode, message };
    this.lines.push(`  FAILED at ${stage}: ${message}`);
    if (this.flags.json) process.stdout.write(safeJson(this.report) + "\n");
    else process.stderr.write(escapeLines(this.lines.join("\n")) + "\n");
    throw new ExitError(code, "");
  }

  /** The HTTP CONNECT proxy to go through (--proxy, else HTTPS_PROXY minus NO_PROXY), or null. */
  proxy(): URL | null {
    let proxy: URL | null;
    try {
      proxy = proxyFor(this.host, process.env, str(this.flags.proxy));
    } catch (e) {
      throw new ExitError(PROBE_EXIT.usage, (e as Error).message);
    }
    if (proxy) {
      this.lines.push(`  proxy          ${proxy.host} (HTTP CONNECT)`);
      this.report.proxy = proxy.host;
    }
    return proxy;
  }

  async resolve(): Promise<string> {
    try {
      return await resolveStage(this.host, this.timeoutMs);
    } catch (e) {
      const s = e as StageError;
      return this.fail(s.exitCode, s.stage, s.code, s.message);
    }
  }

  /** Which certificates to trust: --ca, --fingerprint, and the name it must carry. */
  trust(): { ca?: string; fingerprint?: Uint8Array; serverName: string } {
    const ca = str(this.flags.ca);
    const fingerprint = str(this.flags.fingerprint);
    try {
      return {
        ca: ca ? fs.readFileSync(ca, "utf8") : undefined,
        fingerprint: fingerprint ? parseFingerprint(fingerprint) : undefined,
        serverName: str(this.flags.serverName) ?? this.host,
      };
    } catch (e) {
      throw new ExitError(PROBE_EXIT.usage, (e as Error).message);
    }
  }

  /** The reachable and certificate stages: a TLS connection, with its certificate described. */
  async dial(address: string, proxy: URL | null): Promise<TlsDialed> {
    const trust = this.trust();
    const t0 = performance.now();
    let dialed;
    try {
      dialed = await dialTls(address, this.port, { ...trust, timeoutMs: this.timeoutMs, proxy, reportTrust: true });
    } catch (e) {
      return this.#failDial(e);
    }
    this.lines.push(`  reachable      yes, TLS in ${(performance.now() - t0).toFixed(1)} ms`);
    describeCertificate(dialed.certificate, this.lines, this.report);
    return dialed;
  }

  #failDial(e: unknown): never {
    if (e instanceof ProxyError) return this.fail(PROBE_EXIT.proxyFailed, "proxy", e.stage, e.message);
    if (e instanceof CertificateError) {
      describeCertificate(e.certificate, this.lines, this.report);
      const code = e.reason === "fingerprint-mismatch"
        ? PROBE_EXIT.fingerprintMismatch
        : e.reason === "expired"
        ? PROBE_EXIT.certificateExpired
        : PROBE_EXIT.certificateUntrusted;
      return this.fail(code, "certificate", e.reason, e.message);
    }
    if (e instanceof DialError) {
      const code = e.stage === "timeout" ? PROBE_EXIT.timeout : PROBE_EXIT.refused;
      return this.fail(code, "connect", e.stage, e.message);
    }
    return this.fail(PROBE_EXIT.failed, "connect", "failed", (e as Error).message);
  }

  /** The key stage: whether the listener accepts this server's key (skipped when there is no key). */
  async proveKey(dialed: TlsDialed): Promise<void> {
    if (!this.key) {
      dialed.stream.close();
      this.lines.push("  key            not checked (no key: pass --key-file, or run where the agent's key file is)");
      this.report.ok = true;
      return;
    }
    const id = await keyId(this.key);
    this.report.keyId = id;
    try {
      const frames = await withTimeout(
        proveToListener(
          dialed.stream,
          { id, bytes: this.key },
          runtimeCryptoProvider(),
          dialed.certificate.fingerprint,
        ),
        this.timeoutMs,
        "waiting for the listener's key exchange",
      );
      frames.close();
    } catch (e) {
      dialed.stream.close();
      if (e instanceof KeyRejectedError) return this.fail(PROBE_EXIT.wrongKey, "key", "key-rejected", e.message);
      if (e instanceof TimeoutError) return this.fail(PROBE_EXIT.timeout, "key", "timeout", e.message);
      if (e instanceof ProtocolError) {
        return this.fail(PROBE_EXIT.notAnAgent, "key", "not-a-listener", `not an agent listener: ${e.message}`);
      }
      return this.fail(PROBE_EXIT.failed, "key", "failed", (e as Error).message);
    }
    this.lines.push(`  key            accepted (key id ${id})`);
    this.report.keyAccepted = true;
    this.report.ok = true;
  }

  succeed(): void {
    this.lines.push("  ok");
    if (this.flags.json) process.stdout.write(safeJson(this.report) + "\n");
    else process.stdout.write(escapeLines(this.lines.join("\n")) + "\n");
  }
}

function describeCertificate(c: CertificateReport, lines: string[], report: Record<string, unknown>) {
  const days = Math.floor((Date.parse(c.validTo) - Date.now()) / 86_400_000);
  lines.push(
    `  certificate    ${c.subject}, issued by ${c.issuer}`,
    `  valid          ${c.validFrom} to ${c.validTo} (${
      days >= 0 ? `expires in ${days} days` : `EXPIRED ${-days} days ago`
    })`,
    `  fingerprint    ${formatFingerprint(c.fingerprint)}`,
    `  trusted        ${
      c.trusted ? "yes" : `no: ${c.problem ?? "its fingerprint is not the one given with --fingerprint"}`
    }`,
  );
  report.certificate = { ...c, fingerprint: formatFingerprint(c.fingerprint) };
}
