/** What a finished upgrade reports. */
export interface UpgradeOutcome {
  version: string;
  build: string;
  previousBuild: string;
  tookMs: number;
}
/** Applies a checked binary: hand-over to it, rollback on failure (throws an AgentError, code "upgrade-failed"). */
export interface Upgrader {
  upgrade(file: string, requestedBy: string): Promise<UpgradeOutcome>;
}
