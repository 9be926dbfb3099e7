/**
 * `agent service install|uninstall|status`: the agent as a systemd service.
 * @module
 */
import { type Flags, str } from "../flags.ts";
import { DEFAULT_BINARY, DEFAULT_USER, installService, serviceStatus, uninstallService } from "../../agent/service.ts";
import { seaModule } from "../../runtime/self.ts";
import { ExitError } from "../errors.ts";

export function serviceCommand(action: string | undefined, flags: Flags): void {
  const options = {
    user: str(flags.user) ?? DEFAULT_USER,
    binary: str(flags.binary) ?? DEFAULT_BINARY,
    root: str(flags.root) ?? "/",
  };
  if (options.root === "/" && process.getuid?.() !== 0) {
    throw new ExitError(
      2,
      "agent service needs root (sudo agent service …), or --root DIR to install into another tree",
    );
  }
  let report: string[];
  let code = 0;
  if (action === "install") {
    report = installService({ ...options, start: flags.start !== false, self: seaModule() ? process.execPath : null });
  } else if (action === "uninstall") {
    report = uninstallService(options);
  } else if (action === "status") {
    const status = serviceStatus(options);
    report = status.report;
    code = status.installed ? 0 : 3;
  } else {
    throw new ExitError(
      2,
      `agent service needs an action: install, uninstall or status (not ${
        action === undefined ? "nothing" : `"${action}"`
      })`,
    );
  }
  if (flags.json) process.stdout.write(JSON.stringify({ action, report }) + "\n");
  else process.stdout.write(report.map((l) => `  ${l}\n`).join(""));
  if (code !== 0) throw new ExitError(code, "");
}
