/**
 * The upgrade's outcome and interface, shared by the control socket and the pushed update.
 * @module
 */

/** What a finished upgrade reports. */
export interface UpgradeOutcome {
  version: string;
  build: string;
  previousBuild: string;
  tookMs: number;
}

/**
 * Applies a checked binary: hand-over to it, rollback on failure (throws an AgentError, code "upgrade-failed").
 * `keep` is the connection that asked: it stays open through the hand-over for the answer.
 */
export interface Upgrader {
  upgrade(file: string, requestedBy: string, keep?: object): Promise<UpgradeOutcome>;
  /** After a successful upgrade, once its answer is written: this process may go now, not after its linger. */
  leaveNow?(): void;
}
