/**
 * `agent completion bash|zsh`: a completion script made from the command table, so that it
 * offers exactly the commands and options this build has.
 * @module
 */
import { COMMANDS } from "../command-table.ts";
import { ExitError } from "../errors.ts";

/** Each command's name and its options' spellings (`-r`, `--recursive`, …). */
function table(): Array<{ name: string; options: string[] }> {
  return COMMANDS.map((c) => ({
    name: c.name.split(" ")[0],
    options: [...c.options.flatMap((o) => o.flags.split(/[ ,]+/).filter((w) => w.startsWith("-"))), "--help"],
  }));
}

function bash(): string {
  const cases = table().map((c) => `    ${c.name}) options="${c.options.join(" ")}" ;;`).join("\n");
  return `# bash completion for agent (agent completion bash)
_agent() {
  local current=\${COMP_WORDS[COMP_CWORD]} options=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${table().map((c) => c.name).join(" ")} help" -- "$current"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  if [[ "$current" == -* ]]; then COMPREPLY=($(compgen -W "$options" -- "$current")); else COMPREPLY=($(compgen -f -- "$current")); fi
}
complete -o default -F _agent agent
`;
}

function zsh(): string {
  const commands = COMMANDS.map((c) => `    '${c.name.split(" ")[0]}:${c.description.replace(/'/g, "'\\''")}'`).join(
    "\n",
  );
  const cases = table().map((c) => `    ${c.name}) _values 'option' ${c.options.map((o) => `'${o}'`).join(" ")} ;;`)
    .join("\n");
  return `#compdef agent
# zsh completion for agent (agent completion zsh)
_agent() {
  local -a commands
  commands=(
${commands}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  if [[ $words[CURRENT] != -* ]]; then _files; return; fi
  case $words[2] in
${cases}
  esac
}
_agent "$@"
`;
}

export function completionCommand(shell: string | undefined): void {
  if (shell !== "bash" && shell !== "zsh") {
    throw new ExitError(
      2,
      `completion needs a shell: bash or zsh (not ${shell === undefined ? "nothing" : `"${shell}"`})`,
    );
  }
  process.stdout.write(shell === "bash" ? bash() : zsh());
}
