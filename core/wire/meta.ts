/**
 * The agent's answers to meta messages (target 0), independent of how the
 * connection arrived. The runtime supplies the facts ({@link AgentInfo})
 * through a callback; this module only speaks the protocol.
 *
 * @example
 * ```ts
 * const reply = await answerMeta(frame, { info: () => collectInfo() });
 * await frames.send(reply);
 * ```
 * @module
 */
import type { Frame } from "./frame.ts";
import {
  type AgentInfo,
  encodeError,
  encodeFields,
  encodePong,
  ERROR_CODE,
  MAX_PING_PAYLOAD,
  MetaCode,
} from "./messages.ts";

/** What the meta handler needs from the running agent. */
export interface MetaContext {
  info(): AgentInfo;
}

/** The reply to one meta request (every meta request gets exactly one). */
export function answerMeta(frame: Frame, context: MetaContext): Frame {
  const reply = (code: number, payload: Uint8Array): Frame => ({
    target: frame.target,
    code,
    token: frame.token,
    payload,
  });
  switch (frame.code) {
    case MetaCode.Ping:
      if (frame.payload.length > MAX_PING_PAYLOAD) {
        return reply(
          ERROR_CODE,
          encodeError({ code: "too-large", message: `ping payload over ${MAX_PING_PAYLOAD} bytes` }),
        );
      }
      return reply(MetaCode.Pong, encodePong(Date.now(), frame.payload));
    case MetaCode.Info:
      return reply(MetaCode.InfoReply, encodeFields(context.info()));
    default:
      return reply(
        ERROR_CODE,
        encodeError({ code: "unknown-code", message: `the agent has no meta message with code ${frame.code}` }),
      );
  }
}
