/**
 * Relay framing: the `blob` of the signaling `relay` event (inside the relay-envelope.ts outer envelope) is
 * base64url of 1 kind byte || body:
 *   0x41 'A' announcement:  body = announcementBody || signature(64) || mac(32)   (membership-messages.ts)
 *   0x4B 'K' key batch:     body = envelope.ts batch
 *   0x52 'R' channel reset: body = resetBody || signature(64)                     (membership-messages.ts)
 *   0x01     metadata:      the whole blob is a metadata.ts sealed blob (whose version byte is 0x01), so blobs made
 *                           with `toBase64url(sealMetadata(...))` need no extra framing (opaque here; delivered
 *                           only from verified members)
 *
 * @module
 */
import { concat, fromBase64url, toBase64url } from './bytes.ts';
import { E2eeError } from './errors.ts';

/** First byte of a relay blob. Metadata blobs are metadata.ts sealed blobs as they are (version byte 0x01). */
export const RELAY_KIND = { announcement: 0x41, 'key-batch': 0x4b, 'channel-reset': 0x52, metadata: 0x01 } as const;
export type RelayKind = keyof typeof RELAY_KIND;

/** `metadata`: `body` must be the sealed blob itself (it already starts with 0x01). */
export function encodeRelay(kind: RelayKind, body: Uint8Array): string {
  if (kind === 'metadata') {
    if (body[0] !== RELAY_KIND.metadata) throw new E2eeError('malformed', 'metadata relay body must be a sealed metadata blob');
    return toBase64url(body);
  }
  return toBase64url(concat(Uint8Array.of(RELAY_KIND[kind]), body));
}

/** @throws E2eeError('malformed') */
export function decodeRelay(blob: string): { kind: RelayKind; body: Uint8Array } {
  const b = fromBase64url(blob);
  if (b.length < 1) throw new E2eeError('malformed', 'empty relay blob');
  const k = (Object.keys(RELAY_KIND) as RelayKind[]).find((x) => RELAY_KIND[x] === b[0]);
  if (k === undefined) throw new E2eeError('malformed', `unknown relay kind 0x${b[0]!.toString(16)}`);
  return { kind: k, body: k === 'metadata' ? b : b.subarray(1) };
}
