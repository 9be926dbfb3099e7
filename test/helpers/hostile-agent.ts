// The agent run from its sources, as a compromised server: its hosts answer every files.list with the
// entries in HOSTILE_LISTING (JSON), whatever is on disk. `agent start` runs hosts through this same file.
// The agent gives its hosts a clean environment (docs/security.md, "Least privilege") in which
// XDG_CACHE_HOME passes, so the listing reaches them as a file in a directory named so.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { FilesService } from "../../host/services/files.ts";
import { ServiceCode } from "../../core/session/contract.ts";

const LISTING_FILE = "hostile-listing.json";

if (process.argv[2] !== "host" && process.env.HOSTILE_LISTING) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-hostile-"));
  fs.writeFileSync(path.join(dir, LISTING_FILE), process.env.HOSTILE_LISTING);
  process.env.XDG_CACHE_HOME = dir;
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
}

const listingFile = process.env.XDG_CACHE_HOME ? path.join(process.env.XDG_CACHE_HOME, LISTING_FILE) : "";
if (process.argv[2] === "host" && listingFile && fs.existsSync(listingFile)) {
  const listing = fs.readFileSync(listingFile, "utf8");
  const handlers = FilesService.prototype.handlers;
  FilesService.prototype.handlers = function () {
    return { ...handlers.call(this), [ServiceCode.FileList]: () => ({ fields: { entries: JSON.parse(listing) } }) };
  };
}
await import(process.argv[2] === "host" ? "../../host/entry.ts" : "../../cli/main.ts");
