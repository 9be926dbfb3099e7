/**
 * Pushed updates, the agent's side (docs/protocol.md §5 "Pushed updates"): a
 * client whose key has the `update` right streams a new agent binary; the
 * agent checks the size and, where the operator configured release keys, the
 * signature before the first byte, stages the bytes in `<state dir>/updates/`
 * while hashing them, compares the SHA-256 announced at commit, and only then
 * hands the file to the {@link Upgrader} (an agent without one says so there,
 * after the digest). One update at a time. Any refusal, a wrong digest, a cut
 * connection, an abort or an idle update removes the staged file: nothing
 * else on disk changes.
 *
 * @example
 * ```ts
 * const updates = new UpdateReceiver(settings, () => server.keys, () => server.upgrader, log);
 * const { updateId } = await updates.begin(connection, { size, sha256 });
 * ```
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import { createHash, type Hash } from "node:crypto";
import { ServiceError } from "../core/errors.ts";
import { randomBytes } from "../core/secure/crypto.ts";
import { verifyRelease } from "../core/secure/release.ts";
import { escapeControls } from "../core/text.ts";
import { MAX_PAYLOAD } from "../core/wire/frame.ts";
import { decodeUpdateData, UPDATE_DATA_HEADER } from "../core/wire/messages.ts";
import type { Logger } from "../runtime/log.ts";
import { keyHasRight, type ServedKey } from "./keystore.ts";
import type { UpgradeOutcome, Upgrader } from "./upgrade-types.ts";

/** How the agent takes pushed updates. */
export interface UpdateSettings {
  /** The staging directory is `<stateDir>/updates`. */
  stateDir: string;
  /** The largest binary accepted, in bytes. */
  maxBytes: number;
  /** Ed25519 public keys (hex); when any is given, an update must be signed by one of them. */
  releaseKeys: readonly string[];
  /** An update that receives nothing for this long is dropped (its connection may stay). */
  idleMs?: number;
}

/** Who sends an update: the connection (a refusal or a cut ties back to it), its key and address. */
export interface UpdateSender {
  readonly keyId: string | null;
  readonly remote: string;
}

/** The most an UpdateData frame carries after its header. */
export const MAX_UPDATE_CHUNK = MAX_PAYLOAD - UPDATE_DATA_HEADER;
const DEFAULT_IDLE_MS = 120_000;
const STAGED_NAME = /^update-[0-9a-f]{8}\.bin$/;

/** The update being received or applied. */
interface Staged {
  id: number;
  sender: UpdateSender;
  size: number;
  sha256: string;
  file: string;
  fd: fs.promises.FileHandle | null;
  hash: Hash;
  received: number;
  applying: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class UpdateReceiver {
  #current: Staged | null = null;

  constructor(
    readonly settings: UpdateSettings,
    /** The keys accepted now (a reload changes them, rights included). */
    readonly keys: () => readonly ServedKey[],
    /** What applies a checked binary; null: this agent cannot apply updates. */
    readonly upgrader: () => Upgrader | null,
    readonly log: Logger,
  ) {}

  /** The staging directory. */
  get dir(): string {
    return path.join(this.settings.stateDir, "updates");
  }

  /** UpdateBegin: checks the right, the size and the signature, then creates the staged file. */
  async begin(
    sender: UpdateSender,
    fields: Record<string, unknown>,
  ): Promise<{ updateId: number; maxChunkBytes: number }> {
    const who = describe(sender);
    try {
      this.#mayUpdate(sender);
      const { size, sha256, signature } = announced(fields);
      if (size > this.settings.maxBytes) {
        throw new ServiceError(
          "update-too-large",
          `the update is ${size} bytes; this agent accepts at most ${this.settings.maxBytes} (updateMaxMiB)`,
        );
      }
      const signedBy = await this.#checkSignature(sha256, signature);
      if (this.#current) {
        const what = this.#current.applying ? "being applied" : `being received from ${describe(this.#current.sender)}`;
        throw new ServiceError("update-in-progress", `another update is ${what}; try again when it is done`);
      }
      const staged = await this.#stage(sender, size, sha256);
      this.log.info(
        `update ${hexId(staged.id)} from ${who}: receiving ${size} bytes, sha256 ${sha256}` +
          (signedBy ? `, signed by release key ${signedBy}` : ", unsigned (no release key is configured)"),
      );
      return { updateId: staged.id, maxChunkBytes: MAX_UPDATE_CHUNK };
    } catch (e) {
      this.log.warn(`update from ${who} refused: ${escapeControls((e as Error).message)}`);
      throw e;
    }
  }

  /** UpdateData: the next bytes, in order; returns how many have arrived. */
  async data(sender: UpdateSender, payload: Uint8Array): Promise<{ received: number }> {
    const { updateId, offset, bytes } = decodeUpdateData(payload);
    const staged = this.#receiving(sender, updateId);
    try {
      if (offset !== staged.received) {
        throw new ServiceError("invalid-argument", `update data at offset ${offset}, expected ${staged.received}`);
      }
      if (staged.received + bytes.length > staged.size) {
        throw new ServiceError("invalid-argument", `update data runs past the ${staged.size} bytes announced`);
      }
      staged.hash.update(bytes);
      staged.received += bytes.length;
      this.#idle(staged);
      for (let done = 0; done < bytes.length;) {
        done += (await staged.fd!.write(bytes, done, bytes.length - done)).bytesWritten;
      }
      return { received: staged.received };
    } catch (e) {
      await this.#drop(staged, (e as Error).message);
      throw e;
    }
  }

  /** UpdateCommit: checks the digest, then hands the staged file to the upgrader; its outcome is the reply. */
  async commit(sender: UpdateSender, fields: Record<string, unknown>): Promise<UpgradeOutcome> {
    const staged = this.#receiving(sender, fields.updateId);
    const upgrader = this.upgrader();
    try {
      this.#mayUpdate(sender); // again: a reload may have taken the right away while the bytes came
      if (staged.received !== staged.size) {
        throw new ServiceError(
          "invalid-argument",
          `only ${staged.received} of the ${staged.size} bytes announced arrived`,
        );
      }
      const digest = staged.hash.digest("hex");
      if (digest !== staged.sha256) {
        throw new ServiceError(
          "update-digest-mismatch",
          `the bytes received have SHA-256 ${digest}, not the ${staged.sha256} announced`,
        );
      }
      if (!upgrader) throw unavailable();
      clearTimeout(staged.timer);
      await staged.fd!.close();
      staged.fd = null;
    } catch (e) {
      await this.#drop(staged, (e as Error).message);
      throw e;
    }
    return await this.#apply(staged, upgrader);
  }

  /** The commit's answer is written: after a hand-over, the old agent need not linger for it. */
  answered(): void {
    this.upgrader()?.leaveNow?.();
  }

  /** UpdateAbort: drops the update this sender is sending. */
  async abort(sender: UpdateSender, fields: Record<string, unknown>): Promise<void> {
    await this.#drop(this.#receiving(sender, fields.updateId), "aborted by the client");
  }

  /** The sender's connection ended: an update it was still sending is dropped (one being applied goes on). */
  disconnected(sender: UpdateSender): void {
    const staged = this.#current;
    if (staged?.sender === sender && !staged.applying) void this.#drop(staged, "the connection ended");
  }

  async #apply(staged: Staged, upgrader: Upgrader): Promise<UpgradeOutcome> {
    staged.applying = true;
    const id = hexId(staged.id), who = describe(staged.sender);
    this.log.info(`update ${id} from ${who}: sha256 matches; applying it`);
    try {
      // The sender's connection stays open through the hand-over: the answer goes back on it.
      const outcome = await upgrader.upgrade(staged.file, staged.sender.keyId ?? "", staged.sender);
      this.log.info(
        `update ${id} from ${who}: now running version ${escapeControls(outcome.version)}, build ` +
          `${escapeControls(outcome.build.slice(0, 12))} (was ${escapeControls(outcome.previousBuild.slice(0, 12))})`,
      );
      return outcome;
    } catch (e) {
      this.log.warn(`update ${id} from ${who} failed: ${escapeControls((e as Error).message)}`);
      throw e;
    } finally {
      // The upgrader keeps what it needs elsewhere; the staging directory holds nothing after an update.
      await fs.promises.rm(staged.file, { force: true }).catch(() => {});
      if (this.#current === staged) this.#current = null;
    }
  }

  #mayUpdate(sender: UpdateSender) {
    if (!keyHasRight(this.keys(), sender.keyId, "update")) {
      throw new ServiceError(
        "update-not-allowed",
        `key ${sender.keyId ?? "(none)"} may not update this agent: give it the right in the agent's ` +
          `configuration ("rights": ["update"], or rights=update in a key file)`,
      );
    }
  }

  /** The release key that signed it, or null where none is configured; throws when one is and none signed. */
  async #checkSignature(sha256: string, signature: string | undefined): Promise<string | null> {
    const { releaseKeys } = this.settings;
    if (releaseKeys.length === 0) return null;
    if (signature === undefined) {
      throw new ServiceError(
        "update-signature-invalid",
        "this agent takes only signed updates (release keys are configured): sign it with `agent release sign`",
      );
    }
    const signer = await verifyRelease(releaseKeys, sha256, signature);
    if (!signer) {
      throw new ServiceError(
        "update-signature-invalid",
        `the signature is not by any of the ${releaseKeys.length} release key(s) this agent trusts, over this SHA-256`,
      );
    }
    return signer;
  }

  /** Creates the staged file: exclusively, mode 0700, in a private directory it checks. */
  async #stage(sender: UpdateSender, size: number, sha256: string): Promise<Staged> {
    const dir = this.dir;
    prepareDir(dir);
    for (const name of fs.readdirSync(dir)) {
      if (STAGED_NAME.test(name)) fs.rmSync(path.join(dir, name), { force: true }); // left by an agent that died
    }
    const id = new DataView(randomBytes(4).buffer).getUint32(0) || 1;
    const file = path.join(dir, `update-${hexId(id)}.bin`);
    const staged: Staged = {
      id,
      sender,
      size,
      sha256,
      file,
      fd: null,
      hash: createHash("sha256"),
      received: 0,
      applying: false,
      timer: undefined,
    };
    this.#current = staged; // before the await: a second begin meanwhile is refused
    try {
      staged.fd = await fs.promises.open(file, "wx", 0o700);
    } catch (e) {
      this.#current = null;
      throw e;
    }
    this.#idle(staged);
    return staged;
  }

  /** The update `sender` is sending under `updateId`, still receiving. */
  #receiving(sender: UpdateSender, updateId: unknown): Staged {
    const staged = this.#current;
    if (!staged || staged.id !== updateId || staged.sender !== sender) {
      throw new ServiceError(
        "invalid-argument",
        `no update ${describeId(updateId)} is being received on this connection`,
      );
    }
    if (staged.applying) throw new ServiceError("update-in-progress", "this update is being applied");
    return staged;
  }

  #idle(staged: Staged) {
    clearTimeout(staged.timer);
    const ms = this.settings.idleMs ?? DEFAULT_IDLE_MS;
    staged.timer = setTimeout(() => void this.#drop(staged, `nothing arrived for ${ms / 1000} s`), ms);
    (staged.timer as { unref?: () => void }).unref?.();
  }

  /** Removes a staged update and says why. */
  async #drop(staged: Staged, why: string) {
    if (this.#current !== staged) return;
    this.#current = null;
    clearTimeout(staged.timer);
    await staged.fd?.close().catch(() => {});
    await fs.promises.rm(staged.file, { force: true }).catch(() => {});
    this.log.warn(`update ${hexId(staged.id)} from ${describe(staged.sender)} dropped: ${escapeControls(why)}`);
  }
}

/** The announced size, SHA-256 and signature, checked. */
function announced(fields: Record<string, unknown>): { size: number; sha256: string; signature?: string } {
  const { size, sha256, signature } = fields;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 1) {
    throw new ServiceError("invalid-argument", '"size" must be a whole number of bytes, 1 or more');
  }
  if (typeof sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
    throw new ServiceError("invalid-argument", '"sha256" must be 64 hex digits');
  }
  if (signature !== undefined && (typeof signature !== "string" || !/^[0-9a-fA-F]{128}$/.test(signature))) {
    throw new ServiceError("invalid-argument", '"signature" must be 128 hex digits (an Ed25519 signature)');
  }
  return { size, sha256: sha256.toLowerCase(), ...(signature === undefined ? {} : { signature }) };
}

/** Creates `dir` (0700) if missing; refuses a symlink, another user's directory, or one others may write. */
function prepareDir(dir: string) {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  const stat = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) {
    throw new ServiceError(
      "failed",
      `${dir} is not a directory of the agent's own user; remove it, and the agent makes a new one`,
    );
  }
  if ((stat.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

function unavailable(): ServiceError {
  return new ServiceError(
    "update-unavailable",
    'this agent cannot apply updates: it runs without an upgrader (docs/operations.md "Pushed updates")',
  );
}

function describe(sender: UpdateSender): string {
  return `key ${sender.keyId ?? "(none)"} (${escapeControls(sender.remote)})`;
}

function hexId(id: number): string {
  return id.toString(16).padStart(8, "0");
}

function describeId(id: unknown): string {
  if (typeof id === "number" && Number.isInteger(id) && id >= 0) return hexId(id);
  return escapeControls((JSON.stringify(id) ?? String(id)).slice(0, 40));
}
