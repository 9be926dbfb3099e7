// Prints the young generation's size in bytes before and after a burst of short-lived
// allocations; with the argument "keep", after keepYoungGenerationSmall(), as the agent's entry
// point does.
import v8 from "node:v8";
import { keepYoungGenerationSmall } from "../../runtime/heap.ts";

const youngGeneration = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_size;
if (process.argv.includes("keep")) keepYoungGenerationSmall();
const before = youngGeneration();
let live: unknown[] = [];
for (let i = 0; i < 3_000_000; i++) {
  live.push({ i, list: [i] });
  if (live.length > 20_000) live = [];
}
console.log(JSON.stringify({ before, after: youngGeneration() }));
