// Makes X25519 pairs through the node:crypto provider as handshakes do, many times over, with a
// varying amount of garbage between them and V8's young generation at the agent's size, so that
// collections fall at every point of making a pair. Prints "done" if it finishes.
import { nodeCryptoProvider } from "../../runtime/crypto.ts";
import { keepYoungGenerationSmall } from "../../runtime/heap.ts";

keepYoungGenerationSmall(); // as the agent runs: frequent scavenges
const pairs = Number(process.argv[2] ?? 20_000);
let garbage: unknown[] = [];
for (let i = 0; i < pairs; i++) {
  garbage = [];
  for (let j = 0; j < (i * 7919) % 400; j++) garbage.push({ j });
  nodeCryptoProvider.x25519Generate!().publicKey;
}
console.log("done", garbage.length >= 0);
