/**
 * Invite links: `/m/<roomId>#<fragment>`, where `roomId = roomIdFor(secret)` (a commitment to the secret).
 *
 * Fragment (without '#'):  `v1.<secret>[.<fingerprint>]`
 *   - `secret`: 32 random bytes, base64url without padding (43 chars).
 *   - `fingerprint` (optional): the creator's 32-byte identity fingerprint (see identity.ts), base64url (43 chars),
 *     so joiners verify the creator automatically.
 *
 * Keys derived from the secret (HKDF-SHA256, RFC 5869), bound to the room:
 *   PRK = HKDF-Extract(salt = UTF-8(roomId), IKM = secret)
 *   K_purpose = HKDF-Expand(PRK, info = UTF-8(label), L = 32)
 * with one label per purpose (see `INVITE_LABELS`). The room id is in the salt, so the same secret used for two
 * rooms gives unrelated keys (and unrelated access tokens).
 *
 * @module
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fromBase64urlExact, randomBytes, toBase64url, utf8, wipe } from './bytes.ts';
import { E2eeError } from './errors.ts';

export const INVITE_VERSION = 'v1';
export const INVITE_SECRET_LEN = 32;
export const FINGERPRINT_LEN = 32;
export const ROOM_ID_RE = /^[A-Za-z0-9_-]{22}$/;

/** HKDF-Expand `info` labels, one per purpose. */
export const INVITE_LABELS = {
  accessToken: 'sealed-meet v1 access-token',
  membershipMacKey: 'sealed-meet v1 membership-mac',
  metadataKey: 'sealed-meet v1 metadata',
  psk: 'sealed-meet v1 hpke-psk',
  pskId: 'sealed-meet v1 hpke-psk-id',
} as const;

export interface InviteKeys {
  /** 32 bytes, base64url (43 chars). Sent to the server at join; the server keeps only sha256(token). */
  accessToken: string;
  /** 32 bytes: HMAC-SHA256 key for membership announcements. */
  membershipMacKey: Uint8Array;
  /** 32 bytes: AES-256-GCM key for metadata (display names, avatars, chat envelopes). */
  metadataKey: Uint8Array;
  /** 32 bytes: HPKE mode_psk PSK for key transport. */
  psk: Uint8Array;
  /** 32 bytes: HPKE psk_id. */
  pskId: Uint8Array;
}

export interface ParsedInvite {
  secret: Uint8Array;
  creatorFingerprint?: Uint8Array;
}

/** HKDF-Expand `info` label of the room id (a commitment to the secret, see `roomIdFor`). */
export const ROOM_ID_LABEL = 'sealed-meet v1 room id';

/**
 * The room id of an invite secret: `base64url(HKDF-SHA256(salt = "", IKM = secret, info = UTF-8(ROOM_ID_LABEL), L = 16))`,
 * 22 characters. The id commits to the secret, so a link with one wrong character in either part is recognised as
 * damaged in the browser (`checkRoomId`) before it reaches the server — it can no longer open (and so lock) a room
 * the correct link cannot open. The id reveals nothing about the secret (HKDF is one-way; the secret has 256 bits).
 */
export function roomIdFor(secret: Uint8Array): string {
  if (secret.length !== INVITE_SECRET_LEN) throw new E2eeError('bad-key', `invite secret must be ${INVITE_SECRET_LEN} bytes`);
  const id = hkdf(sha256, secret, new Uint8Array(0), utf8(ROOM_ID_LABEL), 16);
  const out = toBase64url(id);
  wipe(id);
  return out;
}

/** @throws E2eeError('malformed') when `roomId` is not the room of `secret` (a damaged or mixed-up link). */
export function checkRoomId(secret: Uint8Array, roomId: string): void {
  if (roomIdFor(secret) !== roomId) throw new E2eeError('malformed', 'its room and its key do not belong together (a character was changed or lost when it was copied)');
}

export function assertRoomId(roomId: string): void {
  if (!ROOM_ID_RE.test(roomId)) throw new E2eeError('malformed', 'roomId must be 22 base64url chars');
}

/** Formats a fragment (no '#'). */
export function formatInviteFragment(secret: Uint8Array, creatorFingerprint?: Uint8Array): string {
  if (secret.length !== INVITE_SECRET_LEN) throw new E2eeError('bad-key', `invite secret must be ${INVITE_SECRET_LEN} bytes`);
  if (creatorFingerprint !== undefined && creatorFingerprint.length !== FINGERPRINT_LEN)
    throw new E2eeError('bad-key', `fingerprint must be ${FINGERPRINT_LEN} bytes`);
  const parts = [INVITE_VERSION, toBase64url(secret)];
  if (creatorFingerprint !== undefined) parts.push(toBase64url(creatorFingerprint));
  return parts.join('.');
}

/** Fresh 256-bit invite secret, its room id and its fragment. */
export function generateInvite(creatorFingerprint?: Uint8Array): { secret: Uint8Array; roomId: string; fragment: string } {
  const secret = randomBytes(INVITE_SECRET_LEN);
  return { secret, roomId: roomIdFor(secret), fragment: formatInviteFragment(secret, creatorFingerprint) };
}

/**
 * Parses a fragment (with or without a leading '#'). Strict: exact version, exact lengths, canonical base64url.
 * @throws E2eeError('unsupported-version' | 'malformed')
 */
export function parseInviteFragment(fragment: string): ParsedInvite {
  const f = fragment.startsWith('#') ? fragment.slice(1) : fragment;
  if (f.length === 0) throw new E2eeError('malformed', 'invite link has no secret (empty fragment): ask for the full link');
  const parts = f.split('.');
  if (parts[0] !== INVITE_VERSION) {
    if (/^v\d+$/.test(parts[0] ?? '')) throw new E2eeError('unsupported-version', `invite version ${parts[0]} is not supported`);
    throw new E2eeError('malformed', 'invite fragment must start with "v1."');
  }
  if (parts.length < 2 || parts.length > 3) throw new E2eeError('malformed', 'invite fragment must be v1.<secret>[.<fingerprint>]');
  const s = parts[1]!;
  if (s.length !== 43) throw new E2eeError('malformed', `invite secret must be 43 characters, got ${s.length} (link truncated?)`);
  const secret = fromBase64urlExact(s, INVITE_SECRET_LEN, 'invite secret');
  if (parts.length === 3) {
    const fp = parts[2]!;
    if (fp.length !== 43) throw new E2eeError('malformed', `creator fingerprint must be 43 characters, got ${fp.length} (link truncated?)`);
    return { secret, creatorFingerprint: fromBase64urlExact(fp, FINGERPRINT_LEN, 'creator fingerprint') };
  }
  return { secret };
}

/** Derives every invite key for `roomId` (see module doc for the exact HKDF calls). */
export async function deriveInviteKeys(secret: Uint8Array, roomId: string): Promise<InviteKeys> {
  return deriveInviteKeysSync(secret, roomId);
}

/** Synchronous form of `deriveInviteKeys`. */
export function deriveInviteKeysSync(secret: Uint8Array, roomId: string): InviteKeys {
  if (secret.length !== INVITE_SECRET_LEN) throw new E2eeError('bad-key', `invite secret must be ${INVITE_SECRET_LEN} bytes`);
  assertRoomId(roomId);
  const salt = utf8(roomId);
  const k = (label: string): Uint8Array => hkdf(sha256, secret, salt, utf8(label), 32);
  const tokenBytes = k(INVITE_LABELS.accessToken);
  const accessToken = toBase64url(tokenBytes);
  wipe(tokenBytes);
  return {
    accessToken,
    membershipMacKey: k(INVITE_LABELS.membershipMacKey),
    metadataKey: k(INVITE_LABELS.metadataKey),
    psk: k(INVITE_LABELS.psk),
    pskId: k(INVITE_LABELS.pskId),
  };
}

/** Wipes the secret parts of `InviteKeys` (the access token is a string and cannot be wiped). */
export function wipeInviteKeys(keys: InviteKeys): void {
  wipe(keys.membershipMacKey, keys.metadataKey, keys.psk, keys.pskId);
}
