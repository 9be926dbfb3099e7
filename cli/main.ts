/**
 * The `agent` command line: start, status, keygen, probe, run, cp, service.
 * Runs from source (`deno run -A cli/main.ts`, `tsx cli/main.ts`) and as the
 * single executable built by build.ts.
 * @module
 */
import { cac, type Command } from "cac";
import { AgentError } from "../core/errors.ts";
import { ExitError } from "./errors.ts";
import { CLI_PRODUCT } from "./commands/product.ts";
import { ConfigError } from "../runtime/errors.ts";
import { VERSION } from "../core/version.ts";
import { keepYoungGenerationSmall } from "../runtime/heap.ts";
import { useUninitializedAllocation } from "../runtime/memory.ts";

// Each command's module loads only when that command runs: `agent run` and a session's host
// process then start without evaluating the server, TLS, HTTP or config-schema code they never use.

const STATE_DIR_HELP =
  "State directory (env AGENT_STATE_DIR; default /var/lib/agent as root, else ~/.local/state/agent)";
const CONFIG_HELP = "JSON config file (env AGENT_CONFIG; default <state-dir>/config.json if present)";

/** The options of the commands that open a session on a server: `run` and `cp`. */
function sessionOptions(command: Command): Command {
  return command
    .option("--key <hex>", "The agent's key (visible in `ps`, prefer --key-file)", { type: [String] })
    .option(
      "--key-file <file>",
      "File holding the agent's key (env AGENT_KEY_FILE; default: this machine's agent key, if readable)",
      { type: [String] },
    )
    .option(
      "--product <name>",
      `Open the session for this product (default ${CLI_PRODUCT}; relative remote paths start at its root)`,
      { type: [String] },
    )
    .option("--timeout <seconds>", "Time allowed to connect (default 10)");
}

/** Parses `argv` (without the runtime and script) and runs the command. Resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const cli = cac("agent");

  cli.command("start", "Run the agent in the foreground and accept products' connections")
    .option("--host <address>", "Address to listen on (env AGENT_HOST; default 0.0.0.0, all IPv4 addresses)", {
      type: [String],
    })
    .option("--port <port>", "TCP port to listen on (env AGENT_PORT; default 46336, 0 picks a free one)")
    .option("--key <hex>", "Accept this key (repeatable; visible in `ps`, prefer --key-file)", { type: [String] })
    .option(
      "--key-file <file>",
      "Accept the keys in this file, one per line, mode 0600 (repeatable; env AGENT_KEY_FILE)",
      { type: [String] },
    )
    .option("--config <file>", CONFIG_HELP, { type: [String] })
    .option("--state-dir <dir>", STATE_DIR_HELP, { type: [String] })
    .option(
      "--handshake-timeout <seconds>",
      "Drop a connection that has not finished its handshake in time (default 30)",
    )
    .option("--max-handshakes <n>", "Handshakes in progress at once before new ones wait (default 100)")
    .option("--product <name>", "Serve sessions for this product only (repeatable; default: any product name)", {
      type: [String],
    })
    .option(
      "--idle-timeout <seconds>",
      "End a session after this long with no client attached (env AGENT_IDLE_TIMEOUT; default 1800)",
    )
    .option(
      "--warm-hosts <n>",
      "Keep an already started host ready for this many recently used products, so their next session opens at once (default 2; 0 turns it off)",
    )
    .option(
      "--reconnect-grace <seconds>",
      "Keep a disconnected client's place this long so it can resume (env AGENT_RECONNECT_GRACE; default 1800)",
    )
    .option("--connect <host:port>", "Outbound: dial this product listener over TLS and serve it (repeatable)", {
      type: [String],
    })
    .option("--ca <file>", "Outbound: trust listeners signed by the CA(s) in this PEM file instead of the system's", {
      type: [String],
    })
    .option(
      "--fingerprint <sha256>",
      "Outbound: trust exactly the listener certificate with this SHA-256 fingerprint",
      { type: [String] },
    )
    .option(
      "--server-name <name>",
      "Outbound: the name the listener's certificate must carry (default: the host dialled)",
      { type: [String] },
    )
    .option("--no-listen", "Do not accept inbound connections (outbound only)")
    .option(
      "--proxy <url>",
      "Outbound: dial through this HTTP CONNECT proxy (default: HTTPS_PROXY, minus NO_PROXY hosts)",
    )
    .option("--keepalive <seconds>", "Outbound: heartbeat interval; 3 silent intervals end the connection (default 15)")
    .option(
      "--metrics <host:port>",
      "Serve /healthz, /readyz and Prometheus /metrics over HTTP here (e.g. 127.0.0.1:9464; off by default)",
    )
    .option("--check", "Check the settings and key files, print a summary and exit (0 when they load), like sshd -t")
    .option("--show-key", "On first start, print the new key itself (it is printed only to a terminal otherwise)")
    .option(
      "--log-format <format>",
      "text (default), journal (systemd priority prefixes; the default under systemd) or json",
    )
    .option(
      "--insecure",
      "No encryption, no authentication, loopback peers only. For local debugging, never production",
    )
    .example("agent start --connect product.example.com:46340 --no-listen   # behind NAT: dial out, listen nowhere")
    .example("agent start                       # first start creates a key and prints it once")
    .example("agent start --port 4000 --key-file /etc/agent/keys")
    .example("agent start --check && systemctl reload agent   # SIGHUP re-reads keys and config; sessions stay")
    .action(async (flags) => (await import("./commands/start.ts")).startCommand(flags));

  cli.command("status", "Show the agent running on this machine: connections, handshakes, sessions, outbound targets")
    .option("--json", "Print one JSON object")
    .option("--config <file>", CONFIG_HELP, { type: [String] })
    .option("--state-dir <dir>", STATE_DIR_HELP, { type: [String] })
    .action(async (flags) => (await import("./commands/status.ts")).statusCommand(flags));

  cli.command("keygen", "Create a new 256-bit agent key and print it with its key id, or show a key file's ids")
    .option("--out <file>", "Write the key to this file (mode 0600; a missing directory is created with mode 0700)", {
      type: [String],
    })
    .option("--force", "With --out: replace an existing file (the key in it stops working)")
    .option("--show <file>", "Print the key id of each key in this file, without an agent", { type: [String] })
    .option("--json", "Print one JSON object")
    .example("agent keygen --out /etc/agent/keys && agent start --key-file /etc/agent/keys")
    .example("agent keygen --show /var/lib/agent/agent.key    # which key id does this file hold?")
    .action(async (flags) => (await import("./commands/keygen.ts")).keygenCommand(flags));

  cli.command("probe [target]", "Check an agent from here: resolve, connect, handshake, authenticate, info, ping")
    .option("--key <hex>", "The agent's key", { type: [String] })
    .option("--key-file <file>", "File holding the agent's key (default: this machine's agent key, if readable)", {
      type: [String],
    })
    .option("--count <n>", "Pings to send (default 5)")
    .option("--timeout <seconds>", "Time allowed for each stage (default 10)")
    .option("--json", "Print one JSON object")
    .option("--insecure", "Allow an agent that runs without encryption (loopback debugging only)")
    .option("--tls", "Check a product's outbound listener from this server instead: certificate, trust, key")
    .option("--ca <file>", "With --tls: trust the CA(s) in this PEM file", { type: [String] })
    .option("--fingerprint <sha256>", "With --tls: trust exactly this certificate", { type: [String] })
    .option("--server-name <name>", "With --tls: the name the certificate must carry", { type: [String] })
    .option(
      "--proxy <url>",
      "With --tls: go through this HTTP CONNECT proxy (default: HTTPS_PROXY, minus NO_PROXY hosts)",
    )
    .option("--state-dir <dir>", STATE_DIR_HELP, { type: [String] })
    .example("agent probe server1.example.com:46336 --key-file ./server1.key")
    .example("agent probe product.example.com:46340 --tls --ca /etc/agent/product-ca.pem")
    .usage(
      "probe host[:port] [options]\n\n  Exit codes: 0 ok, 2 usage, 3 name not found, 4 connection refused, 5 timed out,\n  6 not an agent, 7 wrong key (with --tls: key not accepted), 8 incompatible version, 9 agent is --insecure,\n  10 certificate not trusted, 11 certificate expired, 12 fingerprint mismatch, 13 proxy failed, 1 other",
    )
    .action(async (target, flags) => (await import("./commands/probe.ts")).probeCommand(target, flags));

  sessionOptions(
    cli.command(
      "run [target]",
      "Run a program on a server through its agent, as `ssh host cmd` does; exits with its code",
    ),
  )
    .option("--shell", "Run the words after -- as one command line through /bin/sh -c (default: no shell)")
    .option("--cwd <dir>", "Working directory on the server (default: the product's root)", { type: [String] })
    .option("--env <NAME=VALUE>", "Set a variable for the program (repeatable)", { type: [String] })
    .option("--no-stdin", "Do not send standard input (it is sent when piped or redirected, never from a terminal)")
    .option("--json", "Collect the output and print one JSON object: code, signal, exitCode, stdout, stderr")
    .example("agent run web1:46336 --key-file web1.key -- uname -a")
    .example("tar c site | agent run web1 --key-file web1.key -- tar x -C /srv/www")
    .example("agent run web1 --key-file web1.key --shell -- 'df -h / | tail -1'")
    .usage(
      "run HOST[:PORT] [options] -- program [args...]\n\n" +
        "  Output streams as it comes. The first Ctrl-C sends SIGINT to the program, a second ends it.\n" +
        "  Exit codes: the program's own; 128+N when signal N ended it; 127 no such program, 126 not executable;\n" +
        "  243 name not found, 244 refused, 245 timed out, 246 not an agent, 247 wrong key, 248 incompatible version,\n" +
        "  249 product refused, 250 connection lost, 251 output could not be written here (disk full), 254 usage, 255 other",
    )
    .action(async (target, flags) => (await import("./commands/run.ts")).runCommand(target, flags));

  sessionOptions(
    cli.command(
      "cp [...operands]",
      "Copy files and directories to or from a server through its agent, as scp does, checked by SHA-256",
    ),
  )
    .option("-r, --recursive", "Copy directories and everything in them")
    .option("--jobs <n>", "Files in flight at once when copying many (default 16)")
    .option("--json", "Print one JSON object: files, bytes, seconds, and each file's path, size and SHA-256")
    .example("agent cp --key-file web1.key release.tar.gz web1:/srv/app/          # upload into a directory")
    .example("agent cp --key-file web1.key -r web1:46336:/var/log/app ./logs      # download a tree")
    .usage(
      "cp [options] SOURCE... DEST\n\n" +
        "  A remote operand is HOST:PATH or HOST:PORT:PATH ([::1]:PORT:PATH for IPv6); either DEST or every SOURCE is remote.\n" +
        "  Each file goes to a temporary name and is renamed once its SHA-256 matches on both ends, so a failed copy\n" +
        "  never replaces an existing file. Progress shows on a terminal.\n" +
        "  Exit codes: 0 ok, 1 other, 2 usage, 3 name not found, 4 refused, 5 timed out, 6 not an agent, 7 wrong key,\n" +
        "  8 incompatible version, 9 product refused, 10 connection lost, 20 remote file not found, 21 is a directory\n" +
        "  (add -r), 22 not a directory, 23 permission denied, 24 local file not found, 25 local disk full,\n" +
        "  26 checksum mismatch",
    )
    .action(async (operands, flags) => (await import("./commands/cp.ts")).cpCommand(operands, flags));

  cli.command(
    "service [action]",
    "Install, uninstall or show the agent as a systemd service (install | uninstall | status)",
  )
    .option("--user <name>", "System user the service runs as; created if missing (default agent)", { type: [String] })
    .option(
      "--binary <path>",
      "Where the executable goes; install copies this one there (default /usr/local/bin/agent)",
      { type: [String] },
    )
    .option("--root <dir>", "Install into this file tree instead of / (packaging); no users, no systemctl", {
      type: [String],
    })
    .option("--no-start", "With install: enable the service but do not start it")
    .option("--json", "Print one JSON object")
    .example("sudo agent service install        # user, binary, hardened unit, enabled and started; safe to run again")
    .example("sudo agent service status         # exit 3 when not installed")
    .usage(
      "service install|uninstall|status [options]\n\n  The unit text is in docs/operations.md for manual installs.",
    )
    .action(async (action, flags) => (await import("./commands/service.ts")).serviceCommand(action, flags));

  // cac shows negated flags as "(default: true)", which reads backwards for --no-listen.
  cli.help((sections) => sections.map((s) => ({ ...s, body: s.body.replace(/ \(default: true\)/g, "") })));
  cli.version(VERSION);

  try {
    if (argv[0] === "help") argv = [...argv.slice(1), "--help"]; // `agent help [command]`, as other tools have it
    cli.parse(["agent", "agent", ...argv], { run: false });
    if (!cli.matchedCommand) {
      if (cli.options.help || cli.options.version) return 0;
      if (cli.args.length > 0) {
        process.stderr.write(
          `agent: unknown command "${
            cli.args[0]
          }". Commands: start, status, keygen, probe, run, cp, service (see agent help)\n`,
        );
        return 2;
      }
      cli.outputHelp();
      return 0;
    }
    if (cli.options.help) return 0;
    const result = await cli.runMatchedCommand();
    return typeof result === "number" ? result : 0;
  } catch (e) {
    if (e instanceof ExitError) {
      if (e.message) process.stderr.write(`agent: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ConfigError || e instanceof AgentError || (e as Error).name === "CACError") {
      // cac names unknown options camelCased (--bogusFlag); say them as they were typed.
      const message = (e as Error).message.replace(
        /`--([a-z][A-Za-z0-9]*)`/g,
        (_m, name: string) => `\`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}\``,
      );
      process.stderr.write(`agent: ${message}\n`);
      return 2;
    }
    process.stderr.write(`agent: ${(e as Error).message ?? e}\n`);
    return 1;
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
