/**
 * A real nats-server on a loopback port, for the listener-cluster tests and bench. It can be
 * stopped and started again on the same port (the engine going away and coming back).
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { closedPort } from "./agent-process.ts";

/** Where nats-server is, or null (CI installs it: .ci/run). */
export function natsServerPath(): string | null {
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) {
    if (spawnSync(p, ["--version"]).status === 0) return p;
  }
  return null;
}

/**
 * Whether the cluster tests can run: nats-server is there, or this is CI, where its absence
 * must fail the run instead of skipping it. Prints why when skipping.
 */
export function natsAvailable(what: string): boolean {
  if (natsServerPath() || process.env.CI) return true;
  console.log(`\n  (${what} skipped: nats-server not installed; apt-get install nats-server)`);
  return false;
}

export class NatsServer {
  #child: ChildProcess | null = null;
  private constructor(readonly port: number) {}

  static async start(): Promise<NatsServer> {
    const server = new NatsServer(await closedPort());
    await server.resume();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts it (again) on its port and waits until it accepts connections. */
  async resume(): Promise<void> {
    const bin = natsServerPath();
    if (!bin) throw new Error("nats-server is not installed (apt-get install nats-server)");
    const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(this.port)], { stdio: ["ignore", "ignore", "pipe"] });
    this.#child = child;
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`nats-server did not start on ${this.port}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Kills it (SIGKILL: the engine vanishes, no goodbye to its clients). */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
    s.on("error", () => resolve(false));
  });
}
