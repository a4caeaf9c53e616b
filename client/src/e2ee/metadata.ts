/**
 * Sealed metadata (display names, avatars, profile fields, chat envelopes) under the invite's metadata key.
 *
 * Format: `0x01 || nonce(12) || AES-256-GCM ciphertext+tag(16)`; the nonce is random (96 bits).
 * AAD = UTF-8("sealed-meet v1 metadata") || 0x01 || lp16(UTF-8(roomId)) || lp16(UTF-8(senderId))
 * (lp16 = u16 big-endian length prefix). A blob moved to another room or re-attributed to another sender fails.
 *
 * Random 96-bit nonces: keep one key below 2^32 messages (NIST SP 800-38D §8.3); a meeting is far below that.
 *
 * @module
 */
import { ab, concat, lp16, randomBytes, utf8 } from './bytes.ts';
import { E2eeError } from './errors.ts';

export const METADATA_VERSION = 0x01;
export const METADATA_LABEL = 'sealed-meet v1 metadata';
const NONCE_LEN = 12;
const TAG_LEN = 16;

function aad(roomId: string, senderId: string): Uint8Array<ArrayBuffer> {
  return concat(utf8(METADATA_LABEL), Uint8Array.of(METADATA_VERSION), lp16(utf8(roomId)), lp16(utf8(senderId)));
}

async function importKey(metadataKey: Uint8Array): Promise<CryptoKey> {
  if (metadataKey.length !== 32) throw new E2eeError('bad-key', 'metadata key must be 32 bytes');
  return crypto.subtle.importKey('raw', ab(metadataKey), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

export async function sealMetadata(
  metadataKey: Uint8Array,
  roomId: string,
  senderId: string,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const key = await importKey(metadataKey);
  const nonce = randomBytes(NONCE_LEN);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad(roomId, senderId), tagLength: 128 }, key, ab(plaintext)),
  );
  return concat(Uint8Array.of(METADATA_VERSION), nonce, ct);
}

/** @throws E2eeError('malformed' | 'unsupported-version' | 'auth' | 'bad-key') */
export async function openMetadata(
  metadataKey: Uint8Array,
  roomId: string,
  senderId: string,
  sealed: Uint8Array,
): Promise<Uint8Array> {
  if (sealed.length < 1 + NONCE_LEN + TAG_LEN) throw new E2eeError('malformed', 'sealed metadata is too short');
  if (sealed[0] !== METADATA_VERSION) throw new E2eeError('unsupported-version', `sealed metadata version ${sealed[0]}`);
  const key = await importKey(metadataKey);
  const nonce = ab(sealed.subarray(1, 1 + NONCE_LEN));
  try {
    const pt = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: aad(roomId, senderId), tagLength: 128 },
      key,
      ab(sealed.subarray(1 + NONCE_LEN)),
    );
    return new Uint8Array(pt);
  } catch {
    throw new E2eeError('auth', 'sealed metadata failed authentication (wrong room, sender, key, or tampered)');
  }
}
