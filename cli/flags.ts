/**
 * Command-line flags as cac hands them to a command: by camelCase name, each
 * a string, a number, a boolean, or a list of them when the option repeats.
 * @module
 */
import { ConfigError } from "../runtime/errors.ts";

/** Flags as cac parses them (strings, numbers, booleans or arrays of them). */
export type Flags = Record<string, unknown>;

/** The flag's value as a string; the last one when it was given more than once. */
export function str(v: unknown): string | undefined {
  if (Array.isArray(v)) v = v[v.length - 1];
  return v === undefined || v === null || v === "" ? undefined : String(v);
}

/** An option's name as typed (`--key-file`) in a message where cac wrote it camelCased (`--keyFile`). */
export function asTyped(message: string): string {
  return message.replace(
    /`--([a-z][A-Za-z0-9]*)`/g,
    (_m, name: string) => `\`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}\``,
  );
}

/**
 * The first option in `argv` that takes a value (`--out <file>`) but was given none: at the end, or
 * followed by another option. cac would read it as `true`, and `keygen --out` write a file named "true".
 */
export function optionMissingValue(argv: readonly string[], valued: readonly string[]): string | undefined {
  const end = argv.indexOf("--");
  const words = end < 0 ? argv : argv.slice(0, end);
  return words.find((word, i) => {
    if (!valued.includes(word)) return false;
    const next = words[i + 1];
    return next === undefined || (next.startsWith("-") && next !== "-" && !/^-\d/.test(next));
  });
}

/**
 * The flag's value as a whole number of at least `min` (the last one when repeated), `fallback` when absent;
 * anything else throws a sentence naming the option as typed.
 */
export function wholeNumber(v: unknown, option: string, min: number, fallback: number): number {
  const s = str(v);
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`${option} must be a whole number, ${min} or more, not "${s}"`);
  }
  return n;
}
