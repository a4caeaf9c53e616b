/**
 * Chat messages under a per-sender chat key derived from that sender's current media base key.
 *
 *     chatKey = HKDF-SHA256(IKM = base_key, salt = "" , info = UTF-8("sealed-meet v1 chat") || u64(KID), 32)
 *
 * Separate label, so a chat key never equals or reveals an SFrame key/salt (those use "SFrame 1.0 Secret ..."
 * labels on HKDF-Extract(base_key)). Whoever can open a sender's media can open its chat; a member that left
 * (fresh key) or joined later (ratchet) is excluded exactly as for media.
 *
 *     inner = 0x43 ('C') || u64 KID || nonce(12) || AES-256-GCM(chatKey, nonce, AAD, JSON {"t": text, "at": ms, "seq": n, "sig": b64url})
 *     (seq and sig: the sender's per-session sequence number and identity signature, signed-message.ts)
 *     AAD   = UTF-8("sealed-meet v1 chat") || lp16(UTF-8(roomId)) || lp16(UTF-8(senderId)) || u64 KID
 *
 * On the relay the inner blob is additionally sealed as metadata (metadata.ts, invite metadata key), so it has
 * the relay framing of the core (kind byte 0x01, same shape as profile blobs): the server cannot tell chat
 * from other sealed relay traffic by its format.
 *
 * The receiver holds the sender's newest installed (KID, base key); a later ratchet step of the same generation
 * is derived forward (RFC 9605 §5.1), never backward.
 *
 * @module
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import * as z from 'zod/mini';
import { ab, concat, fromBase64urlExact, fromUtf8, lp16, randomBytes, readU64be, toBase64url, u64be, utf8 } from './bytes.ts';
import { E2eeError } from './errors.ts';
import { SIGNATURE_LEN } from './identity.ts';
import { parseJson } from './json.ts';
import { splitKid } from './kid.ts';
import { DEFAULT_SUITE, ratchetBaseKey } from './sframe.ts';

const ChatJson = z.object({ t: z.string(), at: z.number(), seq: z.number(), sig: z.string() });

export const CHAT_LABEL = 'sealed-meet v1 chat';
export const CHAT_INNER_KIND = 0x43;
const NONCE_LEN = 12;

/** The chat key of a sender for its media key (KID, base key). */
export function chatKeyFor(baseKey: Uint8Array, kid: bigint): Uint8Array {
  if (baseKey.length < 16) throw new E2eeError('bad-key', 'base key must be at least 16 bytes');
  return hkdf(sha256, baseKey, new Uint8Array(0), concat(utf8(CHAT_LABEL), u64be(kid)), 32);
}

/**
 * The base key for `kid` given the newest key we hold for that sender: the same key, or a later ratchet step of
 * the same generation derived forward. Null if `kid` is not reachable (other sender, other generation, older step).
 * The returned array is new (wipe it after use).
 */
export function baseKeyForKid(known: { kid: bigint; baseKey: Uint8Array }, kid: bigint): Uint8Array | null {
  const a = splitKid(known.kid);
  let b;
  try {
    b = splitKid(kid);
  } catch {
    return null;
  }
  if (a.sender !== b.sender || a.generation !== b.generation || b.step < a.step) return null;
  let k: Uint8Array = known.baseKey.slice();
  for (let s = a.step; s < b.step; s++) {
    const next = ratchetBaseKey(DEFAULT_SUITE, k);
    k.fill(0);
    k = next;
  }
  return k;
}

function aad(roomId: string, senderId: string, kid: bigint): Uint8Array<ArrayBuffer> {
  return concat(utf8(CHAT_LABEL), lp16(utf8(roomId)), lp16(utf8(senderId)), u64be(kid));
}

async function aesKey(chatKey: Uint8Array, usage: 'encrypt' | 'decrypt'): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', ab(chatKey), { name: 'AES-GCM' }, false, [usage]);
}

/** A chat message inside its encryption: text, sender time, and the sender's signature (signed-message.ts). */
export interface ChatPayload {
  text: string;
  at: number;
  seq: number;
  sig: Uint8Array;
}

/** Seal one chat message (inner blob) with the sender's current media key. */
export async function sealChatInner(baseKey: Uint8Array, kid: bigint, roomId: string, senderId: string, m: ChatPayload): Promise<Uint8Array> {
  const ck = chatKeyFor(baseKey, kid);
  try {
    const key = await aesKey(ck, 'encrypt');
    const nonce = randomBytes(NONCE_LEN);
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad(roomId, senderId, kid) }, key, utf8(JSON.stringify({ t: m.text, at: m.at, seq: m.seq, sig: toBase64url(m.sig) }))));
    return concat(Uint8Array.of(CHAT_INNER_KIND), u64be(kid), nonce, ct);
  } finally {
    ck.fill(0);
  }
}

/** KID an inner chat blob is sealed under, or null if it is not a chat blob. */
export function chatInnerKid(inner: Uint8Array): bigint | null {
  if (inner.length < 1 + 8 + NONCE_LEN + 16 || inner[0] !== CHAT_INNER_KIND) return null;
  return readU64be(inner, 1);
}

/** Open an inner chat blob with the base key of its KID (the signature is the caller's to check). @throws E2eeError('malformed' | 'auth') */
export async function openChatInner(baseKey: Uint8Array, roomId: string, senderId: string, inner: Uint8Array): Promise<ChatPayload> {
  const kid = chatInnerKid(inner);
  if (kid === null) throw new E2eeError('malformed', 'not a chat message');
  const ck = chatKeyFor(baseKey, kid);
  let pt: Uint8Array;
  try {
    const key = await aesKey(ck, 'decrypt');
    const nonce = inner.slice(9, 9 + NONCE_LEN);
    pt = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad(roomId, senderId, kid) }, key, ab(inner.subarray(9 + NONCE_LEN))));
  } catch {
    throw new E2eeError('auth', 'chat message does not authenticate');
  } finally {
    ck.fill(0);
  }
  const r = parseJson(ChatJson, fromUtf8(pt), 'chat payload');
  return { text: r.t, at: r.at, seq: r.seq, sig: fromBase64urlExact(r.sig, SIGNATURE_LEN, 'chat signature') };
}
