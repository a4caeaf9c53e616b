/**
 * Sender indices: the 16-bit index of each member in the SFrame KIDs (kid.ts layout), computed the same way by
 * every member from the verified roster.
 *
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, utf8 } from './bytes.ts';
import { E2eeError } from './errors.ts';

export const SENDER_INDEX_LABEL = 'sealed-meet v1 sender index';

function indexHash(memberId: string): number {
  const h = sha256(concat(utf8(SENDER_INDEX_LABEL), utf8(memberId)));
  return (h[0]! << 8) | h[1]!;
}

/**
 * Deterministic 16-bit sender index per member, the same on every member that sees the same roster:
 *   h(m) = first 2 bytes (big-endian) of SHA-256(UTF-8("sealed-meet v1 sender index") || UTF-8(memberId));
 * members are taken in order of (h(m), memberId) and each gets the first free index starting at h(m) (linear
 * probing mod 2^16). Unlike "position in the sorted roster", a member's index does not move when others join or
 * leave, except in the rare case of a collision chain (about n/65536 per join), which the reducer reports
 * (`sender-index-changed`, or a fresh send key if it is our own index).
 */
export function assignSenderIndices(memberIds: Iterable<string>): Map<string, number> {
  const list = [...new Set(memberIds)].map((id) => ({ id, h: indexHash(id) }));
  if (list.length > 0x10000) throw new E2eeError('state', 'more than 65536 members');
  list.sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const used = new Set<number>();
  const out = new Map<string, number>();
  for (const { id, h } of list) {
    let i = h;
    while (used.has(i)) i = (i + 1) & 0xffff;
    used.add(i);
    out.set(id, i);
  }
  return out;
}
