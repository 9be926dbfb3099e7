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
import { AgentError } from "../core/errors.ts";
import type { ByteStream } from "../core/wire/stream.ts";
import { connectError, DialError, socketStream } from "./tcp.ts";

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

/** Why a listener's certificate was refused. */
export class CertificateError extends AgentError {
  constructor(readonly reason: "untrusted" | "expired" | "fingerprint-mismatch" | "name-mismatch", message: string, readonly certificate: CertificateReport) {
    super(reason, message);
  }
}

/** Parses a fingerprint written as 64 hex digits, with or without colons. */
export function parseFingerprint(text: string): Uint8Array {
  const bytes = fromHex(text.replace(/:/g, "").trim());
  if (!bytes || bytes.length !== 32) throw new Error(`"${text}" is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  return bytes;
}

/** "AB:CD:…" form, as `openssl x509 -fingerprint -sha256` prints it. */
export function formatFingerprint(bytes: Uint8Array): string {
  return toHex(bytes).toUpperCase().match(/../g)!.join(":");
}

/**
 * Connects with TLS and verifies the listener; throws {@link CertificateError}
 * when it is not to be trusted (nothing has been sent then), or a
 * {@link DialError} when it cannot be reached.
 */
export function dialTls(host: string, port: number, options: TrustOptions & { timeoutMs: number }): Promise<{ stream: ByteStream; certificate: CertificateReport }> {
  return new Promise((resolve, reject) => {
    const serverName = options.serverName ?? host;
    const socket = tls.connect({
      host, port, servername: /^[\d.]+$|:/.test(serverName) ? undefined : serverName,
      ca: options.ca, rejectUnauthorized: false, // the decision is made below, with reasons
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DialError("timeout", `timed out after ${options.timeoutMs} ms waiting for the TLS handshake with ${host}:${port}`));
    }, options.timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      const peer = socket.getPeerCertificate();
      const expired = Date.parse(peer.valid_to) < Date.now() || Date.parse(peer.valid_from) > Date.now();
      const nameError = tls.checkServerIdentity(serverName, peer);
      // Dates first: runtimes word an expired certificate differently, and this says it plainly.
      const problem = expired
        ? `it has expired or is not yet valid (valid ${peer.valid_from} to ${peer.valid_to})`
        : socket.authorizationError
        ? describe(String(socket.authorizationError))
        : nameError
        ? `the certificate is not for "${serverName}"`
        : undefined;
      const certificate: CertificateReport = {
        subject: formatName(peer.subject), issuer: formatName(peer.issuer), validFrom: peer.valid_from, validTo: peer.valid_to,
        fingerprint: parseFingerprint(peer.fingerprint256), trusted: !problem, problem, expired,
      };
      const refuse = (reason: CertificateError["reason"], message: string) => {
        socket.destroy();
        reject(new CertificateError(reason, message, certificate));
      };
      if (options.fingerprint) {
        if (toHex(options.fingerprint) !== toHex(certificate.fingerprint)) {
          return refuse("fingerprint-mismatch", `certificate fingerprint mismatch: the listener presented ${formatFingerprint(certificate.fingerprint)}, expected ${formatFingerprint(options.fingerprint)}`);
        }
        if (expired) return refuse("expired", `the pinned certificate is outside its validity (${peer.valid_from} to ${peer.valid_to})`);
      } else if (problem) {
        const reason = expired ? "expired" : nameError && !socket.authorizationError ? "name-mismatch" : "untrusted";
        return refuse(reason, `the listener's certificate is not trusted: ${problem} (subject ${certificate.subject}; pass --ca FILE or pin it with --fingerprint ${formatFingerprint(certificate.fingerprint)})`);
      }
      resolve({ stream: socketStream(socket), certificate });
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(e, host, port));
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
