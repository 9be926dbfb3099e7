/**
 * Host processes started ahead of need: starting a runtime costs 100 ms or
 * more, most of a session's opening. After a session opens for a product,
 * one spare host for that product is started in the background; the next
 * session for it takes the spare and pays only the attach. Spares are kept
 * for the few products used most recently, end after a while unused, and
 * are never handed out when the product's extensions changed since they
 * started (a host loads extensions when it starts).
 * @module
 */
import fs from "node:fs";
import path from "node:path";
import type { HostProcess } from "./host-process.ts";
import type { Logger } from "../runtime/log.ts";

/** Starts a host for `product` under session id `id`. */
export type HostLauncher = (product: string, id: string) => Promise<HostProcess>;

interface Spare {
  id: string;
  starting: Promise<HostProcess | null>;
  host: HostProcess | null;
  /** The extensions directory as the host saw it when it started. */
  signature: string;
  timer: ReturnType<typeof setTimeout> | null;
  preparedAt: number;
}

/** A spare host as `agent status` shows it: its pid once started, and how long it has waited. */
export interface SpareSummary {
  product: string;
  hostPid: number | null;
  idleSeconds: number;
}

/** Names and modification times of everything in `dir` (empty when missing): a change means a new host. */
export function extensionsSignature(dir: string): string {
  try {
    return fs.readdirSync(dir).sort().map((name) => `${name}:${fs.statSync(path.join(dir, name)).mtimeMs}`).join("|");
  } catch {
    return "";
  }
}

export class WarmHosts {
  readonly #spares = new Map<string, Spare>();
  #closed = false;

  constructor(
    readonly options: {
      /** Products to keep a spare for at once (0: none, every session starts its own host). */
      products: number;
      /** A spare nobody took in this long ends. */
      unusedMs: number;
      launch: HostLauncher;
      extensionsDir: (product: string) => string;
      newId: () => string;
      log: Logger;
    },
  ) {}

  /** The spare host for `product`, if one is ready or starting and still current; null otherwise. */
  async take(product: string): Promise<{ id: string; host: HostProcess } | null> {
    const spare = this.#spares.get(product);
    if (!spare) return null;
    this.#spares.delete(product);
    if (spare.timer) clearTimeout(spare.timer);
    const host = await spare.starting;
    if (!host || host.exitInfo) return null;
    if (spare.signature !== extensionsSignature(this.options.extensionsDir(product))) {
      void host.shutdown(5000, 1000);
      return null;
    }
    return { id: spare.id, host };
  }

  /** Starts a spare for `product` unless one exists; the least recently prepared product's spare makes room. */
  prepare(product: string): void {
    if (this.#closed || this.options.products <= 0 || this.#spares.has(product)) return;
    while (this.#spares.size >= this.options.products) this.#discard([...this.#spares.keys()][0]);
    const id = this.options.newId();
    const signature = extensionsSignature(this.options.extensionsDir(product));
    const spare: Spare = {
      id,
      signature,
      host: null,
      timer: null,
      starting: Promise.resolve(null),
      preparedAt: Date.now(),
    };
    spare.starting = this.options.launch(product, id).then((host) => {
      spare.host = host;
      this.options.log.info(`spare host for ${product} ready (pid ${host.pid})`);
      return host; // whoever removes the spare from the map ends or uses it
    }, (e) => {
      this.options.log.warn(`spare host for ${product} did not start: ${(e as Error).message}`);
      if (this.#spares.get(product) === spare) this.#spares.delete(product);
      return null;
    });
    spare.timer = setTimeout(() => this.#discard(product), this.options.unusedMs);
    spare.timer.unref?.();
    this.#spares.set(product, spare);
  }

  /** Spares start again after {@link shutdown} (a hand-over that did not happen). */
  reopen(): void {
    this.#closed = false;
  }

  /** Ends every spare (agent shutdown); no new ones start. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#spares.keys()].map((p) => this.#discard(p)));
  }

  /** The spares, for status. */
  list(): SpareSummary[] {
    return [...this.#spares].map(([product, spare]) => ({
      product,
      hostPid: spare.host?.pid ?? null,
      idleSeconds: Math.round((Date.now() - spare.preparedAt) / 1000),
    }));
  }

  /** Products with a spare, for status. */
  products(): string[] {
    return [...this.#spares.keys()];
  }

  async #discard(product: string): Promise<void> {
    const spare = this.#spares.get(product);
    if (!spare) return;
    this.#spares.delete(product);
    if (spare.timer) clearTimeout(spare.timer);
    const host = await spare.starting;
    await host?.shutdown(5000, 1000);
  }
}
