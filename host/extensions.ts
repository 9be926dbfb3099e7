/**
 * Product extensions: CommonJS modules (`*.js`, `*.cjs`) in the product's
 * extensions directory, each exporting `register(host)`. An extension adds
 * handlers for codes from 0x1000 up; it cannot replace a built-in code, and
 * one that fails to load is reported, never fatal.
 *
 * ```js
 * // <state-dir>/products/<product>/extensions/hello.cjs
 * exports.register = (host) => host.handle(0x1000, ({ fields }) => ({ fields: { hello: fields.name } }));
 * ```
 * @module
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { EXTENSION_CODE_MAX, EXTENSION_CODE_MIN } from "../core/session/contract.ts";
import type { ExtensionHandler } from "./services/types.ts";

/** How loading one extension went. */
export interface ExtensionReport {
  name: string;
  ok: boolean;
  codes: number[];
  error?: string;
}

/** Loads every extension in `dir` into `handlers`; returns one report per file. */
export function loadExtensions(
  dir: string,
  handlers: Map<number, ExtensionHandler>,
  productRoot: string,
): ExtensionReport[] {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => /\.c?js$/.test(f)).sort();
  } catch {
    return [];
  }
  const reports: ExtensionReport[] = [];
  for (const name of files) {
    const file = path.join(dir, name);
    const added = new Map<number, ExtensionHandler>();
    const report: ExtensionReport = { name, ok: false, codes: [] };
    try {
      const mod = createRequire(file)(file) as { register?: (host: unknown) => void };
      if (typeof mod.register !== "function") throw new Error("it does not export register(host)");
      mod.register({
        productRoot,
        handle(code: number, handler: ExtensionHandler) {
          if (!Number.isInteger(code) || code < EXTENSION_CODE_MIN || code > EXTENSION_CODE_MAX) {
            throw new Error(`code ${code} is outside the extension range 0x1000-0xfff0`);
          }
          if (handlers.has(code) || added.has(code)) throw new Error(`code 0x${code.toString(16)} is already taken`);
          added.set(code, handler);
        },
      });
      for (const [code, h] of added) handlers.set(code, h);
      report.ok = true;
      report.codes = [...added.keys()];
    } catch (e) {
      report.error = (e as Error).message;
    }
    reports.push(report);
  }
  return reports;
}
