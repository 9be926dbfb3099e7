/**
 * Which products each key may use, and how much of the agent one key may
 * hold at once. A client's key decides what it sees: sessions of products
 * its key may not use are not listed to it, and it can neither attach to
 * them, nor resume, signal or close them (docs/security.md "Least privilege").
 * @module
 */
import type { KeyScopes } from "./keystore.ts";

/** How many sessions and attachments one key may hold at once. */
export interface KeyLimits {
  sessions: number;
  attachments: number;
}

export class KeyAccess {
  constructor(
    /** Every accepted key's products; null when keys carry no restrictions (insecure mode, LocalAgent). */
    public scopes: KeyScopes | null,
    /** Replaced by a reload; what a key holds already stays. */
    public limits: KeyLimits,
  ) {}

  /** True if a client authenticated with `keyId` (null: no key, insecure or local) may use `product`. */
  mayUse(keyId: string | null, product: string): boolean {
    if (keyId === null || this.scopes === null) return true;
    if (!this.scopes.has(keyId)) return false; // removed by a reload: its connections are closing
    const products = this.scopes.get(keyId)!;
    return products === null || products.includes(product);
  }

  /** True if `keyId` is still accepted but may no longer use `product` (a reload took it away). */
  lost(keyId: string | null, product: string): boolean {
    return keyId !== null && this.scopes !== null && this.scopes.has(keyId) && !this.mayUse(keyId, product);
  }

  /** The products `keyId` may use, for an error message. */
  describe(keyId: string | null): string {
    const products = keyId === null ? null : this.scopes?.get(keyId);
    return products ? products.join(", ") : "none";
  }
}
