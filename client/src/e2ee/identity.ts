/**
 * Long-term identity (Ed25519, one per browser profile) and per-join session keys (X-Wing).
 *
 * - Signatures: Ed25519 (RFC 8032). Signing goes through one seam, `Identity.sign` (async): a non-extractable
 *   WebCrypto key where the browser has Ed25519, the raw seed with @noble/curves only where it has not (identity-key.ts
 *   decides and holds both). Verification needs only public keys and stays synchronous: @noble/curves, strict
 *   (`zip215: false`: canonical encodings, s < L, no small-order public keys accepted by the cofactorless equation).
 * - Fingerprint: SHA-256(UTF-8("sealed-meet v1 fingerprint") || publicKey), full 32 bytes (no truncation).
 *   Shown in invites (base64url) and stored in verification records.
 * - Session key: X-Wing (draft-connolly-cfrg-xwing-kem; `ml_kem768_x25519` in @noble/post-quantum), one per
 *   meeting join. Secret key = 32-byte seed, public key = 1216 bytes (ML-KEM-768 ek 1184 || X25519 32),
 *   ciphertext (HPKE `enc`) = 1120 bytes. The same byte formats are used by @hpke/hybridkem-x-wing (tested).
 * - Announcement body (what the session signature covers), all integers big-endian:
 *     0x01 (version) || lp16(UTF-8 roomId) || lp16(UTF-8 memberId) || identityPublicKey(32)
 *     || sessionPublicKey(1216) || joinNonce(16)
 *   signature = Ed25519(identity, UTF-8("sealed-meet v1 announcement") || body)
 *
 * @module
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { concat, fromUtf8, lp16, randomBytes, Reader, utf8, wipe } from './bytes.ts';
import { E2eeError } from './errors.ts';

export const IDENTITY_PUBLIC_LEN = 32;
export const IDENTITY_SECRET_LEN = 32;
export const SIGNATURE_LEN = 64;
export const FINGERPRINT_LEN = 32;
export const SESSION_PUBLIC_LEN = 1216;
export const SESSION_SECRET_LEN = 32;
export const XWING_ENC_LEN = 1120;
export const JOIN_NONCE_LEN = 16;
export const ANNOUNCEMENT_VERSION = 0x01;

export const FINGERPRINT_LABEL = 'sealed-meet v1 fingerprint';
export const ANNOUNCEMENT_SIG_LABEL = 'sealed-meet v1 announcement';

/** This profile's long-term Ed25519 identity as the protocol sees it (identity-key.ts makes and stores them). */
export interface Identity {
  /** Ed25519 public key, 32 bytes. */
  readonly publicKey: Uint8Array;
  /** Ed25519 signature (RFC 8032 §5.1.6, 64 bytes) over `message`; the secret key never leaves the implementation. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export interface SessionKeyPair {
  /** X-Wing secret key (32-byte seed). Secret: wipe when the meeting ends. */
  secretKey: Uint8Array;
  /** X-Wing public key, 1216 bytes (the HPKE KEM's serialized public key). */
  publicKey: Uint8Array;
}

export interface Announcement {
  roomId: string;
  memberId: string;
  identityPublicKey: Uint8Array;
  sessionPublicKey: Uint8Array;
  joinNonce: Uint8Array;
}

export interface Session {
  keyPair: SessionKeyPair;
  announcement: Announcement;
  /** Encoded announcement body (see module doc). */
  body: Uint8Array;
  /** Ed25519 signature over the labelled body. */
  signature: Uint8Array;
}

/** Strict RFC 8032 verification. Returns false (never throws) for any bad input. */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== IDENTITY_PUBLIC_LEN || signature.length !== SIGNATURE_LEN) return false;
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** SHA-256(UTF-8("sealed-meet v1 fingerprint") || publicKey), 32 bytes. */
export function fingerprint(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== IDENTITY_PUBLIC_LEN) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
  return sha256(concat(utf8(FINGERPRINT_LABEL), publicKey));
}

/** Fresh X-Wing key pair (noble `ml_kem768_x25519`). */
export function generateSessionKeyPair(seed?: Uint8Array): SessionKeyPair {
  const s = seed ?? randomBytes(SESSION_SECRET_LEN);
  if (s.length !== SESSION_SECRET_LEN) throw new E2eeError('bad-key', 'X-Wing seed must be 32 bytes');
  const kp = ml_kem768_x25519.keygen(s);
  return { secretKey: kp.secretKey, publicKey: kp.publicKey };
}

export function encodeAnnouncement(a: Announcement): Uint8Array {
  if (a.identityPublicKey.length !== IDENTITY_PUBLIC_LEN) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
  if (a.sessionPublicKey.length !== SESSION_PUBLIC_LEN) throw new E2eeError('bad-key', 'session public key must be 1216 bytes');
  if (a.joinNonce.length !== JOIN_NONCE_LEN) throw new E2eeError('malformed', 'join nonce must be 16 bytes');
  return concat(
    Uint8Array.of(ANNOUNCEMENT_VERSION),
    lp16(utf8(a.roomId)),
    lp16(utf8(a.memberId)),
    a.identityPublicKey,
    a.sessionPublicKey,
    a.joinNonce,
  );
}

/** @throws E2eeError('malformed' | 'unsupported-version') */
export function decodeAnnouncement(body: Uint8Array): Announcement {
  const r = new Reader(body);
  const v = r.u8('version');
  if (v !== ANNOUNCEMENT_VERSION) throw new E2eeError('unsupported-version', `announcement version ${v}`);
  const roomId = fromUtf8(r.lp16('roomId'));
  const memberId = fromUtf8(r.lp16('memberId'));
  const identityPublicKey = r.bytes(IDENTITY_PUBLIC_LEN, 'identity public key');
  const sessionPublicKey = r.bytes(SESSION_PUBLIC_LEN, 'session public key');
  const joinNonce = r.bytes(JOIN_NONCE_LEN, 'join nonce');
  r.end('announcement');
  return { roomId, memberId, identityPublicKey, sessionPublicKey, joinNonce };
}

function announcementSigInput(body: Uint8Array): Uint8Array {
  return concat(utf8(ANNOUNCEMENT_SIG_LABEL), body);
}

/**
 * New session for one meeting join: a fresh X-Wing key pair and the signed announcement body.
 * `memberId` is the server-assigned peer id (from the join response); `joinNonce` defaults to 16 random bytes.
 */
export async function newSession(identity: Identity, roomId: string, memberId: string, joinNonce: Uint8Array = randomBytes(JOIN_NONCE_LEN)): Promise<Session> {
  const keyPair = generateSessionKeyPair();
  const announcement: Announcement = {
    roomId,
    memberId,
    identityPublicKey: identity.publicKey.slice(),
    sessionPublicKey: keyPair.publicKey,
    joinNonce: joinNonce.slice(),
  };
  const body = encodeAnnouncement(announcement);
  try {
    return { keyPair, announcement, body, signature: await identity.sign(announcementSigInput(body)) };
  } catch (e) {
    wipe(keyPair.secretKey);
    throw e;
  }
}

/**
 * Parses a signed announcement body and checks its signature and that it is for `roomId`.
 * @throws E2eeError('malformed' | 'unsupported-version' | 'bad-signature' | 'wrong-context')
 */
export function verifyAnnouncement(body: Uint8Array, signature: Uint8Array, roomId: string): Announcement {
  const a = decodeAnnouncement(body);
  if (!verify(a.identityPublicKey, announcementSigInput(body), signature)) throw new E2eeError('bad-signature', 'announcement signature is invalid');
  if (a.roomId !== roomId) throw new E2eeError('wrong-context', 'announcement is for another room');
  return a;
}

export function wipeSession(session: Session): void {
  wipe(session.keyPair.secretKey);
}
