// The agent run from its sources, as a compromised server: its hosts answer every files.list with the
// entries in HOSTILE_LISTING (JSON), whatever is on disk. `agent start` runs hosts through this same file.
import { FilesService } from "../../host/services/files.ts";
import { ServiceCode } from "../../core/session/contract.ts";

const listing = process.env.HOSTILE_LISTING;
if (process.argv[2] === "host" && listing) {
  const handlers = FilesService.prototype.handlers;
  FilesService.prototype.handlers = function () {
    return { ...handlers.call(this), [ServiceCode.FileList]: () => ({ fields: { entries: JSON.parse(listing) } }) };
  };
}
await import(process.argv[2] === "host" ? "../../host/entry.ts" : "../../cli/main.ts");
