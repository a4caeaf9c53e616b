/**
 * Uniform outer envelope for every relay blob, so the server cannot tell a key message from any other.
 *
 * The core's relay framing (membership.ts §6: announcement 0x41, key batch 0x4B, channel reset 0x52, sealed
 * metadata 0x01) starts with a kind byte in clear. Before a blob goes to the server it is padded and sealed as
 * metadata (metadata.ts, the invite's metadata key, AAD binding room and sender), so on the wire every relay blob
 * is `0x01 || nonce(12) || AES-GCM(pad(inner))`, whatever it carries:
 *
 *     pad(inner) = inner || 0x80 || 0x00* up to the next multiple of RELAY_BUCKET bytes (ISO/IEC 7816-4 padding)
 *
 * Sizes are bucketed to 1024 bytes (a key batch for many members still spans several buckets: sizes and timing
 * are metadata, as the README says). A blob that does not open under the invite's metadata key, or whose padding
 * is wrong, is rejected with a typed error; the caller treats it as a message from someone without the invite.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import { openMetadata, sealMetadata } from './metadata.ts';

export const RELAY_BUCKET = 1024;
/** Largest padded inner size that still fits the 65536-char relay limit after sealing (49152 - 29 bytes). */
export const MAX_PADDED = 49_152 - 29;

/** Pad to the next bucket boundary (never beyond MAX_PADDED). Pure; returns a new array. */
export function padRelay(inner: Uint8Array, bucket = RELAY_BUCKET): Uint8Array {
  const min = inner.length + 1;
  if (min > MAX_PADDED) throw new E2eeError('malformed', `relay message too large (${inner.length} bytes)`);
  const size = Math.min(Math.ceil(min / bucket) * bucket, MAX_PADDED);
  const out = new Uint8Array(size);
  out.set(inner, 0);
  out[inner.length] = 0x80;
  return out;
}

/** Remove ISO/IEC 7816-4 padding; typed error if there is none. Returns a subarray view. */
export function unpadRelay(padded: Uint8Array): Uint8Array {
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) throw new E2eeError('malformed', 'relay padding missing');
  return padded.subarray(0, i);
}

export async function sealRelay(metadataKey: Uint8Array, roomId: string, senderId: string, inner: Uint8Array): Promise<Uint8Array> {
  const padded = padRelay(inner);
  try {
    return await sealMetadata(metadataKey, roomId, senderId, padded);
  } finally {
    padded.fill(0);
  }
}

export async function openRelay(metadataKey: Uint8Array, roomId: string, senderId: string, outer: Uint8Array): Promise<Uint8Array> {
  const padded = await openMetadata(metadataKey, roomId, senderId, outer);
  return unpadRelay(padded);
}
