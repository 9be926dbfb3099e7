/**
 * The per-byte stages of a transfer, each timed alone in this process: CPU-seconds per GiB for
 * file read, AES-256-GCM seal and open in Noise messages, loopback TCP (both ends), the ring,
 * file write and SHA-256; and, for reference, what a CRC-32 of every ring payload would cost. bench/transfer.ts runs it under Node and Deno
 * and puts the sum of a path's stages next to what the transfer measured.
 *
 *   tsx bench/stages.ts [MiB]      or      deno run -A bench/stages.ts [MiB]
 *
 * Prints one JSON object: stage name → CPU-s/GiB.
 * @module
 */
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { CipherState } from "../core/secure/noise.ts";
import { TAG_SIZE } from "../core/secure/crypto.ts";
import { MAX_NOISE_PLAINTEXT } from "../core/secure/frame-stream.ts";
import { channelSize, Direction, initChannel, RingReader, RingWriter } from "../core/shm/ring.ts";
import { RING_CAPACITY } from "../agent/sessions.ts";
import { runtimeCryptoProvider } from "../runtime/crypto.ts";
import zlib from "node:zlib";

const MIB = Number(process.argv[2] ?? 256);
const CHUNK = 512 * 1024; // the client's transfer chunk
const GIB = 1024 ** 3;
const chunks = (MIB * 1024 * 1024) / CHUNK;
const data = crypto.randomBytes(CHUNK);

/** CPU-seconds per GiB that `work` spends moving `bytes` bytes (user + system, this process). */
async function perGiB(bytes: number, work: () => unknown | Promise<unknown>): Promise<number> {
  await work(); // warm
  const t0 = process.cpuUsage();
  await work();
  const d = process.cpuUsage(t0);
  return ((d.user + d.system) / 1e6) * (GIB / bytes);
}

const stages: Record<string, number> = {};
const total = chunks * CHUNK;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-stages-"));
try {
  const file = path.join(dir, "f");
  stages["file write"] = await perGiB(total, () => {
    const fd = fs.openSync(file, "w");
    for (let i = 0; i < chunks; i++) fs.writeSync(fd, data);
    fs.closeSync(fd);
  });
  const buf = new Uint8Array(CHUNK);
  stages["file read"] = await perGiB(total, () => {
    const fd = fs.openSync(file, "r");
    while (fs.readSync(fd, buf) > 0);
    fs.closeSync(fd);
  });
  fs.rmSync(file);

  stages["SHA-256"] = await perGiB(total, () => {
    const h = crypto.createHash("sha256");
    for (let i = 0; i < chunks; i++) h.update(data);
    h.digest();
  });

  // AES-256-GCM as the frame stream uses it: one Noise message per 65,519 plaintext bytes, sealed
  // into and opened into buffers it already holds.
  const key = crypto.randomBytes(32);
  const provider = runtimeCryptoProvider();
  const sealer = new CipherState(await provider.aesGcm(key)), opener = new CipherState(await provider.aesGcm(key));
  const sealedOut = new Uint8Array(MAX_NOISE_PLAINTEXT + TAG_SIZE), openedOut = new Uint8Array(MAX_NOISE_PLAINTEXT);
  stages["encrypt"] = await perGiB(total, async () => {
    for (let i = 0; i < chunks; i++) {
      for (let o = 0; o < CHUNK; o += MAX_NOISE_PLAINTEXT) {
        const message = data.subarray(o, o + MAX_NOISE_PLAINTEXT);
        await sealer.encryptInto([message], sealedOut.subarray(0, message.length + TAG_SIZE));
      }
    }
  });
  // Two passes of messages in nonce order, sealed beforehand (keeping them during the timed
  // encrypt pass would time the garbage collector too): one to warm the opener, one timed.
  const messages: Uint8Array[] = [];
  const sealing = new CipherState(await provider.aesGcm(key));
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < chunks; i++) {
      for (let o = 0; o < CHUNK; o += MAX_NOISE_PLAINTEXT) {
        messages.push(await sealing.encrypt(data.subarray(o, o + MAX_NOISE_PLAINTEXT)));
      }
    }
  }
  let opened = 0;
  stages["decrypt"] = await perGiB(total, async () => {
    for (const end = opened + messages.length / 2; opened < end; opened++) {
      await opener.decryptInto([messages[opened]], openedOut.subarray(0, messages[opened].length - TAG_SIZE));
    }
  });
  messages.length = 0; // else the next stage's collections pay for freeing them

  // The ring as the channel uses it: header check, copy in, copy out, atomic publication.
  const region = new Uint8Array(channelSize(RING_CAPACITY));
  initChannel(region, RING_CAPACITY);
  const w = new RingWriter(region, Direction.AgentToHost), r = new RingReader(region, Direction.AgentToHost);
  stages["ring"] = await perGiB(total, () => {
    for (let i = 0; i < chunks; i++) {
      w.tryWrite(data);
      r.tryRead();
    }
  });
  // What a CRC-32 of every payload at both ends would add (layout 2 did it; docs/protocol.md §7).
  const crc32 = (zlib as unknown as { crc32: (b: Uint8Array) => number }).crc32;
  stages["(CRC-32 of each payload, both ends: not done)"] = await perGiB(total, () => {
    for (let i = 0; i < 2 * chunks; i++) crc32(data);
  });

  stages["loopback TCP (both ends)"] = await loopbackTcp(total);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(stages));

/** Sends `bytes` through a loopback TCP connection inside this process; both ends' CPU. */
async function loopbackTcp(bytes: number): Promise<number> {
  let got = 0, target = 0, done = () => {};
  const server = net.createServer((s) =>
    s.on("data", (d: Uint8Array) => {
      got += d.length;
      if (got >= target) done();
    })
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise((r) => client.once("connect", r));
  try {
    return await perGiB(bytes, async () => {
      const received = new Promise<void>((r) => (done = r));
      target += bytes;
      for (let i = 0; i < bytes / CHUNK; i++) {
        if (!client.write(data)) await new Promise((r) => client.once("drain", r));
      }
      await received;
    });
  } finally {
    client.destroy();
    server.close();
  }
}
