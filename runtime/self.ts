/**
 * How this program re-runs itself: the single executable, a bundle or the
 * sources under Node (with its loader flags), or `deno run -A`. The agent
 * uses it to start each session's host process.
 * @module
 */
import { createRequire } from "node:module";
import path from "node:path";
import { DENO_HEAP_FLAGS } from "./heap.ts";

/** The `node:sea` module when running as a Node single executable, else null. */
export function seaModule(): { isSea(): boolean; getAsset(name: string): ArrayBuffer; getRawAsset?(name: string): ArrayBuffer } | null {
  if ("Deno" in globalThis) return null;
  try {
    const sea = createRequire(path.join(process.cwd(), "noop.js"))("node:sea");
    return sea.isSea() ? sea : null;
  } catch {
    return null;
  }
}

/** argv prefix that starts this same program (append the subcommand and its arguments). */
export function selfCommand(): string[] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno) return [deno.execPath(), "run", "-A", ...DENO_HEAP_FLAGS, path.resolve(process.argv[1])];
  if (seaModule()) return [process.execPath];
  return [process.execPath, ...process.execArgv, path.resolve(process.argv[1])];
}
