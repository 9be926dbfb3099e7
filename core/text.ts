/**
 * Text an outsider controls, made safe for a log line or a terminal.
 *
 * @example
 * ```ts
 * escapeControls("cn=evil\x1b[2J"); // "cn=evil\\x1b[2J"
 * ```
 * @module
 */

// C0 but tab, DEL, C1, and the two Unicode separators that end a line in JavaScript and some terminals.
// deno-lint-ignore no-control-regex -- matching control characters is this module's job
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/g;

/**
 * Shows every control character in `text` as an escape (`\x1b`, `\u2028`), so a certificate subject, a proxy's
 * reply or a host's output cannot move the cursor, rewrite a line or fake a new one. Tabs stay as they are.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/**
 * Text for a terminal, several lines long: each line's control characters escaped, the line breaks kept.
 *
 * @example
 * ```ts
 * escapeLines("ok\ncn=\x1b[2J"); // "ok\ncn=\\x1b[2J"
 * ```
 */
export function escapeLines(text: string): string {
  return text.split("\n").map(escapeControls).join("\n");
}

/**
 * JSON for a terminal or a script: like JSON.stringify, with every string's control characters escaped too
 * (JSON.stringify leaves DEL, C1 and U+2028/2029 raw).
 *
 * @example
 * ```ts
 * safeJson({ subject: "cn=\u009b31m" }); // '{"subject":"cn=\\\\x9b31m"}'
 * ```
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === "string" ? escapeControls(v) : v));
}
