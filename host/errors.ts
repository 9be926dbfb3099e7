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
