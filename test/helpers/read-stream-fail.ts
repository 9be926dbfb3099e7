// A product process, run with the runtime's defaults (an unhandled rejection ends it): a readStream
// whose reads fail while several are in flight. Prints "survived" if it lives on after catching.
import { connect } from "../../mod.ts";

const agent = await connect({ host: "127.0.0.1", port: Number(process.env.PORT), key: process.env.KEY! });
const session = await agent.openSession("alpha");
await session.files.writeFile("big.bin", new Uint8Array(8 * 1024 * 1024));
try {
  for await (const _chunk of session.files.readStream("big.bin")) {
    await session.close(); // every read still in flight now fails
  }
} catch (e) {
  console.log(`caught ${(e as Error).name}`);
}
await new Promise((r) => setTimeout(r, 500));
console.log("survived");
agent.close();
