/**
 * The key-mode handshake: Noise `NNpsk0_25519_AESGCM_SHA256`
 * (noiseprotocol.org, revision 34, §7 pattern NN with the psk0 modifier, §9).
 *
 * ```
 * NNpsk0:
 *   -> psk, e
 *   <- e, ee
 * ```
 *
 * The first message can only be produced by someone holding the key, and the
 * second only by someone who holds it too and saw the first: both sides are
 * authenticated, the ephemeral exchange gives forward secrecy, and `split`
 * yields one AES-256-GCM key per direction with counter nonces.
 * docs/security.md explains the choices.
 *
 * @example
 * ```ts
 * const init = await NoiseHandshake.initiator(psk, prologue, provider);
 * const msg1 = await init.writeMessage1();
 * const { handshake: resp } = await NoiseHandshake.respond([psk], prologue, msg1, provider) ?? {};
 * ```
 * @module
 */
import {
  type Aead,
  type CryptoProvider,
  hmacSha256,
  sha256,
  TAG_SIZE,
  x25519Generate,
  type X25519KeyPair,
} from "./crypto.ts";
import { AuthenticationError, IntegrityError, ProtocolError } from "../errors.ts";
import { concat } from "../bytes.ts";

/** The Noise protocol name; exactly 32 bytes, so it is the initial hash as is. */
export const NOISE_PROTOCOL_NAME = "Noise_NNpsk0_25519_AESGCM_SHA256";
const DH_LEN = 32;
/** Size of message 1 and message 2 with an empty payload. */
export const NOISE_MESSAGE_SIZE = DH_LEN + TAG_SIZE;

/** Noise AESGCM nonce: 32 zero bits then the 64-bit counter big-endian. */
export function noiseNonce(n: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  view.setUint32(4, Math.floor(n / 0x100000000), false);
  view.setUint32(8, n >>> 0, false);
  return out;
}

const EMPTY = new Uint8Array(0);

/** One direction of encrypted records: a key and a message counter. */
export class CipherState {
  #n = 0;
  constructor(readonly aead: Aead) {}

  /** Messages processed so far, the next nonce: how tests check that it counts messages, not frames. */
  get counter(): number {
    return this.#n;
  }

  async encrypt(plaintext: Uint8Array, ad: Uint8Array = EMPTY): Promise<Uint8Array> {
    return await this.aead.seal(noiseNonce(this.#n++), plaintext, ad);
  }

  /** Encrypts the concatenation of `parts` into `out` (their length plus the tag). */
  async encryptInto(parts: readonly Uint8Array[], out: Uint8Array): Promise<void> {
    if (this.aead.sealInto) return this.aead.sealInto(noiseNonce(this.#n++), parts, EMPTY, out);
    out.set(await this.encrypt(parts.length === 1 ? parts[0] : concat(parts)));
  }

  /** Decrypts the message given as consecutive `pieces` into `out` (its plaintext length); see {@link decrypt}. */
  async decryptInto(pieces: readonly Uint8Array[], out: Uint8Array): Promise<void> {
    let length = 0;
    for (const p of pieces) length += p.length;
    if (length !== out.length + TAG_SIZE) throw new IntegrityError();
    if (this.aead.openInto) {
      if (!this.aead.openInto(noiseNonce(this.#n), pieces, EMPTY, out)) throw new IntegrityError();
      this.#n++;
      return;
    }
    out.set(await this.decrypt(pieces.length === 1 ? pieces[0] : concat(pieces)));
  }

  /** Decrypts with the next counter; a bad tag, replay or reordering throws {@link IntegrityError}. */
  async decrypt(ciphertext: Uint8Array, ad: Uint8Array = EMPTY): Promise<Uint8Array> {
    if (ciphertext.length < TAG_SIZE) throw new IntegrityError();
    const plain = await this.aead.open(noiseNonce(this.#n), ciphertext, ad);
    if (plain === null) throw new IntegrityError();
    this.#n++;
    return plain;
  }
}

/** The two transport ciphers that come out of a completed handshake. */
export interface TransportKeys {
  send: CipherState;
  receive: CipherState;
  /** The handshake hash: a value unique to this session, for channel binding. */
  handshakeHash: Uint8Array;
}

/** Noise SymmetricState with SHA-256 and AES-256-GCM. */
class SymmetricState {
  ck: Uint8Array;
  h: Uint8Array;
  cipher: CipherState | null = null;

  constructor(readonly provider: CryptoProvider) {
    this.h = new TextEncoder().encode(NOISE_PROTOCOL_NAME);
    this.ck = this.h;
  }

  async mixHash(data: Uint8Array) {
    this.h = this.provider.sha256 ? this.provider.sha256(this.h, data) : await sha256(this.h, data);
  }

  async mixKey(ikm: Uint8Array) {
    const [ck, k] = await hkdf(this.provider, this.ck, ikm, 2);
    this.ck = ck;
    this.cipher = new CipherState(await this.provider.aesGcm(k));
  }

  async mixKeyAndHash(ikm: Uint8Array) {
    const [ck, th, k] = await hkdf(this.provider, this.ck, ikm, 3);
    this.ck = ck;
    await this.mixHash(th);
    this.cipher = new CipherState(await this.provider.aesGcm(k));
  }

  async encryptAndHash(plaintext: Uint8Array): Promise<Uint8Array> {
    const c = await this.cipher!.encrypt(plaintext, this.h);
    await this.mixHash(c);
    return c;
  }

  async decryptAndHash(ciphertext: Uint8Array): Promise<Uint8Array> {
    const p = await this.cipher!.decrypt(ciphertext, this.h);
    await this.mixHash(ciphertext);
    return p;
  }

  async split(): Promise<[CipherState, CipherState]> {
    const [k1, k2] = await hkdf(this.provider, this.ck, EMPTY, 2);
    return [new CipherState(await this.provider.aesGcm(k1)), new CipherState(await this.provider.aesGcm(k2))];
  }
}

/** Noise HKDF (§4.3): HMAC-SHA-256 with the chaining key, then `count` chained outputs. */
async function hkdf(provider: CryptoProvider, ck: Uint8Array, ikm: Uint8Array, count: 2 | 3): Promise<Uint8Array[]> {
  const hmac = (key: Uint8Array, ...parts: Uint8Array[]) =>
    provider.hmacSha256 ? provider.hmacSha256(key, ...parts) : hmacSha256(key, ...parts);
  const temp = await hmac(ck, ikm);
  const out1 = await hmac(temp, new Uint8Array([1]));
  const out2 = await hmac(temp, out1, new Uint8Array([2]));
  if (count === 2) return [out1, out2];
  return [out1, out2, await hmac(temp, out2, new Uint8Array([3]))];
}

/** A fresh ephemeral key pair from the provider, or WebCrypto. */
function ephemeralFor(provider: CryptoProvider): X25519KeyPair | Promise<X25519KeyPair> {
  return provider.x25519Generate ? provider.x25519Generate() : x25519Generate();
}

/** Runs one side of NNpsk0. Create with {@link NoiseHandshake.initiator} or {@link NoiseHandshake.respond}. */
export class NoiseHandshake {
  #re: Uint8Array | null = null;

  private constructor(readonly state: SymmetricState, readonly ephemeral: X25519KeyPair) {}

  /** Starts the initiator (the side that connects). `ephemeral` is fixed only in test vectors. */
  static async initiator(psk: Uint8Array, prologue: Uint8Array, provider: CryptoProvider, ephemeral?: X25519KeyPair) {
    const ss = await start(psk, prologue, provider);
    return new NoiseHandshake(ss, ephemeral ?? await ephemeralFor(provider));
  }

  /** Message 1: `e` in clear, then the (possibly empty) payload sealed under the psk-derived key. */
  async writeMessage1(payload: Uint8Array = EMPTY): Promise<Uint8Array> {
    const e = this.ephemeral.publicKey;
    await this.state.mixHash(e);
    await this.state.mixKey(e);
    return join(e, await this.state.encryptAndHash(payload));
  }

  /**
   * The responder's side: tries each configured key against message 1 and
   * returns the handshake for the key that fits, with its index; null when
   * none fits. Every candidate is tried, so timing says nothing about which.
   */
  static async respond(
    psks: readonly Uint8Array[],
    prologue: Uint8Array,
    message1: Uint8Array,
    provider: CryptoProvider,
    ephemeral?: X25519KeyPair,
  ): Promise<{ handshake: NoiseHandshake; keyIndex: number; payload: Uint8Array } | null> {
    if (message1.length < NOISE_MESSAGE_SIZE) throw new ProtocolError("key handshake message 1 is too short");
    const re = message1.subarray(0, DH_LEN);
    let found: { ss: SymmetricState; keyIndex: number; payload: Uint8Array } | null = null;
    for (let i = 0; i < psks.length; i++) {
      const ss = await start(psks[i], prologue, provider);
      await ss.mixHash(re);
      await ss.mixKey(re);
      try {
        const payload = await ss.decryptAndHash(message1.subarray(DH_LEN));
        found ??= { ss, keyIndex: i, payload };
      } catch { /* not this key */ }
    }
    if (!found) return null;
    const hs = new NoiseHandshake(found.ss, ephemeral ?? await ephemeralFor(provider));
    hs.#re = re.slice();
    return { handshake: hs, keyIndex: found.keyIndex, payload: found.payload };
  }

  /** Message 2 (responder): `e`, `ee`, then the sealed payload. Returns the message and the transport keys. */
  async writeMessage2(payload: Uint8Array = EMPTY): Promise<{ message: Uint8Array; keys: TransportKeys }> {
    const e = this.ephemeral.publicKey;
    await this.state.mixHash(e);
    await this.state.mixKey(e);
    await this.state.mixKey(await this.ephemeral.agree(this.#re!));
    const message = join(e, await this.state.encryptAndHash(payload));
    const [c1, c2] = await this.state.split();
    return { message, keys: { send: c2, receive: c1, handshakeHash: this.state.h } };
  }

  /** Reads message 2 (initiator). A message not sealed with the same key throws {@link AuthenticationError}. */
  async readMessage2(message: Uint8Array): Promise<{ payload: Uint8Array; keys: TransportKeys }> {
    if (message.length < NOISE_MESSAGE_SIZE) throw new ProtocolError("key handshake message 2 is too short");
    const re = message.subarray(0, DH_LEN);
    await this.state.mixHash(re);
    await this.state.mixKey(re);
    let payload: Uint8Array;
    try {
      await this.state.mixKey(await this.ephemeral.agree(re));
      payload = await this.state.decryptAndHash(message.subarray(DH_LEN));
    } catch {
      throw new AuthenticationError("authentication failed: the agent could not prove it holds the same key");
    }
    const [c1, c2] = await this.state.split();
    return { payload, keys: { send: c1, receive: c2, handshakeHash: this.state.h } };
  }
}

async function start(psk: Uint8Array, prologue: Uint8Array, provider: CryptoProvider): Promise<SymmetricState> {
  const ss = new SymmetricState(provider);
  await ss.mixHash(prologue);
  await ss.mixKeyAndHash(psk);
  return ss;
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
