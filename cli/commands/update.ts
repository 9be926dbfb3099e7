/**
 * `agent update HOST:PORT[,HOST:PORT...] FILE`: pushes FILE, a new agent
 * executable, to each agent with the client library's `rollOutUpdate` (a
 * canary first, then a few at a time, stopping at the first failure), and
 * prints every agent's outcome. docs/operations.md "Pushed updates".
 * @module
 */
import fs from "node:fs";
import { type RolloutResult, rollOutUpdate } from "../../client/fleet.ts";
import type { FleetTarget } from "../../client/fleet.ts";
import { AgentError } from "../../core/errors.ts";
import { escapeControls, safeJson } from "../../core/text.ts";
import { type Flags, str, wholeNumber } from "../flags.ts";
import { ExitError } from "../errors.ts";
import { keyFromFlags, parseAddress } from "./remote.ts";

/** Exit codes: every agent updated; usage; some agent failed or was not attempted. */
const EXIT = { ok: 0, usage: 2, failed: 3 } as const;

export async function updateCommand(targets: string | undefined, file: string | undefined, flags: Flags) {
  if (!targets || !file) {
    throw new ExitError(EXIT.usage, "agent update needs the agents and the file: agent update HOST:PORT[,…] FILE");
  }
  const key = keyOf(flags);
  const fleet: FleetTarget[] = targets.split(",").filter(Boolean).map((t) => ({
    ...parseAddress(t.trim(), EXIT.usage),
    key,
    name: t.trim(),
    timeoutMs: wholeNumber(flags.connectTimeout, "--connect-timeout", 1, 10) * 1000,
  }));
  const binary = readInput(file, "the new binary");
  const signatureFile = str(flags.signature);
  const signature = signatureFile === undefined ? undefined : readInput(signatureFile, "--signature");
  const json = Boolean(flags.json);
  const results = await rollOutUpdate(fleet, binary, {
    canary: wholeNumber(flags.canary, "--canary", 0, 1),
    maxInFlight: wholeNumber(flags.maxInFlight, "--max-in-flight", 1, 4),
    jitterMs: wholeNumber(flags.jitter, "--jitter", 0, 0) * 1000,
    stopOnFailure: flags.stopOnFailure !== false,
    timeoutMs: wholeNumber(flags.timeout, "--timeout", 1, 600) * 1000,
    ...(signature ? { signature: new TextDecoder().decode(signature).trim() } : {}),
    onOutcome: json ? undefined : (r) => process.stdout.write(line(r) + "\n"),
  });
  const updated = results.filter((r) => r.status === "updated").length;
  const failed = results.filter((r) => r.status === "failed").length;
  if (json) {
    process.stdout.write(safeJson({ ok: updated === results.length, agents: results.map(asJson) }) + "\n");
  } else {
    for (const r of results) if (r.status === "not-attempted") process.stdout.write(line(r) + "\n");
    const skipped = results.length - updated - failed;
    process.stdout.write(`${updated} of ${results.length} updated, ${failed} failed, ${skipped} not attempted\n`);
  }
  return updated === results.length ? EXIT.ok : EXIT.failed;
}

function keyOf(flags: Flags): Uint8Array {
  let key: Uint8Array | undefined;
  try {
    key = keyFromFlags(flags);
  } catch (e) {
    throw new ExitError(EXIT.usage, (e as Error).message);
  }
  if (!key) {
    throw new ExitError(EXIT.usage, "no key: pass --key-file FILE (a key the agents give the update right)");
  }
  return key;
}

function readInput(file: string, what: string): Uint8Array {
  try {
    return new Uint8Array(fs.readFileSync(file));
  } catch (e) {
    throw new ExitError(EXIT.usage, `cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

/** One agent's outcome, for a terminal: everything the agent sent escaped. */
function line(r: RolloutResult): string {
  if (r.status === "updated") {
    const v = r.value;
    return `${r.name}  updated to ${escapeControls(v.version)}, build ${escapeControls(v.build.slice(0, 12))} ` +
      `(was ${escapeControls(v.previousBuild.slice(0, 12))}), in ${(r.ms / 1000).toFixed(1)} s`;
  }
  if (r.status === "failed") {
    const code = r.error instanceof AgentError ? `${r.error.code}: ` : "";
    return `${r.name}  failed: ${code}${escapeControls(r.error.message)}`;
  }
  return `${r.name}  ${r.reason}`;
}

function asJson(r: RolloutResult) {
  if (r.status === "updated") return { name: r.name, status: r.status, ...r.value, ms: Math.round(r.ms) };
  if (r.status === "failed") {
    const code = r.error instanceof AgentError ? r.error.code : "failed";
    return { name: r.name, status: r.status, error: { code, message: r.error.message }, ms: Math.round(r.ms) };
  }
  return { name: r.name, status: r.status, reason: r.reason };
}
