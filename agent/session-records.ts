/**
 * The sessions as a hand-over between agent versions carries them (agent/upgrade.ts): each
 * host's record, and each attachment's delivery state, every reply its client has not
 * acknowledged included. Plain data, so it travels as MessagePack.
 * @module
 */
import { toHex } from "../core/bytes.ts";
import type { LinkSnapshot } from "../core/session/delivery.ts";
import type { HostRecord } from "./host-process.ts";
import type { Session } from "./sessions.ts";

/** One attachment, disconnected: its client resumes it on the next version. */
export interface AttachmentRecord {
  id: number;
  resumeToken: string;
  keyId: string | null;
  held: boolean;
  link: LinkSnapshot;
}

/** One session and its host. */
export interface SessionRecord {
  id: string;
  product: string;
  productRoot: string;
  openedBy: string | null;
  stats: Session["stats"];
  host: HostRecord;
  attachments: AttachmentRecord[];
}

/** Every session of an agent, and the next attachment number it would give. */
export interface SessionsSnapshot {
  nextAttachment: number;
  sessions: SessionRecord[];
}

/** `session` as a record; throws when its host's pipes cannot be handed over. */
export function sessionRecord(session: Session): SessionRecord {
  const host = session.host.record();
  if (!host) throw new Error(`session ${session.id.slice(0, 8)}: its host's pipes cannot be handed over`);
  return {
    id: session.id,
    product: session.product,
    productRoot: session.productRoot,
    openedBy: session.openedBy,
    stats: session.stats,
    host,
    attachments: [...session.attachments.values()].map((a) => ({
      id: a.id,
      resumeToken: toHex(a.resumeToken),
      keyId: a.keyId,
      held: a.held,
      link: a.link.snapshot(),
    })),
  };
}
