// Swaps a regular file and a FIFO at `<dir>/x` for `ms` milliseconds, as fast as renames go (test/files-service.test.ts).
import fs from "node:fs";
import path from "node:path";

const [dir, ms] = [process.argv[2], Number(process.argv[3])];
const at = (name: string) => path.join(dir, name);
const until = Date.now() + ms;
let swaps = 0;
while (Date.now() < until) {
  fs.renameSync(at("x"), at("spare"));
  fs.renameSync(at("fifo"), at("x")); // the FIFO is at x
  fs.renameSync(at("x"), at("fifo"));
  fs.renameSync(at("spare"), at("x")); // the regular file is back
  swaps++;
}
console.log(`swaps=${swaps}`);
