/**
 * Builds the agent.
 *
 *   dist/agent.cjs  one-file CommonJS bundle of cli/main.ts
 *   dist/agent.mjs  the same as an ES module, for `deno run -A dist/agent.mjs`
 *   dist/host.cjs   the host program alone (host/entry.ts), which the agent starts beside agent.cjs
 *   dist/host.mjs   the same as an ES module, beside agent.mjs
 *   dist/agent      the single executable: Node's SEA blob injected into a copy of node; it carries
 *                   agent.cjs and host.cjs and runs one of them (SEA_ENTRY)
 *   dist/lib/       the client library package: ES modules and .d.ts (tsconfig.lib.json)
 *
 * Usage: tsx build.ts [--bundle-only]
 * `deno compile` is not used: it downloads its runtime from a host these
 * machines cannot reach (DESIGN §3).
 * @module
 */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { inject } from "postject";
import { KOFFI_ASSET, KOFFI_NAME_ASSET } from "./runtime/native.ts";

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, "dist");
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** koffi's prebuilt native module for this platform. */
function koffiNative(): string {
  const file = path.join(root, "node_modules/koffi/build/koffi", `${process.platform}_${process.arch}`, "koffi.node");
  if (!fs.existsSync(file)) {
    throw new Error(`koffi has no native module for ${process.platform}_${process.arch} (${file})`);
  }
  return file;
}

/** The programs bundled, each as CommonJS (Node, the single executable) and as an ES module (Deno). */
const PROGRAMS = { agent: "cli/main.ts", host: "host/entry.ts" };

async function bundle() {
  fs.mkdirSync(dist, { recursive: true });
  const common: esbuild.BuildOptions = {
    bundle: true,
    platform: "node",
    target: "node20",
    legalComments: "none",
    // Without comments and indentation the source every process holds is 0.87 MB instead of 1.2 MB, and
    // ASCII: one non-ASCII comment made V8 keep all of it as a two-byte string (2.4 MiB per process).
    // Names stay, so stack traces still read.
    minifyWhitespace: true,
    minifySyntax: true,
    charset: "ascii",
    logLevel: "warning",
  };
  for (const [name, entry] of Object.entries(PROGRAMS)) {
    const program = { ...common, entryPoints: [path.join(root, entry)] };
    await esbuild.build({
      ...program,
      format: "cjs",
      outfile: path.join(dist, `${name}.cjs`),
      // import() of a built-in module becomes require() on first use (runtime/lazy.ts): the executable
      // runs this code as a vm.Script, where import() has no loader.
      supported: { "dynamic-import": false },
      define: { "import.meta.url": "__import_meta_url" },
      banner: { js: 'var __import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    });
    await esbuild.build({
      ...program,
      format: "esm",
      outfile: path.join(dist, `${name}.mjs`),
      // Bundled CommonJS dependencies may call require(); give ESM one.
      banner: {
        js:
          'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
      },
    });
  }
}

/** How a program's CommonJS source is wrapped to run from an asset (as Node wraps a module). */
const WRAP = ["(function (exports, require, module, __filename, __dirname) {", "\n})"];

/**
 * The single executable's main script: runs the host program when asked for `host`, else the
 * agent's, each from its asset and with the code cache build.ts made for it. A host thus never
 * parses the agent's code, nor keeps its source.
 */
const SEA_ENTRY = `"use strict";
const sea = require("node:sea");
const program = process.argv[2] === "host" ? "host" : "agent";
const source = ${JSON.stringify(WRAP[0])} + sea.getAsset(program + ".cjs", "utf8") + ${JSON.stringify(WRAP[1])};
const cachedData = Buffer.from(sea.getAsset(program + ".cache"));
new (require("node:vm").Script)(source, { filename: program + ".cjs", cachedData }).runInThisContext()(exports, require, module, __filename, __dirname);
`;

/** V8's code cache for a program's wrapped source: what SEA's useCodeCache makes for a main script. */
function codeCache(program: string): Uint8Array {
  const source = WRAP[0] + fs.readFileSync(path.join(dist, `${program}.cjs`), "utf8") + WRAP[1];
  return new vm.Script(source, { filename: `${program}.cjs` }).createCachedData();
}

async function singleExecutable() {
  const configPath = path.join(dist, "sea-config.json");
  const entry = path.join(dist, "sea-entry.cjs");
  const blob = path.join(dist, "agent.blob");
  fs.writeFileSync(entry, SEA_ENTRY);
  const koffi = koffiNative(), koffiName = path.join(dist, KOFFI_NAME_ASSET);
  fs.writeFileSync(
    koffiName,
    `koffi-${crypto.createHash("sha256").update(fs.readFileSync(koffi)).digest("hex").slice(0, 16)}.node`,
  );
  const assets: Record<string, string> = { [KOFFI_ASSET]: koffi, [KOFFI_NAME_ASSET]: koffiName };
  for (const program of Object.keys(PROGRAMS)) {
    assets[`${program}.cjs`] = path.join(dist, `${program}.cjs`);
    assets[`${program}.cache`] = path.join(dist, `${program}.cache`);
    fs.writeFileSync(assets[`${program}.cache`], codeCache(program));
  }
  fs.writeFileSync(
    configPath,
    JSON.stringify({
      main: entry,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      // The mmap channel needs koffi's native module; the binary carries it (runtime/native.ts loads it).
      assets,
    }),
  );
  execFileSync(process.execPath, ["--experimental-sea-config", configPath], { stdio: ["ignore", "ignore", "inherit"] });
  const exe = path.join(dist, "agent");
  fs.rmSync(exe, { force: true });
  fs.copyFileSync(process.execPath, exe);
  fs.chmodSync(exe, 0o755);
  await withoutLiefNoise(() => inject(exe, "NODE_SEA_BLOB", fs.readFileSync(blob), { sentinelFuse: SEA_FUSE }));
  fs.rmSync(blob);
  fs.rmSync(configPath);
  fs.rmSync(entry);
  fs.rmSync(koffiName);
  for (const program of Object.keys(PROGRAMS)) fs.rmSync(path.join(dist, `${program}.cache`));
}

/**
 * Runs `work` with LIEF's (postject's) warning about Node's `.note.100` section left out of the
 * output: it reads sections it does not rewrite, says so once per section, and the binary is fine.
 * Every other line still shows.
 */
async function withoutLiefNoise(work: () => Promise<void>): Promise<void> {
  const warn = console.warn;
  const noise = /^warning: Can't find string offset for section name '\.note(\.\d+)?'/;
  console.warn = (...args: unknown[]) => {
    if (!noise.test(String(args[0]))) warn(...args);
  };
  try {
    await work();
  } finally {
    console.warn = warn;
  }
}

/** The npm package's contents: what `npm pack` ships (package.json "files"). */
function library() {
  fs.rmSync(path.join(dist, "lib"), { recursive: true, force: true });
  const tsc = path.join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.lib.json")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
}

const started = performance.now();
await bundle();
library();
if (!process.argv.includes("--bundle-only")) await singleExecutable();
console.log(`built ${path.relative(process.cwd(), dist)}/ in ${((performance.now() - started) / 1000).toFixed(1)} s`);
