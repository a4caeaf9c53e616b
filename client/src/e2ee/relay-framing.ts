/**
 * Relay framing: the bytes of a membership message (sealed into the relay-envelope.ts outer envelope before they
 * go to the server; base64url exists only at the socket edge) are 1 kind byte || body:
 *   0x41 'A' announcement:   body = announcementBody || signature(64) || mac(32)   (membership-messages.ts)
 *   0x42 'B' announce-back:  body = announcement (as 'A') || liveness proof(64)    (membership-messages.ts)
 *   0x50 'P' liveness proof: body = liveness proof(64)                             (membership-messages.ts)
 *   0x4B 'K' key batch:      body = envelope.ts batch
 *   0x52 'R' channel reset:  body = resetBody || signature(64)                     (membership-messages.ts)
 *   0x43 'C' code commit:    body = u32 round || R(32) || C(32) || signature(64)    (membership-messages.ts)
 *   0x56 'V' code reveal:    body = u32 round || value(32)                         (membership-messages.ts)
 *   0x01     metadata:      the whole message is a metadata.ts sealed blob (whose version byte is 0x01), so
 *                           `sealMetadata(...)` output needs no extra framing (opaque here; delivered only from
 *                           verified members)
 *
 * @module
 */
import { concat } from './bytes.ts';
import { E2eeError } from './errors.ts';

/** First byte of a relay blob. Metadata blobs are metadata.ts sealed blobs as they are (version byte 0x01). */
export const RELAY_KIND = {
  announcement: 0x41,
  'announce-back': 0x42,
  'liveness-proof': 0x50,
  'key-batch': 0x4b,
  'channel-reset': 0x52,
  'code-commit': 0x43,
  'code-reveal': 0x56,
  metadata: 0x01,
} as const;
export type RelayKind = keyof typeof RELAY_KIND;

/** First bytes of the messages for the key agent (every kind but metadata). */
export const MEMBERSHIP_KIND_BYTES: ReadonlySet<number> = new Set(Object.values(RELAY_KIND).filter((b) => b !== RELAY_KIND.metadata));

/** `metadata`: `body` must be the sealed blob itself (it already starts with 0x01). */
export function encodeRelay(kind: RelayKind, body: Uint8Array): Uint8Array {
  if (kind === 'metadata') {
    if (body[0] !== RELAY_KIND.metadata) throw new E2eeError('malformed', 'metadata relay body must be a sealed metadata blob');
    return body.slice();
  }
  return concat(Uint8Array.of(RELAY_KIND[kind]), body);
}

/** @throws E2eeError('malformed') */
export function decodeRelay(b: Uint8Array): { kind: RelayKind; body: Uint8Array } {
  if (b.length < 1) throw new E2eeError('malformed', 'empty relay blob');
  const k = (Object.keys(RELAY_KIND) as RelayKind[]).find((x) => RELAY_KIND[x] === b[0]);
  if (k === undefined) throw new E2eeError('malformed', `unknown relay kind 0x${b[0]!.toString(16)}`);
  return { kind: k, body: k === 'metadata' ? b : b.subarray(1) };
}
