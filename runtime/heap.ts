/**
 * Keeps V8's young generation at its initial 1 MiB semi-spaces. Under load V8
 * grows them to 16 MiB each and never gives them back, so the agent and every
 * session's host would carry the peak of their busiest second for the rest of
 * their lives. A small young generation costs more frequent scavenges, and a
 * scavenge costs what survives it, which in a request loop is little.
 *
 * Node applies the limit at run time; Deno reads V8 flags only at launch, so
 * a Deno process is started with {@link DENO_HEAP_FLAGS} ({@link denoRunCommand}).
 *
 * @example
 * ```ts
 * keepYoungGenerationSmall(); // first thing in a long-lived process
 * denoRunCommand("deno", "dist/agent.mjs"); // ["deno", "run", "-A", "--v8-flags=--max-semi-space-size=1", "dist/agent.mjs"]
 * ```
 * @module
 */
import v8 from "node:v8";

/** The `deno run` flag with the same effect, for a Deno process this program starts. */
export const DENO_HEAP_FLAGS = ["--v8-flags=--max-semi-space-size=1"];

/** The command that runs `script` as a long-lived Deno process: all permissions, {@link DENO_HEAP_FLAGS}. */
export function denoRunCommand(deno: string, script: string): string[] {
  return [deno, "run", "-A", ...DENO_HEAP_FLAGS, script];
}

/** Stops the young generation growing past its initial size (Node; a no-op on Deno, see the module note). */
export function keepYoungGenerationSmall(): void {
  // --max-semi-space-size is read only when the heap is set up; the growth factor is read at each growth.
  if (!("Deno" in globalThis)) v8.setFlagsFromString("--semi-space-growth-factor=1");
}
