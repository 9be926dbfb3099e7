// A peer process for the mmap tests: maps the channel file given as argv[2],
// and sends every record it receives back, reversed. Doorbells on stdin/stdout.
import { ChannelEnd } from "../../core/shm/channel-end.ts";
import { Direction } from "../../core/shm/ring.ts";
import { mapFile } from "../../runtime/mmap.ts";
import { hostDoorbell } from "../../runtime/pipe-doorbell.ts";
import fs from "node:fs";

const file = process.argv[2];
const mapping = mapFile(file, fs.statSync(file).size);
process.stderr.write(`mapped with ${mapping.backend}\n`);
const end = new ChannelEnd(
  mapping.bytes,
  Direction.HostToAgent,
  Direction.AgentToHost,
  hostDoorbell(),
);
for (;;) {
  const record = await end.receive();
  if (record === null) break;
  await end.send(record.slice().reverse());
}
mapping.close();
process.exit(0);
