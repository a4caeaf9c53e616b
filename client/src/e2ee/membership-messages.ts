/**
 * The two signed membership messages the reducer (membership.ts) checks:
 *
 * - announcement: identity.ts announcement body || signature || mac, where
 *   mac = HMAC-SHA256(membershipMacKey, UTF-8("sealed-meet v1 membership mac") || announcementBody || signature)
 *   proves the sender holds the invite;
 * - channel reset: a request, signed by the requester's identity, for a new HPKE channel.
 *
 * @module
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, fromUtf8, lp16, Reader, u32be, utf8 } from './bytes.ts';
import { SIGNATURE_LEN, verify, verifyAnnouncement, type Announcement, type Session } from './identity.ts';
import { E2eeError } from './errors.ts';

export const MEMBERSHIP_MAC_LABEL = 'sealed-meet v1 membership mac';
export const MAC_LEN = 32;

// ------------------------------------------------------------------------------------------------
// Announcements with membership MAC
// ------------------------------------------------------------------------------------------------

export function announcementMac(macKey: Uint8Array, body: Uint8Array, signature: Uint8Array): Uint8Array {
  if (macKey.length !== 32) throw new E2eeError('bad-key', 'membership MAC key must be 32 bytes');
  return hmac(sha256, macKey, concat(utf8(MEMBERSHIP_MAC_LABEL), body, signature));
}

/** body || signature || mac: the relay body of our own announcement. */
export function encodeSignedAnnouncement(session: Pick<Session, 'body' | 'signature'>, macKey: Uint8Array): Uint8Array {
  return concat(session.body, session.signature, announcementMac(macKey, session.body, session.signature));
}

/**
 * Checks MAC (first: proves the invite), then signature and room.
 * @throws E2eeError('malformed' | 'bad-mac' | 'bad-signature' | 'wrong-context' | 'unsupported-version')
 */
export function openSignedAnnouncement(bytes: Uint8Array, macKey: Uint8Array, roomId: string): Announcement {
  if (bytes.length < 1 + SIGNATURE_LEN + MAC_LEN) throw new E2eeError('malformed', 'announcement too short');
  const body = bytes.subarray(0, bytes.length - SIGNATURE_LEN - MAC_LEN);
  const sig = bytes.subarray(bytes.length - SIGNATURE_LEN - MAC_LEN, bytes.length - MAC_LEN);
  const mac = bytes.subarray(bytes.length - MAC_LEN);
  if (!equalBytes(mac, announcementMac(macKey, body, sig))) throw new E2eeError('bad-mac', 'announcement MAC is invalid (sender does not hold the invite)');
  return verifyAnnouncement(body, sig, roomId);
}

// ------------------------------------------------------------------------------------------------
// Channel reset requests
// ------------------------------------------------------------------------------------------------

export const CHANNEL_RESET_LABEL = 'sealed-meet v1 channel reset';
export const CHANNEL_RESET_VERSION = 0x01;

/**
 * A recipient that got a follow-up envelope on a channel it does not have (the setup message was lost) asks the
 * sender to set up a new channel:
 *   resetBody = 0x01 || lp16(UTF-8 roomId) || lp16(UTF-8 requesterId) || lp16(UTF-8 senderId) || u32 epoch
 *   signature = Ed25519(requester identity, UTF-8("sealed-meet v1 channel reset") || resetBody)
 * `epoch` is the epoch of the batch that failed. The sender honours each (requester, epoch) at most once and only for
 * epochs it has used, then sends its current key to the requester on a new channel. (A replayed request does nothing;
 * the requester is a verified member, entitled to the current key anyway.)
 */
export function encodeChannelResetBody(roomId: string, requesterId: string, senderId: string, epoch: number): Uint8Array {
  return concat(Uint8Array.of(CHANNEL_RESET_VERSION), lp16(utf8(roomId)), lp16(utf8(requesterId)), lp16(utf8(senderId)), u32be(epoch));
}

export function channelResetSigInput(body: Uint8Array): Uint8Array {
  return concat(utf8(CHANNEL_RESET_LABEL), body);
}

/** @throws E2eeError('malformed' | 'unsupported-version' | 'bad-signature') */
export function openChannelReset(bytes: Uint8Array, requesterIdentityPublicKey: Uint8Array): { roomId: string; requesterId: string; senderId: string; epoch: number } {
  if (bytes.length < 1 + SIGNATURE_LEN) throw new E2eeError('malformed', 'channel reset too short');
  const body = bytes.subarray(0, bytes.length - SIGNATURE_LEN);
  const sig = bytes.subarray(bytes.length - SIGNATURE_LEN);
  const r = new Reader(body);
  const v = r.u8('version');
  if (v !== CHANNEL_RESET_VERSION) throw new E2eeError('unsupported-version', `channel reset version ${v}`);
  const roomId = fromUtf8(r.lp16('roomId'));
  const requesterId = fromUtf8(r.lp16('requester'));
  const senderId = fromUtf8(r.lp16('sender'));
  const epoch = r.u32('epoch');
  r.end('channel reset');
  if (!verify(requesterIdentityPublicKey, channelResetSigInput(body), sig)) throw new E2eeError('bad-signature', 'channel reset signature is invalid');
  return { roomId, requesterId, senderId, epoch };
}
