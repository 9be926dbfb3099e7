// Makes a temporary directory through the suite's helper, puts a file in it, and exits without
// cleaning up, as a test file run on its own does: the helper must remove it at exit anyway.
import fs from "node:fs";
import path from "node:path";
import { tempDir } from "./agent-process.ts";

const dir = tempDir();
fs.writeFileSync(path.join(dir, "left.txt"), "left behind?");
console.log(dir);
