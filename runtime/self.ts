/**
 * How this program starts its own host processes: the single executable, a
 * bundle or the sources under Node (with its loader flags), or `deno run -A`.
 * @module
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { denoRunCommand } from "./heap.ts";

/** The `node:sea` module when running as a Node single executable, else null. */
export function seaModule(): {
  isSea(): boolean;
  getAsset(name: string): ArrayBuffer;
  getAsset(name: string, encoding: string): string;
  getRawAsset?(name: string): ArrayBuffer;
} | null {
  if ("Deno" in globalThis) return null;
  try {
    const sea = createRequire(path.join(process.cwd(), "noop.js"))("node:sea");
    return sea.isSea() ? sea : null;
  } catch {
    return null;
  }
}

/**
 * argv prefix that starts a session's host (append `host` and its arguments): this same program,
 * or the host-only bundle beside it where build.ts made one (dist/host.cjs beside dist/agent.cjs,
 * dist/host.mjs beside dist/agent.mjs). The single executable carries both programs and picks
 * one by its first argument. `running` is the script this process runs.
 */
export function hostCommand(running: string = process.argv[1]): string[] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (seaModule()) return [process.execPath];
  const program = path.resolve(running);
  const hostOnly = path.join(path.dirname(program), `host${path.extname(program)}`);
  const script = /^agent\.[cm]js$/.test(path.basename(program)) && fs.existsSync(hostOnly) ? hostOnly : program;
  if (deno) return denoRunCommand(deno.execPath(), script);
  return [process.execPath, ...process.execArgv, script];
}

/** The file this program runs from: the single executable, or the script Node or Deno runs. */
export function programFile(running: string = process.argv[1]): string {
  return seaModule() ? process.execPath : path.resolve(running);
}

/** argv prefix that runs `file` the way this program runs: itself if an executable, else under this runtime. */
export function programCommand(file: string): string[] {
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (seaModule()) return [file];
  if (deno) return denoRunCommand(deno.execPath(), file);
  return [process.execPath, ...process.execArgv, file];
}
