/**
 * Signed member messages (display-name profiles and chat): each carries a per-session sequence number and an
 * Ed25519 signature by the sender's identity key over the room, the sender's member id, its session public key, the
 * sequence number and the content. The outer envelope and the chat key already bind room and sender id under keys
 * every member holds; the signature adds what they cannot:
 * - the message is the sender's own (not forged by another invite holder under its member id);
 * - it belongs to THIS session of the sender (a server recycling a member id cannot replay an old name or message);
 * - with the sequence number, receivers show each message once (a replay is recognised and dropped).
 *
 *     sig_input = UTF-8("sealed-meet v1 signed message") || kind (1 byte: 0x50 profile, 0x43 chat)
 *              || lp16(UTF-8(roomId)) || lp16(UTF-8(memberId)) || SHA-256(sessionPublicKey) || u64(seq) || body
 *     profile body = UTF-8(name);   chat body = u64(at) || UTF-8(text)
 *
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, lp16, u64be, utf8 } from './bytes.ts';
import { E2eeError } from './errors.ts';
import { SIGNATURE_LEN, verify, type Identity } from './identity.ts';

export const SIGNED_MESSAGE_LABEL = 'sealed-meet v1 signed message';
export const SIGNED_KIND = { profile: 0x50, chat: 0x43 } as const;
export type SignedKind = keyof typeof SIGNED_KIND;
/** Sequence numbers start at 1 per session and never exceed this (JSON-safe integers). */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

export interface SignedContext {
  roomId: string;
  memberId: string;
  sessionPublicKey: Uint8Array;
}

function sigInput(kind: SignedKind, ctx: SignedContext, seq: number, body: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new E2eeError('range', 'sequence number out of range');
  return concat(utf8(SIGNED_MESSAGE_LABEL), Uint8Array.of(SIGNED_KIND[kind]), lp16(utf8(ctx.roomId)), lp16(utf8(ctx.memberId)), sha256(ctx.sessionPublicKey), u64be(seq), body);
}

/** The body a chat message is signed over. */
export function chatBody(text: string, at: number): Uint8Array {
  if (!Number.isSafeInteger(at) || at < 0) throw new E2eeError('range', 'chat timestamp out of range');
  return concat(u64be(at), utf8(text));
}

/** @throws E2eeError('range') (rejects) for a sequence number out of range */
export async function signMessage(identity: Identity, kind: SignedKind, ctx: SignedContext, seq: number, body: Uint8Array): Promise<Uint8Array> {
  return identity.sign(sigInput(kind, ctx, seq, body));
}

/** False for a wrong signature, sender, session, room, sequence number or content (never throws for bad input). */
export function verifyMessage(identityPublicKey: Uint8Array, kind: SignedKind, ctx: SignedContext, seq: number, body: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_LEN) return false;
  try {
    return verify(identityPublicKey, sigInput(kind, ctx, seq, body), signature);
  } catch {
    return false;
  }
}
