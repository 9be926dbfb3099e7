/**
 * The agent's side of one connection, in this process: a real
 * {@link ClientConnection} over frames whose opening is done, with a session
 * manager that starts no host until asked to.
 * @module
 */
import { ClientConnection } from "../../agent/connection.ts";
import { SessionManager, sessionSettings } from "../../agent/sessions.ts";
import type { FrameStream } from "../../core/secure/frame-stream.ts";
import { silent } from "../../runtime/log.ts";
import { tempDir } from "./agent-process.ts";

/** Serves `frames` as an agent started `upSeconds` ago; resolves as {@link ClientConnection.serve} does. */
export function serveAgentConnection(frames: FrameStream, upSeconds = 0): Promise<string | null> {
  const config = {
    stateDir: tempDir(),
    products: null,
    idleTimeoutSeconds: 60,
    reconnectGraceSeconds: 0,
    replayLimitMiB: 16,
    processGraceSeconds: 1,
    warmHosts: 0,
  };
  const run = { runDir: tempDir(), hostCommand: [], log: silent };
  const sessions = new SessionManager(sessionSettings(config, run));
  return new ClientConnection(frames, "test", sessions, Date.now() - upSeconds * 1000).serve();
}
