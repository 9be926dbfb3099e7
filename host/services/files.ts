/**
 * The files service: one handler table merged from its three parts, requests
 * on paths (files-metadata.ts), on open handles (files-handles.ts) and
 * batches of small files (files-batches.ts).
 * @module
 */
import path from "node:path";
import { batchHandlers } from "./files-batches.ts";
import { FileHandles } from "./files-handles.ts";
import { metadataHandlers } from "./files-metadata.ts";
import type { HostContext, ServiceHandlers } from "./types.ts";

export class FilesService {
  readonly #handles: FileHandles;

  constructor(readonly context: HostContext) {
    this.#handles = new FileHandles(context, (p) => this.#resolve(p));
  }

  get openCount(): number {
    return this.#handles.openCount;
  }

  /** Requests on one handle run in arrival order; everything else runs concurrently. */
  orderKey(code: number, fields: Record<string, unknown>): string | null {
    return this.#handles.orderKey(code, fields);
  }

  /** Closes every handle (session end). */
  closeAll(): Promise<void> {
    return this.#handles.closeAll();
  }

  handlers(): ServiceHandlers {
    const resolve = (p: string) => this.#resolve(p);
    return { ...metadataHandlers(resolve), ...this.#handles.handlers(), ...batchHandlers(resolve) };
  }

  #resolve(p: string): string {
    return path.resolve(this.context.productRoot, p);
  }
}
