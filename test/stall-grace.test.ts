// How long the listener lets a handshake keep its slot waiting for the peer (client/stall-grace.ts):
// long enough for a fleet of slow agents coming back at once, short while handshakes are quick.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { StallGrace } from "../client/stall-grace.ts";

const test = suite("stall grace");

test("until eight handshakes complete, half the handshake time", () => {
  const grace = new StallGrace(3000, 10_000);
  assert.is(grace.ms, 5000);
  for (let i = 0; i < 7; i++) grace.completed(100);
  assert.is(grace.ms, 5000);
});

test("quick handshakes: the floor; slow ones (a busy fleet): three times their median, under the timeout", () => {
  const grace = new StallGrace(3000, 10_000);
  for (let i = 0; i < 8; i++) grace.completed(50);
  assert.is(grace.ms, 3000, "quick: stalled peers go after 3 s");
  for (let i = 0; i < 32; i++) grace.completed(2000);
  assert.is(grace.ms, 6000, "agents taking 2 s are not dropped at 3 s");
  for (let i = 0; i < 32; i++) grace.completed(9000);
  assert.is(grace.ms, 8000, "never past 80 % of the handshake time");
  for (let i = 0; i < 32; i++) grace.completed(10);
  assert.is(grace.ms, 3000, "it follows the recent ones only");
});

test.run();
