// A product process that starts a process flooding its output and counts every byte it receives.
// The test stops this process (SIGSTOP) for a while to make it a slow reader.
import { connect } from "../../mod.ts";

const bytes = Number(process.env.BYTES);
const agent = await connect({ host: "127.0.0.1", port: Number(process.env.PORT), key: process.env.KEY! });
const session = await agent.openSession("alpha");
const p = await session.processes.start({ program: "head", args: ["-c", String(bytes), "/dev/zero"] });
console.log(`started ${session.id}`);
let received = 0;
for await (const chunk of p.stdout) received += chunk.length;
console.log(`received ${received} exit ${(await p.wait()).code}`);
await session.close();
agent.close();
