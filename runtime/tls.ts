/**
 * TLS for outbound mode: the agent's dialer, which decides trust itself
 * (system roots, a CA file, or a pinned SHA-256 fingerprint) and reports
 * exactly why a certificate was refused; and the listener for product code.
 *
 * @example
 * ```ts
 * const { stream, certificate } = await dialTls("product.example.com", 46340, { timeoutMs: 10_000, fingerprint });
 * ```
 * @module
 */
import tls from "node:tls";
import { fromHex, toHex } from "../core/bytes.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { CertificateError, DialError, VerifyError } from "./errors.ts";
import { connectError, socketStream } from "./tcp.ts";
import { connectThroughProxy } from "./proxy.ts";

/** What the listener presented. */
export interface CertificateReport {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  /** SHA-256 of the DER certificate. */
  fingerprint: Uint8Array;
  /** Trusted by the CA file or system roots, with the name matching. */
  trusted: boolean;
  /** Why it is not trusted, when it is not. */
  problem?: string;
  expired: boolean;
}

/** How to decide trust. */
export interface TrustOptions {
  /** PEM of the CA(s) to trust instead of the system's roots. */
  ca?: string;
  /** Accept exactly this certificate (SHA-256 of its DER), whoever issued it. */
  fingerprint?: Uint8Array;
  /** Name to verify and to send as SNI; the host by default. */
  serverName?: string;
}

/**
 * One client context per CA setting, kept for the process: building one costs about 0.2 ms of CPU
 * (measured), on every dial, and a fleet redials all at once after a listener restart. Deno's
 * Node layer takes `ca` itself, so the option is passed beside the context too.
 */
const clientContexts = new Map<string | undefined, tls.SecureContext>();

function clientContext(ca: string | undefined): tls.SecureContext {
  let context = clientContexts.get(ca);
  if (!context) {
    context = tls.createSecureContext({ ca });
    clientContexts.set(ca, context);
  }
  return context;
}

/** Parses a fingerprint written as 64 hex digits, with or without colons. */
export function parseFingerprint(text: string): Uint8Array {
  const bytes = fromHex(text.replace(/:/g, "").trim());
  if (!bytes || bytes.length !== 32) {
    throw new Error(`"${text}" is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  }
  return bytes;
}

/** "AB:CD:…" form, as `openssl x509 -fingerprint -sha256` prints it. */
export function formatFingerprint(bytes: Uint8Array): string {
  return toHex(bytes).toUpperCase().match(/../g)!.join(":");
}

/**
 * Connects with TLS and verifies the listener; throws {@link CertificateError}
 * when it is not to be trusted (nothing has been sent then), or a
 * {@link DialError} (or ProxyError) when it cannot be reached.
 *
 * Trust is decided by the TLS library enforcing it (`rejectUnauthorized`),
 * never by reading `authorized` after the fact: Deno's Node compatibility
 * layer reports most connections to an untrusted certificate as authorized.
 * When the library refuses, a second connection, on which nothing is sent,
 * fetches the certificate so the error can say what was presented.
 */
export async function dialTls(
  host: string,
  port: number,
  options: TrustOptions & { timeoutMs: number; proxy?: URL | null; reportTrust?: boolean; signal?: AbortSignal },
): Promise<{ stream: ByteStream; certificate: CertificateReport }> {
  const serverName = options.serverName ?? host;
  const pinned = options.fingerprint !== undefined;
  let refusal: NodeJS.ErrnoException;
  try {
    // Pinned: the fingerprint alone decides, whoever issued the certificate.
    const { socket, certificate } = await handshake(host, port, options, serverName, !pinned);
    if (pinned) {
      const refuse = (reason: CertificateError["reason"], message: string) => {
        socket.destroy();
        throw new CertificateError(reason, message, certificate);
      };
      if (toHex(options.fingerprint!) !== toHex(certificate.fingerprint)) {
        refuse(
          "fingerprint-mismatch",
          `certificate fingerprint mismatch: the listener presented ${
            formatFingerprint(certificate.fingerprint)
          }, expected ${formatFingerprint(options.fingerprint!)}`,
        );
      }
      if (certificate.expired) {
        refuse(
          "expired",
          `the pinned certificate is outside its validity (${certificate.validFrom} to ${certificate.validTo})`,
        );
      }
      // For a report (probe): would the CA file or system roots trust it too? A separate handshake says.
      if (options.reportTrust) {
        return {
          stream: socketStream(socket),
          certificate: await caVerdict(host, port, options, serverName, certificate),
        };
      }
    }
    return { stream: socketStream(socket), certificate: { ...certificate, trusted: true } };
  } catch (e) {
    if (!(e instanceof VerifyError)) throw e;
    refusal = e.refusal;
  }
  // Refused by the TLS library: look at the certificate once more, only to report it.
  const { socket, certificate } = await handshake(host, port, options, serverName, false);
  socket.destroy();
  const { reason, problem, expired } = whyRefused(refusal, certificate, serverName);
  throw new CertificateError(
    reason,
    `the listener's certificate is not trusted: ${problem} (subject ${certificate.subject}; pass --ca FILE or pin it with --fingerprint ${
      formatFingerprint(certificate.fingerprint)
    })`,
    { ...certificate, trusted: false, problem, expired },
    { cause: refusal },
  );
}

/** Why the TLS library refused `certificate`, in words. */
function whyRefused(refusal: NodeJS.ErrnoException, certificate: CertificateReport, serverName: string) {
  const code = refusal.code ?? "";
  const nameError = code === "ERR_TLS_CERT_ALTNAME_INVALID";
  const expired = certificate.expired || code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID";
  // Dates first: runtimes word an expired certificate differently, and this says it plainly.
  const problem = expired
    ? `it has expired or is not yet valid (valid ${certificate.validFrom} to ${certificate.validTo})`
    : nameError
    ? `the certificate is not for "${serverName}"`
    : describe(code || refusal.message);
  const reason: CertificateError["reason"] = expired ? "expired" : nameError ? "name-mismatch" : "untrusted";
  return { reason, problem, expired };
}

/** `certificate` with whether the CA file or system roots (and the name) would trust it, by a verifying handshake. */
async function caVerdict(
  host: string,
  port: number,
  options: TrustOptions & { timeoutMs: number; proxy?: URL | null },
  serverName: string,
  certificate: CertificateReport,
): Promise<CertificateReport> {
  try {
    (await handshake(host, port, options, serverName, true)).socket.destroy();
    return { ...certificate, trusted: true };
  } catch (e) {
    if (!(e instanceof VerifyError)) throw e;
    const { problem } = whyRefused(e.refusal, certificate, serverName);
    return { ...certificate, trusted: false, problem };
  }
}

/** Error codes with which a TLS library refuses a certificate (as opposed to failing to connect). */
const CERTIFICATE_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)|ALTNAME|HOSTNAME|ISSUER|SIGNATURE/;

/** One TLS handshake (through the proxy if any); `verify` makes the library enforce trust and the name. */
async function handshake(
  host: string,
  port: number,
  options: TrustOptions & { timeoutMs: number; proxy?: URL | null; signal?: AbortSignal },
  serverName: string,
  verify: boolean,
) {
  // Through a proxy, TLS runs end to end inside the CONNECT tunnel: the proxy never sees the certificate checks.
  const tunnel = options.proxy
    ? await connectThroughProxy(options.proxy, host, port, options.timeoutMs, options.signal)
    : undefined;
  return await new Promise<{ socket: tls.TLSSocket; certificate: CertificateReport }>((resolve, reject) => {
    const ip = /^[\d.]+$|:/.test(serverName);
    const socket = tls.connect({
      ...(tunnel ? { socket: tunnel } : { host, port }),
      servername: ip ? undefined : serverName,
      ca: options.ca,
      secureContext: clientContext(options.ca),
      rejectUnauthorized: verify,
      checkServerIdentity: verify ? (_h, cert) => tls.checkServerIdentity(serverName, cert) : () => undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new DialError(
          "timeout",
          `timed out after ${options.timeoutMs} ms waiting for the TLS handshake with ${host}:${port}`,
        ),
      );
    }, options.timeoutMs);
    // The agent stopping (or reloading) does not wait out a dial that can take a minute.
    const stop = () => {
      clearTimeout(timer);
      socket.destroy();
      reject(new DialError("agent-stopped", `the dial to ${host}:${port} was stopped`));
    };
    if (options.signal?.aborted) stop();
    options.signal?.addEventListener("abort", stop, { once: true });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", stop);
      socket.removeAllListeners("error");
      const peer = socket.getPeerCertificate();
      resolve({
        socket,
        certificate: {
          subject: formatName(peer.subject),
          issuer: formatName(peer.issuer),
          validFrom: peer.valid_from,
          validTo: peer.valid_to,
          fingerprint: parseFingerprint(peer.fingerprint256),
          trusted: false,
          expired: Date.parse(peer.valid_to) < Date.now() || Date.parse(peer.valid_from) > Date.now(),
        },
      });
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", stop);
      socket.destroy();
      if (verify && CERTIFICATE_CODES.test(e.code ?? e.message)) reject(new VerifyError(e));
      else reject(connectError(e, host, port));
    });
  });
}

function describe(code: string): string {
  const known: Record<string, string> = {
    DEPTH_ZERO_SELF_SIGNED_CERT: "it is self-signed",
    SELF_SIGNED_CERT_IN_CHAIN: "it chains to a self-signed certificate that is not trusted",
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: "its issuer is not trusted",
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "its issuer is not trusted",
    CERT_HAS_EXPIRED: "it has expired",
    CERT_NOT_YET_VALID: "it is not yet valid",
  };
  return known[code] ?? code;
}

function formatName(name: Partial<Record<string, string | string[]>> | undefined): string {
  if (!name) return "";
  return Object.entries(name).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`).join(", ");
}
