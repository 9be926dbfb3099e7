/**
 * The `agent` command line: the commands of cli/command-table.ts, parsed by cac.
 * Runs from source (`deno run -A cli/main.ts`, `tsx cli/main.ts`) and as the
 * single executable built by build.ts.
 * @module
 */
import { type CAC, cac } from "cac";
import { AgentError } from "../core/errors.ts";
import { ExitError } from "./errors.ts";
import { COMMANDS, helpAfterUsage } from "./command-table.ts";
import { asTyped, optionMissingValue } from "./flags.ts";
import { ConfigError } from "../runtime/errors.ts";
import { VERSION } from "../core/version.ts";
import { keepYoungGenerationSmall } from "../runtime/heap.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";
import { escapeControls, escapeLines } from "../core/text.ts";

/** The `agent` command line, built from {@link COMMANDS}. */
function buildCli(): CAC {
  const cli = cac("agent");
  for (const spec of COMMANDS) {
    const command = cli.command(spec.name, spec.description);
    for (const option of spec.options) {
      command.option(option.flags, option.help, option.list ? { type: [String] } : undefined);
    }
    for (const example of spec.examples ?? []) command.example(example);
    const after = helpAfterUsage(spec);
    if (spec.usage || after.length > 0) {
      command.usage([spec.usage ?? spec.name, ...(after.length > 0 ? ["", ...after] : [])].join("\n"));
    }
    command.action(spec.action as (...args: unknown[]) => Promise<number | void>);
  }
  // cac shows negated flags as "(default: true)", which reads backwards for --no-listen.
  cli.help((sections) => sections.map((s) => ({ ...s, body: s.body.replace(/ \(default: true\)/g, "") })));
  cli.version(VERSION);
  return cli;
}

/** Parses `argv` and runs the command it names, or prints help; resolves with the exit code. */
async function runCli(cli: CAC, argv: string[]): Promise<number> {
  if (argv[0] === "help") argv = [...argv.slice(1), "--help"]; // `agent help [command]`, as other tools have it
  const spec = COMMANDS.find((c) => c.name.split(" ")[0] === argv[0]);
  const valued = (spec?.options ?? []).filter((o) => o.flags.includes("<")).flatMap((o) => o.flags.split(/[ ,]+/))
    .filter((word) => word.startsWith("-"));
  const missing = optionMissingValue(argv, valued);
  if (missing) throw new ExitError(spec!.usageExit ?? 2, `${missing} needs a value (agent ${argv[0]} --help)`);
  cli.parse(["agent", "agent", ...argv], { run: false });
  if (!cli.matchedCommand) {
    if (cli.options.help || cli.options.version) return 0;
    if (cli.args.length > 0) {
      const names = COMMANDS.map((c) => c.name.split(" ")[0]).join(", ");
      process.stderr.write(
        `agent: unknown command "${escapeControls(cli.args[0])}". Commands: ${names} (see agent help)\n`,
      );
      return 2;
    }
    cli.outputHelp();
    return 0;
  }
  if (cli.options.help) return 0;
  const result = await cli.runMatchedCommand();
  return typeof result === "number" ? result : 0;
}

/** Says why a command failed, on stderr, and returns its exit code: its own, 2 for usage, else 1. */
function reportFailure(e: unknown): number {
  if (e instanceof ExitError) {
    if (e.message) process.stderr.write(`agent: ${escapeLines(e.message)}\n`);
    return e.exitCode;
  }
  if (e instanceof ConfigError || e instanceof AgentError || (e as Error).name === "CACError") {
    process.stderr.write(`agent: ${escapeLines(asTyped((e as Error).message))}\n`);
    return 2;
  }
  process.stderr.write(`agent: ${escapeLines(String((e as Error).message ?? e))}\n`);
  return 1;
}

/** Parses `argv` (without the runtime and script) and runs the command. Resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await runCli(buildCli(), argv);
  } catch (e) {
    return reportFailure(e);
  }
}

// No top-level await: the SEA bundle is CommonJS. `host` is internal, so it stays out of cac's help.
const argv = process.argv.slice(2);
if (argv[0] === "host") {
  import("../host/entry.ts"); // sets up the host's heap and allocation, and runs it with these arguments
} else {
  keepYoungGenerationSmall();
  useUninitializedAllocation();
  main(argv).then((code) => {
    process.exitCode = code;
    if (code !== 0) process.exit(code);
  });
}
