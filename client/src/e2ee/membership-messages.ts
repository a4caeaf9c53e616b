/**
 * The signed membership messages the reducer (membership.ts) checks:
 *
 * - announcement: identity.ts announcement body || signature || mac, where
 *   mac = HMAC-SHA256(membershipMacKey, UTF-8("sealed-meet v1 membership mac") || announcementBody || signature)
 *   proves the sender holds the invite;
 * - liveness proof: the responder's identity signature over the challenger's fresh join nonce, bound to the room,
 *   both member ids and both session keys (sent alone, or after an announcement as its announce-back);
 * - channel reset: a request, signed by the requester's identity, for a new HPKE channel;
 * - room-code commitment (signed) and reveal (opens the commitment), codes.ts.
 *
 * @module
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, fromUtf8, lp16, Reader, u32be, utf8 } from './bytes.ts';
import { ROOM_CODE_VALUE_LEN } from './codes.ts';
import { JOIN_NONCE_LEN, SIGNATURE_LEN, verify, verifyAnnouncement, type Announcement, type Identity, type Session } from './identity.ts';
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

// ------------------------------------------------------------------------------------------------
// Liveness proofs
// ------------------------------------------------------------------------------------------------

export const LIVENESS_LABEL = 'sealed-meet v1 liveness';

/** Who proves liveness to whom: the challenger's (member id, session key, join nonce) and the responder's. */
export interface LivenessContext {
  roomId: string;
  challenger: { memberId: string; sessionPublicKey: Uint8Array; joinNonce: Uint8Array };
  responder: { memberId: string; sessionPublicKey: Uint8Array };
}

/**
 * livenessInput = UTF-8("sealed-meet v1 liveness") || lp16(UTF-8 roomId) || lp16(UTF-8 challengerId)
 *                 || lp16(UTF-8 responderId) || SHA-256(challenger session pk) || SHA-256(responder session pk)
 *                 || challenger joinNonce(16)
 */
export function livenessInput(c: LivenessContext): Uint8Array {
  if (c.challenger.joinNonce.length !== JOIN_NONCE_LEN) throw new E2eeError('malformed', 'join nonce must be 16 bytes');
  return concat(
    utf8(LIVENESS_LABEL),
    lp16(utf8(c.roomId)),
    lp16(utf8(c.challenger.memberId)),
    lp16(utf8(c.responder.memberId)),
    sha256(c.challenger.sessionPublicKey),
    sha256(c.responder.sessionPublicKey),
    c.challenger.joinNonce,
  );
}

/** The responder's proof (64-byte Ed25519 signature) that its session is live for the challenger's session. */
export async function proveLiveness(identity: Identity, c: LivenessContext): Promise<Uint8Array> {
  return identity.sign(livenessInput(c));
}

export function verifyLiveness(responderIdentityPublicKey: Uint8Array, c: LivenessContext, proof: Uint8Array): boolean {
  return verify(responderIdentityPublicKey, livenessInput(c), proof);
}

/** Announce-back relay body: our signed announcement || our liveness proof for the member we answer. */
export function splitAnnounceBack(bytes: Uint8Array): { announcement: Uint8Array; proof: Uint8Array } {
  if (bytes.length < SIGNATURE_LEN + 1) throw new E2eeError('malformed', 'announce-back too short');
  return { announcement: bytes.subarray(0, bytes.length - SIGNATURE_LEN), proof: bytes.subarray(bytes.length - SIGNATURE_LEN) };
}

/** A liveness-proof relay body is the proof alone. @throws E2eeError('malformed') */
export function decodeLivenessProof(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== SIGNATURE_LEN) throw new E2eeError('malformed', 'liveness proof must be 64 bytes');
  return bytes;
}

// ------------------------------------------------------------------------------------------------
// Room-code commitments and reveals
// ------------------------------------------------------------------------------------------------

export const ROOM_CODE_COMMIT_LABEL = 'sealed-meet v1 room code commit';

export interface CodeCommit {
  round: number;
  rosterHash: Uint8Array;
  commitment: Uint8Array;
}

/**
 * commit body = u32 round || R(32) || C(32) || signature(64)
 * signature   = Ed25519(sender identity, UTF-8("sealed-meet v1 room code commit") || lp16(UTF-8 roomId)
 *               || lp16(UTF-8 senderId) || SHA-256(sender session pk) || u32 round || R || C)
 */
function commitSigInput(roomId: string, senderId: string, senderSessionPublicKey: Uint8Array, c: CodeCommit): Uint8Array {
  return concat(utf8(ROOM_CODE_COMMIT_LABEL), lp16(utf8(roomId)), lp16(utf8(senderId)), sha256(senderSessionPublicKey), u32be(c.round), c.rosterHash, c.commitment);
}

export async function encodeCodeCommit(identity: Identity, roomId: string, senderId: string, senderSessionPublicKey: Uint8Array, c: CodeCommit): Promise<Uint8Array> {
  if (c.rosterHash.length !== 32 || c.commitment.length !== 32) throw new E2eeError('malformed', 'roster hash and commitment must be 32 bytes');
  return concat(u32be(c.round), c.rosterHash, c.commitment, await identity.sign(commitSigInput(roomId, senderId, senderSessionPublicKey, c)));
}

/** @throws E2eeError('malformed' | 'bad-signature') */
export function openCodeCommit(bytes: Uint8Array, roomId: string, sender: { memberId: string; identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array }): CodeCommit {
  const r = new Reader(bytes);
  const c: CodeCommit = { round: r.u32('round'), rosterHash: r.bytes(32, 'roster hash'), commitment: r.bytes(32, 'commitment') };
  const sig = r.bytes(SIGNATURE_LEN, 'signature');
  r.end('room code commit');
  if (!verify(sender.identityPublicKey, commitSigInput(roomId, sender.memberId, sender.sessionPublicKey, c), sig)) throw new E2eeError('bad-signature', 'room code commitment signature is invalid');
  return c;
}

/** reveal body = u32 round || value(32) (checked against the sender's commitment for that round). */
export function encodeCodeReveal(round: number, value: Uint8Array): Uint8Array {
  if (value.length !== ROOM_CODE_VALUE_LEN) throw new E2eeError('malformed', 'room code value must be 32 bytes');
  return concat(u32be(round), value);
}

/** @throws E2eeError('malformed') */
export function decodeCodeReveal(bytes: Uint8Array): { round: number; value: Uint8Array } {
  const r = new Reader(bytes);
  const out = { round: r.u32('round'), value: r.bytes(ROOM_CODE_VALUE_LEN, 'value') };
  r.end('room code reveal');
  return out;
}
