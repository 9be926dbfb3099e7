/**
 * Every `agent` command in one table: its name and arguments, description,
 * options, examples, usage notes, exit codes, and the action that runs it.
 * cli/main.ts builds the command line from this table alone; a new command is
 * a module in cli/commands/ and an entry here.
 * @module
 */
import type { Flags } from "./flags.ts";
import { CLI_PRODUCT } from "./commands/product.ts";

// Each action loads its command's module only when that command runs: `agent run` and a session's host
// process then start without evaluating the server, TLS, HTTP or config-schema code they never use.

/** One option as cac takes it: `"--key-file <file>"`, its help, and whether it may repeat (a list). */
export interface OptionSpec {
  flags: string;
  help: string;
  /** Parsed as a list of strings (cac's `type: [String]`), so a repeated option keeps every value. */
  list?: boolean;
}

/** One command of the table. */
export interface CommandSpec {
  /** The name and its arguments, as cac takes them: `"cp [...operands]"`. */
  name: string;
  description: string;
  options: OptionSpec[];
  examples?: string[];
  /** The usage line in `agent CMD --help` (cac writes one when this is absent). */
  usage?: string;
  /** Lines of help after the usage line. */
  notes?: string[];
  /** Lines listing the exit codes, after the notes (docs/operations.md has them as tables). */
  exitCodes?: string[];
  /** The exit code of a usage error (2 unless the command's own codes leave 2 to something else). */
  usageExit?: number;
  /** Every word after the first operand (the host) is a command to run, options included, as with ssh. */
  restIsCommand?: boolean;
  /** With --json, a failure prints `{ ok: false, exitCode, error }` on stdout (commands whose success prints JSON there). */
  jsonOnFailure?: boolean;
  /** Runs the command with cac's arguments (the positional ones, then the flags); resolves with its exit code. */
  action: (...args: never[]) => Promise<number | void>;
}

const STATE_DIR_HELP =
  "State directory (env AGENT_STATE_DIR; default /var/lib/agent as root, else ~/.local/state/agent)";
const CONFIG_HELP = "JSON config file (env AGENT_CONFIG; default <state-dir>/config.json if present)";

/** The options of the commands that open a session on a server: `run` and `cp`. */
const SESSION_OPTIONS: OptionSpec[] = [
  { flags: "--key <hex>", help: "The agent's key (visible in `ps`, prefer --key-file)", list: true },
  {
    flags: "--key-file <file>",
    help: "File holding the agent's key (env AGENT_KEY_FILE; default: this machine's agent key, if readable)",
    list: true,
  },
  {
    flags: "--product <name>",
    help: `Open the session for this product (default ${CLI_PRODUCT}; relative remote paths start at its root)`,
    list: true,
  },
  { flags: "--timeout <seconds>", help: "Time allowed to connect (default 10)" },
];

const start: CommandSpec = {
  name: "start",
  description: "Run the agent in the foreground and accept products' connections",
  options: [
    {
      flags: "--host <address>",
      help: "Address to listen on (env AGENT_HOST; default 0.0.0.0, all IPv4 addresses)",
      list: true,
    },
    { flags: "--port <port>", help: "TCP port to listen on (env AGENT_PORT; default 46336, 0 picks a free one)" },
    { flags: "--key <hex>", help: "Accept this key (repeatable; visible in `ps`, prefer --key-file)", list: true },
    {
      flags: "--key-file <file>",
      help: "Accept the keys in this file, one per line, mode 0600 (repeatable; env AGENT_KEY_FILE)",
      list: true,
    },
    { flags: "--config <file>", help: CONFIG_HELP, list: true },
    { flags: "--state-dir <dir>", help: STATE_DIR_HELP, list: true },
    {
      flags: "--handshake-timeout <seconds>",
      help: "Drop a connection that has not finished its handshake in time (default 30)",
    },
    { flags: "--max-handshakes <n>", help: "Handshakes in progress at once before new ones wait (default 100)" },
    {
      flags: "--product <name>",
      help: "Serve sessions for this product only (repeatable; default: any product name)",
      list: true,
    },
    {
      flags: "--idle-timeout <seconds>",
      help: "End a session after this long with no client attached (env AGENT_IDLE_TIMEOUT; default 1800)",
    },
    {
      flags: "--warm-hosts <n>",
      help:
        "Keep an already started host ready for this many recently used products, so their next session opens at once (default 2; 0 turns it off)",
    },
    {
      flags: "--reconnect-grace <seconds>",
      help: "Keep a disconnected client's place this long so it can resume (env AGENT_RECONNECT_GRACE; default 1800)",
    },
    {
      flags: "--connect <host:port>",
      help:
        "Outbound: dial this product listener over TLS and serve it (repeatable); a,b,c names the nodes of one listener cluster, dialled in turn",
      list: true,
    },
    {
      flags: "--ca <file>",
      help: "Outbound: trust listeners signed by the CA(s) in this PEM file instead of the system's",
      list: true,
    },
    {
      flags: "--fingerprint <sha256>",
      help: "Outbound: trust exactly the listener certificate with this SHA-256 fingerprint",
      list: true,
    },
    {
      flags: "--server-name <name>",
      help: "Outbound: the name the listener's certificate must carry (default: the host dialled)",
      list: true,
    },
    { flags: "--no-listen", help: "Do not accept inbound connections (outbound only)" },
    {
      flags: "--proxy <url>",
      help: "Outbound: dial through this HTTP CONNECT proxy (default: HTTPS_PROXY, minus NO_PROXY hosts)",
    },
    {
      flags: "--dial-timeout <seconds>",
      help: "Outbound: how long a dial may take, TCP and the listener's TLS answer; a busy listener keeps " +
        "new connections in line (default 60)",
    },
    {
      flags: "--keepalive <seconds>",
      help: "Outbound: heartbeat interval; 3 silent intervals end the connection (default 15)",
    },
    {
      flags: "--metrics <host:port>",
      help: "Serve /healthz, /readyz and Prometheus /metrics over HTTP here (e.g. 127.0.0.1:9464; off by default)",
    },
    {
      flags: "--check",
      help: "Check the settings and key files, print a summary and exit (0 when they load), like sshd -t",
    },
    {
      flags: "--show-key",
      help: "On first start, print the new key itself (it is printed only to a terminal otherwise)",
    },
    {
      flags: "--log-format <format>",
      help: "text (default), journal (systemd priority prefixes; the default under systemd) or json",
    },
    {
      flags: "--insecure",
      help: "No encryption, no authentication, loopback peers only. For local debugging, never production",
    },
  ],
  examples: [
    "agent start --connect product.example.com:46340 --no-listen   # behind NAT: dial out, listen nowhere",
    "agent start                       # first start creates a key and prints it once",
    "agent start --port 4000 --key-file /etc/agent/keys",
    "agent start --check && systemctl reload agent   # SIGHUP re-reads keys and config; sessions stay",
  ],
  exitCodes: ["0 stopped by SIGTERM or SIGINT, 2 usage or bad settings (the line names which), 1 other"],
  action: async (flags: Flags) => (await import("./commands/start.ts")).startCommand(flags),
};

const status: CommandSpec = {
  name: "status",
  description: "Show the agent running on this machine: connections, handshakes, sessions, outbound targets",
  options: [
    { flags: "--json", help: "Print one JSON object" },
    { flags: "--config <file>", help: CONFIG_HELP, list: true },
    { flags: "--state-dir <dir>", help: STATE_DIR_HELP, list: true },
  ],
  exitCodes: ["0 an agent answered, 3 no agent is running, 2 usage or bad settings, 1 other"],
  action: async (flags: Flags) => (await import("./commands/status.ts")).statusCommand(flags),
};

const upgrade: CommandSpec = {
  name: "upgrade [file]",
  description: "Hand the running agent over to a new program: sessions, processes and transfers carry on",
  options: [
    { flags: "--json", help: "Print one JSON object" },
    { flags: "--config <file>", help: CONFIG_HELP, list: true },
    { flags: "--state-dir <dir>", help: STATE_DIR_HELP, list: true },
  ],
  examples: [
    "agent upgrade ./agent-1.3.0      # install it in place of this one, keep this one as <program>.previous",
    "agent upgrade                    # hand over to the installed program (a package manager replaced it)",
  ],
  notes: [
    "The new program is checked first (`start --check` with the running agent's arguments), then the running",
    "agent stops accepting (connection attempts wait in the listen queue), closes its connections, and hands the",
    "listening socket, every session's host and every unacknowledged reply to the new version. Clients resume",
    "their sessions; nothing is lost or repeated. If the new version does not report itself prepared within",
    "`upgradeTimeoutSeconds` (30 s), the running agent takes everything back and the previous program is restored.",
    "Run it as the agent's user (the control socket is the agent's). `systemctl reload agent` does the same when",
    "the installed program changed, and reloads the configuration otherwise.",
  ],
  exitCodes: [
    "0 the new version serves, 4 it did not take over (the running one carries on), 3 no agent runs, 1 other",
  ],
  action: async (file: string | undefined, flags: Flags) =>
    (await import("./commands/upgrade.ts")).upgradeCommand(file, flags),
};

const keygen: CommandSpec = {
  name: "keygen",
  description: "Create a new 256-bit agent key and print it with its key id, or show a key file's ids",
  options: [
    {
      flags: "--out <file>",
      help: "Write the key to this file (mode 0600; a missing directory is created with mode 0700)",
      list: true,
    },
    { flags: "--force", help: "With --out: replace an existing file (the key in it stops working)" },
    { flags: "--show <file>", help: "Print the key id of each key in this file, without an agent", list: true },
    { flags: "--json", help: "Print one JSON object" },
  ],
  examples: [
    "agent keygen --out /etc/agent/keys && agent start --key-file /etc/agent/keys",
    "agent keygen --show /var/lib/agent/agent.key    # which key id does this file hold?",
  ],
  exitCodes: ["0 ok, 2 usage (--out names an existing file without --force, --show an unreadable one), 1 other"],
  action: async (flags: Flags) => (await import("./commands/keygen.ts")).keygenCommand(flags),
};

const probe: CommandSpec = {
  name: "probe [target]",
  description: "Check an agent from here: resolve, connect, handshake, authenticate, info, ping",
  options: [
    { flags: "--key <hex>", help: "The agent's key", list: true },
    {
      flags: "--key-file <file>",
      help: "File holding the agent's key (default: this machine's agent key, if readable)",
      list: true,
    },
    { flags: "--count <n>", help: "Pings to send (default 5)" },
    { flags: "--timeout <seconds>", help: "Time allowed for each stage (default 10)" },
    { flags: "--json", help: "Print one JSON object" },
    { flags: "--insecure", help: "Allow an agent that runs without encryption (loopback debugging only)" },
    { flags: "--tls", help: "Check a product's outbound listener from this server instead: certificate, trust, key" },
    { flags: "--ca <file>", help: "With --tls: trust the CA(s) in this PEM file", list: true },
    { flags: "--fingerprint <sha256>", help: "With --tls: trust exactly this certificate", list: true },
    { flags: "--server-name <name>", help: "With --tls: the name the certificate must carry", list: true },
    {
      flags: "--proxy <url>",
      help: "With --tls: go through this HTTP CONNECT proxy (default: HTTPS_PROXY, minus NO_PROXY hosts)",
    },
    { flags: "--state-dir <dir>", help: STATE_DIR_HELP, list: true },
  ],
  examples: [
    "agent probe server1.example.com:46336 --key-file ./server1.key",
    "agent probe product.example.com:46340 --tls --ca /etc/agent/product-ca.pem",
  ],
  usage: "probe host[:port] [options]",
  exitCodes: [
    "0 ok, 2 usage, 3 name not found, 4 connection refused, 5 timed out,",
    "6 not an agent, 7 wrong key (with --tls: key not accepted), 8 incompatible version, 9 agent is --insecure,",
    "10 certificate not trusted, 11 certificate expired, 12 fingerprint mismatch, 13 proxy failed, 1 other",
  ],
  action: async (target: string | undefined, flags: Flags) =>
    (await import("./commands/probe.ts")).probeCommand(target, flags),
};

const run: CommandSpec = {
  name: "run [target]",
  description: "Run a program on a server through its agent, as `ssh host cmd` does; exits with its code",
  options: [
    ...SESSION_OPTIONS,
    { flags: "--shell", help: "Run the words after -- as one command line through /bin/sh -c (default: no shell)" },
    {
      flags: "-t, --tty",
      help: "On a pseudo-terminal on the server, as ssh -t: interactive programs, window size, Ctrl-C and Ctrl-Z",
    },
    {
      flags: "--cwd <dir>",
      help: "Working directory on the server; a relative one is under the product's root (the default)",
      list: true,
    },
    { flags: "--env <NAME=VALUE>", help: "Set a variable for the program (repeatable)", list: true },
    {
      flags: "--no-stdin",
      help: "Do not send standard input (it is sent when piped or redirected, never from a terminal)",
    },
    { flags: "--json", help: "Collect the output and print one JSON object: code, signal, exitCode, stdout, stderr" },
  ],
  examples: [
    "agent run web1:46336 --key-file web1.key -- uname -a",
    "tar c site | agent run web1 --key-file web1.key -- tar x -C /srv/www",
    "agent run web1 --key-file web1.key --shell -- 'df -h / | tail -1'",
  ],
  usage: "run HOST[:PORT] [options] [--] program [args...]",
  usageExit: 254,
  restIsCommand: true,
  jsonOnFailure: true,
  notes: [
    "Output streams as it comes. The first Ctrl-C sends SIGINT to the program, a second ends it and the",
    "programs it started, a third stops waiting for the agent.",
  ],
  exitCodes: [
    "the program's own; 128+N when signal N ended it; 127 no such program, 126 not executable;",
    "243 name not found, 244 refused, 245 timed out, 246 not an agent, 247 wrong key, 248 incompatible version,",
    "249 product refused, 250 connection lost, 251 output could not be written here (disk full), 254 usage, 255 other",
  ],
  action: async (target: string | undefined, flags: Flags) =>
    (await import("./commands/run.ts")).runCommand(target, flags),
};

const cp: CommandSpec = {
  name: "cp [...operands]",
  description: "Copy files and directories to or from a server through its agent, as scp does, checked by SHA-256",
  options: [
    ...SESSION_OPTIONS,
    {
      flags: "-r, --recursive",
      help: "Copy directories and everything in them; symlinks are copied as symlinks, modes kept (less the umask)",
    },
    { flags: "-L, --dereference", help: "Copy what symlinks point to instead of the links" },
    { flags: "-p, --preserve", help: "Keep modification times, and modes exactly (not less the umask)" },
    { flags: "--jobs <n>", help: "Files in flight at once when copying many (default 16)" },
    { flags: "--json", help: "Print one JSON object: files, bytes, seconds, and each file's path, size and SHA-256" },
  ],
  examples: [
    "agent cp --key-file web1.key release.tar.gz web1:/srv/app/          # upload into a directory",
    "agent cp --key-file web1.key -r web1:46336:/var/log/app ./logs      # download a tree",
  ],
  usage: "cp [options] SOURCE... DEST",
  jsonOnFailure: true,
  notes: [
    "A remote operand is HOST:PATH or HOST:PORT:PATH ([::1]:PORT:PATH for IPv6); either DEST or every SOURCE is remote.",
    "Each file goes to a temporary name and is renamed once its SHA-256 matches on both ends, so a failed copy",
    "never replaces an existing file. Progress shows on a terminal.",
  ],
  exitCodes: [
    "0 ok, 1 other, 2 usage, 3 name not found, 4 refused, 5 timed out, 6 not an agent, 7 wrong key,",
    "8 incompatible version, 9 product refused, 10 connection lost, 20 remote file not found, 21 is a directory",
    "(add -r), 22 not a directory, 23 permission denied, 24 local file not found, 25 local disk full,",
    "26 checksum mismatch, 27 unsafe listing from the server, 28 some entries not copied (FIFOs, sockets,",
    "devices, dangling links with -L: each named), 130/143/129 interrupted (unfinished files removed)",
  ],
  action: async (operands: string[], flags: Flags) => (await import("./commands/cp.ts")).cpCommand(operands, flags),
};

const update: CommandSpec = {
  name: "update [targets] [file]",
  description: "Push a new agent binary to one or many agents and report each agent's outcome",
  options: [
    { flags: "--key <hex>", help: "The agents' key (visible in `ps`, prefer --key-file)", list: true },
    {
      flags: "--key-file <file>",
      help: "File holding the agents' key; they must give it the update right (env AGENT_KEY_FILE)",
      list: true,
    },
    {
      flags: "--signature <file>",
      help: "The release signature of FILE (agent release sign FILE), for agents configured with release keys",
      list: true,
    },
    { flags: "--canary <n>", help: "Agents updated first, one at a time; if one fails, no other is tried (default 1)" },
    { flags: "--max-in-flight <n>", help: "After the canaries, agents updated at once (default 4)" },
    {
      flags: "--jitter <seconds>",
      help: "Start each agent after the canaries after a random delay up to this (default 0)",
    },
    {
      flags: "--no-stop-on-failure",
      help: "After the canaries, go on past a failed agent (default: stop at the first)",
    },
    { flags: "--timeout <seconds>", help: "Time allowed per agent, sending and taking over included (default 600)" },
    { flags: "--connect-timeout <seconds>", help: "Time allowed to connect to each agent (default 10)" },
    { flags: "--json", help: "Print one JSON object: ok, and each agent's status, version and build or error" },
  ],
  examples: [
    "agent update web1:46336 dist/agent --key-file fleet.key",
    "agent update web1,web2,web3:4000 dist/agent --key-file fleet.key --signature agent.sig --max-in-flight 2",
  ],
  usage: "update HOST[:PORT][,HOST[:PORT]...] FILE [options]",
  notes: [
    "FILE goes to each agent with its SHA-256 (and the signature); the agent checks both, takes over with it",
    "and keeps its sessions, or rolls back and says why. The agents' configuration must give the key the",
    'update right ("rights": ["update"] in "keys", or rights=update in a key file); see docs/operations.md',
    '"Pushed updates". An agent whose key lacks it, or a wrong signature, fails only that agent.',
  ],
  exitCodes: ["0 every agent updated, 3 some agent failed or was not attempted (each named), 2 usage, 1 other"],
  action: async (targets: string | undefined, file: string | undefined, flags: Flags) =>
    (await import("./commands/update.ts")).updateCommand(targets, file, flags),
};

const release: CommandSpec = {
  name: "release [action] [file]",
  description: "Make a release key (keygen), or sign a binary with one (sign FILE), for signed pushed updates",
  options: [
    { flags: "--out <file>", help: "keygen: write the private key here (mode 0600); sign: the signature", list: true },
    { flags: "--force", help: "With --out: replace an existing file" },
    { flags: "--key <file>", help: "sign: the release key file (from agent release keygen --out)", list: true },
    { flags: "--json", help: "Print one JSON object" },
  ],
  examples: [
    'agent release keygen --out ~/release.key     # prints the public key for the agents\' "releaseKeys"',
    "agent release sign dist/agent --key ~/release.key > agent.sig",
  ],
  usage: "release keygen [--out FILE] | release sign FILE --key KEYFILE [--out SIGFILE]",
  notes: [
    "The signature covers the binary's SHA-256; agents with release keys configured take a pushed update",
    'only with a signature by one of them (docs/security.md "Pushed updates").',
  ],
  exitCodes: ["0 ok, 2 usage (no such action, unreadable file, a key file others can read), 1 other"],
  action: async (action: string | undefined, file: string | undefined, flags: Flags) =>
    (await import("./commands/release.ts")).releaseCommand(action, file, flags),
};

const service: CommandSpec = {
  name: "service [action]",
  description: "Install, uninstall or show the agent as a systemd service (install | uninstall | status)",
  options: [
    {
      flags: "--user <name>",
      help: "System user the service runs as; created if missing (default agent)",
      list: true,
    },
    {
      flags: "--binary <path>",
      help: "Where the executable goes; install copies this one there (default /usr/local/bin/agent)",
      list: true,
    },
    {
      flags: "--root <dir>",
      help: "Install into this file tree instead of / (packaging); no users, no systemctl",
      list: true,
    },
    { flags: "--no-start", help: "With install: enable the service but do not start it" },
    { flags: "--json", help: "Print one JSON object" },
  ],
  examples: [
    "sudo agent service install        # user, binary, hardened unit, enabled and started; safe to run again",
    "sudo agent service status         # exit 3 when not installed",
  ],
  usage: "service install|uninstall|status [options]",
  notes: ["The unit text is in docs/operations.md for manual installs."],
  exitCodes: ["0 ok, 2 usage or not root, 3 not installed (status), 1 other"],
  action: async (action: string | undefined, flags: Flags) =>
    (await import("./commands/service.ts")).serviceCommand(action, flags),
};

const completion: CommandSpec = {
  name: "completion [shell]",
  description: "Print a shell completion script for bash or zsh, made from this command table",
  options: [],
  examples: [
    "agent completion bash > /etc/bash_completion.d/agent",
    'agent completion zsh > "${fpath[1]}/_agent"',
  ],
  usage: "completion bash|zsh",
  exitCodes: ["0 ok, 2 no such shell"],
  action: async (shell: string | undefined) => (await import("./commands/completion.ts")).completionCommand(shell),
};

/** The commands, in the order help lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  start,
  status,
  upgrade,
  keygen,
  probe,
  run,
  cp,
  update,
  release,
  service,
  completion,
];

/** The text after the usage line of `agent CMD --help`: what it does, notes, exit codes, indented as cac indents. */
export function helpAfterUsage(spec: CommandSpec): string[] {
  const exitCodes = (spec.exitCodes ?? []).map((line, i) => i === 0 ? `Exit codes: ${line}` : line);
  return [`${spec.description}.`, "", ...spec.notes ?? [], ...exitCodes].map((line) => line ? `  ${line}` : "");
}
