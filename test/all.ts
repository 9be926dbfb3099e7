// Every suite, in one process per runtime: `node --import tsx test/all.ts` or `deno run -A test/all.ts`.
import "./bytes.test.ts";
import "./handshake.test.ts";
import "./noise.test.ts";
import "./opening.test.ts";
import "./layers.test.ts";
import "./config.test.ts";
import "./delivery.test.ts";
import "./doc.test.ts";
import "./ring.test.ts";
import "./mmap.test.ts";
import "./cli.e2e.test.ts";
import "./hostile.e2e.test.ts";
import "./sessions.e2e.test.ts";
import "./local.test.ts";
import "./faults.e2e.test.ts";
import "./operations.e2e.test.ts";
import "./outbound.e2e.test.ts";
