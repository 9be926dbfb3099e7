/**
 * The `agent` command line: the commands of cli/command-table.ts, parsed by cac.
 * Runs from source (`deno run -A cli/main.ts`, `tsx cli/main.ts`) and as the
 * single executable built by build.ts.
 * @module
 */
import { type CAC, cac } from "cac";
import { AgentError } from "../core/errors.ts";
import { ExitError } from "./errors.ts";
import { COMMANDS, type CommandSpec, helpAfterUsage } from "./command-table.ts";
import { asTyped, optionMissingValue } from "./flags.ts";
import { ConfigError } from "../runtime/errors.ts";
import { VERSION } from "../core/version.ts";
import { keepYoungGenerationSmall } from "../runtime/heap.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";
import { escapeControls, escapeLines, safeJson } from "../core/text.ts";

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

/** The table entry of the command `argv` names (`agent help CMD` names CMD), if any. */
function commandOf(argv: readonly string[]): CommandSpec | undefined {
  const name = argv[0] === "help" ? argv[1] : argv[0];
  return COMMANDS.find((c) => c.name.split(" ")[0] === name);
}

/**
 * `run HOST word…`: the first word after the host that is not an option starts the program, as
 * with ssh; a `--` goes before it, so that cac leaves its options (`ls -la`) alone.
 */
function commandAfterHost(argv: string[], valued: readonly string[]): string[] {
  if (argv.includes("--")) return argv;
  let operands = 0;
  for (let i = 1; i < argv.length; i++) {
    if (argv[i].startsWith("-") && argv[i] !== "-") {
      if (valued.includes(argv[i])) i++;
    } else if (++operands === 2) return [...argv.slice(0, i), "--", ...argv.slice(i)];
  }
  return argv;
}

/** Parses `argv` and runs the command it names, or prints help; resolves with the exit code. */
async function runCli(cli: CAC, argv: string[], spec: CommandSpec | undefined): Promise<number> {
  if (argv[0] === "help") {
    if (argv.length > 1 && !spec) throw new ExitError(2, `no command "${escapeControls(argv[1])}" (see agent help)`);
    argv = [...argv.slice(1), "--help"]; // `agent help [command]`, as other tools have it
  }
  const valued = (spec?.options ?? []).filter((o) => o.flags.includes("<")).flatMap((o) => o.flags.split(/[ ,]+/))
    .filter((word) => word.startsWith("-"));
  const missing = optionMissingValue(argv, valued);
  if (missing) throw new ExitError(spec!.usageExit ?? 2, `${missing} needs a value (agent ${argv[0]} --help)`);
  if (spec?.restIsCommand) argv = commandAfterHost(argv, valued);
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

/** Says why a command failed, on stderr, and returns its exit code: its own, its usage code, else 1. */
function reportFailure(e: unknown, spec: CommandSpec | undefined): { code: number; message: string } {
  let code = 1, message = String((e as Error).message ?? e);
  if (e instanceof ExitError) code = e.exitCode;
  else if (e instanceof ConfigError || e instanceof AgentError || (e as Error).name === "CACError") {
    code = spec?.usageExit ?? 2;
    message = asTyped(message);
  }
  if (message) process.stderr.write(`agent: ${escapeLines(message)}\n`);
  return { code, message };
}

/** Parses `argv` (without the runtime and script) and runs the command. Resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const spec = commandOf(argv);
  try {
    return await runCli(buildCli(), argv, spec);
  } catch (e) {
    const { code, message } = reportFailure(e, spec);
    const json = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : argv.length).includes("--json");
    if (json && spec?.jsonOnFailure) {
      process.stdout.write(safeJson({ ok: false, exitCode: code, error: message }) + "\n");
    }
    return code;
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
