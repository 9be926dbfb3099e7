/**
 * The floor under every latency figure: a raw TCP echo on loopback, served
 * by its own process, with the same sequential request-and-wait pattern the
 * agent's rows use.
 * @module
 */
import { spawn } from "node:child_process";
import net from "node:net";

const ECHO_SERVER =
  `require("net").createServer((s) => { s.setNoDelay(true); s.pipe(s); }).listen(0, "127.0.0.1", function () { console.log("echo " + this.address().port); });`;

/** Starts the echo server in a separate Node process. */
export async function startEchoServer(): Promise<{ port: number; stop(): void }> {
  const child = spawn(process.execPath, ["-e", ECHO_SERVER], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (d) => {
      text += d;
      const m = /echo (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`the echo server exited (${code}) before listening`)));
  });
  return { port, stop: () => child.kill() };
}

/** `count` sequential round trips of `payload` after `warmup` uncounted ones; milliseconds each. */
export async function echoRtts(port: number, payload: Uint8Array, count: number, warmup = 200): Promise<number[]> {
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.setNoDelay(true);
  await new Promise((r) => socket.once("connect", r));
  const rtts: number[] = [];
  for (let i = 0; i < warmup + count; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const on = (d: Buffer) => {
        got += d.length;
        if (got < payload.length) return;
        socket.off("data", on);
        resolve();
      };
      socket.on("data", on);
      socket.write(payload);
    });
    if (i >= warmup) rtts.push(performance.now() - t0);
  }
  socket.destroy();
  return rtts;
}
