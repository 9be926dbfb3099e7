/**
 * `npm test`: runs every suite under Node (via tsx) and then under Deno, on
 * the already built dist/, and closes with one line `N passed, N failed`.
 * @module
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const runs: Array<[string, string, string[]]> = [
  ["node", process.execPath, ["--import", "tsx", "test/all.ts"]],
  ["deno", path.join(root, "node_modules/.bin/deno"), ["run", "-A", "test/all.ts"]],
];

let passed = 0, failed = 0;
for (const [name, cmd, args] of runs) {
  console.log(`\n=== ${name} ===`);
  const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn(cmd, args, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
    });
    let text = "";
    child.stdout.on("data", (d) => {
      text += d;
      process.stdout.write(d);
    });
    child.stderr.on("data", (d) => process.stderr.write(d));
    child.on("close", (code) => resolve({ code, text }));
  });
  const total = Number(/Total:\s+(\d+)/.exec(output.text)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(output.text)?.[1] ?? 0);
  const skipped = Number(/Skipped:\s+(\d+)/.exec(output.text)?.[1] ?? 0);
  passed += ok;
  failed += total - ok - skipped;
  if (output.code !== 0 && total - ok - skipped === 0) failed += 1; // crashed before or after counting
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
