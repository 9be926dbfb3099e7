/** Test certificates, made fresh by each run (selfsigned, pure JS). */
import crypto from "node:crypto";
import { generate } from "selfsigned";

const SAN = { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] };

export interface TestCert {
  cert: string;
  key: string;
  /** "AB:CD:…" SHA-256 fingerprint. */
  fingerprint: string;
}

function finish(p: { cert: string; private: string }): TestCert {
  return { cert: p.cert, key: p.private, fingerprint: new crypto.X509Certificate(p.cert).fingerprint256 };
}

/**
 * A common name as selfsigned's name parser takes it: plain text, or else a DER UTF8String in hex ("#0c…"),
 * which carries control characters and any Unicode through unchanged (the parser would drop or mangle them).
 */
function commonName(cn: string): string {
  if (/^[A-Za-z0-9 .:_-]*$/.test(cn)) return cn;
  const bytes = new TextEncoder().encode(cn);
  if (bytes.length > 127) throw new Error("commonName: at most 127 bytes in this short form");
  return `#0c${bytes.length.toString(16).padStart(2, "0")}${Buffer.from(bytes).toString("hex")}`;
}

/** A self-signed certificate for 127.0.0.1 / localhost; `expired` makes one that ended yesterday. */
export async function selfSigned(options: { cn?: string; expired?: boolean } = {}): Promise<TestCert> {
  const day = 86_400_000;
  return finish(
    await generate([{ name: "commonName", value: commonName(options.cn ?? "listener.test") }], {
      keyType: "ec",
      algorithm: "sha256",
      extensions: [SAN],
      ...(options.expired
        ? { notBeforeDate: new Date(Date.now() - 10 * day), notAfterDate: new Date(Date.now() - day) }
        : {}),
    } as never),
  );
}

/** A CA and a certificate for 127.0.0.1 / localhost signed by it. */
export async function caSigned(): Promise<TestCert & { ca: string }> {
  const ca = await generate([{ name: "commonName", value: "Test Product CA" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [{ name: "basicConstraints", cA: true, critical: true }, {
      name: "keyUsage",
      keyCertSign: true,
      cRLSign: true,
      critical: true,
    }],
  } as never);
  const leaf = await generate([{ name: "commonName", value: "listener.test" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [SAN],
    ca: { key: ca.private, cert: ca.cert },
  } as never);
  return { ...finish(leaf), ca: ca.cert };
}
