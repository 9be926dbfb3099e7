// Runs the doc examples named on the command line, one after another in this process, and prints
// one line per example: "example ok NAME" or "example FAIL NAME: reason". Used by test/doc.test.ts.
const files = process.argv.slice(2);
const PER_EXAMPLE_MS = 20_000;
for (const file of files) {
  const name = file.replace(/^.*[\\/]/, "").replace(/\.ts$/, "");
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      import(new URL(`file://${file}`).href),
      new Promise((
        _,
        reject,
      ) => (timer = setTimeout(
        () => reject(new Error(`did not finish within ${PER_EXAMPLE_MS / 1000} s`)),
        PER_EXAMPLE_MS,
      ))),
    ]);
    console.log(`example ok ${name}`);
  } catch (e) {
    console.log(`example FAIL ${name}: ${(e as Error).stack ?? e}`);
  } finally {
    clearTimeout(timer);
  }
}
process.exit(0);
