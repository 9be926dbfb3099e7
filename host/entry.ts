/**
 * The host program's entry: what a session's host process runs, as `agent host …`. cli/main.ts
 * hands over to it, and build.ts also bundles it alone (dist/host.cjs, dist/host.mjs, and the
 * executable's host asset), so that each host parses and keeps only its own code: a quarter of
 * the agent's bundle, and some 0.7 MiB less memory per session (docs/operations.md "Memory").
 *
 * Loading this module runs the host with this process's arguments; it exits when the host ends.
 * @module
 */
import { keepYoungGenerationSmall } from "../runtime/heap.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";
import { keepFreedMemory } from "../runtime/malloc.ts";
import { hostMain } from "./main.ts";

/** Exit code when the host fails outside a request (an uncaught error in its own code). */
const EXIT_HOST_FAILED = 70;

keepYoungGenerationSmall();
useUninitializedAllocation();
keepFreedMemory();
const argv = process.argv.slice(2);
// The host's doorbell pipe would keep it alive; it is done when hostMain returns.
hostMain(argv[0] === "host" ? argv.slice(1) : argv).then((code) => process.exit(code), (e) => {
  process.stderr.write(`host failed: ${(e as Error).stack ?? e}\n`);
  process.exit(EXIT_HOST_FAILED);
});
