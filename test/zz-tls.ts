import tls from "node:tls";
import { caSigned, selfSigned } from "./helpers/certs.ts";
const self = await selfSigned(), signed = await caSigned();
async function trial(serverCert: { cert: string; key: string }, ca: string | undefined, n: number) {
  const server = tls.createServer({ cert: serverCert.cert, key: serverCert.key }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: "127.0.0.1", port, ca, rejectUnauthorized: true, servername: "localhost" });
      s.once("secureConnect", () => { seen.ok = (seen.ok ?? 0) + 1; s.destroy(); resolve(); });
      s.once("error", (e: NodeJS.ErrnoException) => { const k = `error ${e.code ?? e.message}`; seen[k] = (seen[k] ?? 0) + 1; resolve(); });
    });
  }
  server.close();
  return JSON.stringify(seen);
}
console.log("self-signed, no ca:", await trial(self, undefined, 30));
console.log("self-signed, ca=itself:", await trial(self, self.cert, 30));
console.log("ca-signed, ca=ca:", await trial(signed, signed.ca, 30));
console.log("ca-signed, no ca:", await trial(signed, undefined, 30));
