/**
 * Checks on request fields that answer a bad one with `invalid-argument`.
 * What a failed request sends back is core/wire/error-reply.ts's.
 * @module
 */
import { ServiceError } from "../core/errors.ts";

/** The value of field `name` if it is a non-empty string without NUL bytes; else an invalid-argument error. */
export function requireString(fields: Record<string, unknown>, name: string): string {
  const v = fields[name];
  if (typeof v !== "string" || v === "") {
    throw new ServiceError("invalid-argument", `"${name}" must be a non-empty string`);
  }
  return withoutNul(v, name);
}

/** `value` if it holds no NUL byte (the operating system would cut the string there); else an invalid-argument error. */
export function withoutNul(value: string, name: string): string {
  if (value.includes("\0")) throw new ServiceError("invalid-argument", `"${name}" must not contain a NUL byte`);
  return value;
}

/** Largest mode a request may give: permission bits, and the file type bits of a whole `st_mode`. */
const MAX_MODE = 0o177777;

/**
 * The permission bits of field `name` (undefined when absent); a value that is not an integer from 0
 * to 0o177777 is an invalid-argument error. Node's own checks are not enough: a mode of 2^31 passes
 * them and then aborts the process inside chmod.
 */
export function optionalMode(fields: Record<string, unknown>, name = "mode"): number | undefined {
  const v = fields[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > MAX_MODE) {
    throw new ServiceError("invalid-argument", `"${name}" must be a file mode from 0 to 0o${MAX_MODE.toString(8)}`);
  }
  return v & 0o7777;
}

/** The integer in field `name` from `min` to `max` (undefined when absent); anything else is an invalid-argument error. */
export function optionalInteger(
  fields: Record<string, unknown>,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const v = fields[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ServiceError("invalid-argument", `"${name}" must be an integer from ${min} to ${max}`);
  }
  return v;
}

/** The finite number in field `name` (undefined when absent); anything else is an invalid-argument error. */
export function optionalFinite(fields: Record<string, unknown>, name: string): number | undefined {
  const v = fields[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ServiceError("invalid-argument", `"${name}" must be a finite number`);
  }
  return v;
}
