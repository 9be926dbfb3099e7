// Reads `<dir>/x` in batches for `ms` milliseconds while another process swaps it for a FIFO
// (test/files-service.test.ts); prints how the reads went. A read that blocks never prints.
import { ServiceCode } from "../../core/session/contract.ts";
import { InProcessHost } from "./in-process-host.ts";

const [dir, ms] = [process.argv[2], Number(process.argv[3])];
const host = new InProcessHost(dir);
const outcomes: Record<string, number> = {};
const until = Date.now() + ms;
while (Date.now() < until) {
  const answer = await host.call(ServiceCode.FileReadBatch, { paths: ["x"] });
  const outcome = answer.ok ? `files-${(answer.fields.files as unknown[]).length}` : answer.error.code;
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}
console.log(JSON.stringify(outcomes));
