/**
 * Key transport channels: HPKE (RFC 9180) mode_psk with KEM X-Wing (@hpke/hybridkem-x-wing, KEM id 0x647a),
 * KDF HKDF-SHA256, AEAD AES-128-GCM, via @hpke/core. The PSK and psk_id come from the invite (invite.ts).
 *
 * One channel per ordered pair (sender -> recipient), set up once (an X-Wing encapsulation costs milliseconds in
 * pure JS) and reused for every later rekey:
 *
 *   setup (sender):    (enc, ctx) = SetupPSKS(pkR = recipient session key, info, psk, psk_id)
 *   setup (recipient): ctx = SetupPSKR(enc, skR, info, psk, psk_id)
 *   root  = ctx.Export(UTF-8("sealed-meet v1 envelope root"), 32)      (RFC 9180 §5.3 secret export)
 *   info  = UTF-8("sealed-meet v1 key transport") || lp16(roomId) || lp16(senderMemberId) || lp16(recipientMemberId)
 *
 * The HPKE context itself is dropped right after the export; only the 32-byte `root` is kept (and wiped on close).
 * Message number `seq` (u64, starting at 0) of the channel is protected with
 *
 *   key(16) || nonce(12) = HKDF-Expand(root, UTF-8("sealed-meet v1 envelope aead") || u64be(seq), 28)
 *   ct = AES-128-GCM(key, nonce, aad, pt)
 *
 * Why exporter-derived keys rather than `ctx.seal`: HPKE's own sequence is implicit and strictly in-order, so a
 * single envelope lost on the relay would make every later one on that channel undecryptable. With an explicit
 * `seq` in the message and per-seq keys, a recipient accepts any seq greater than the last one it accepted
 * (gaps are fine), and rejects replays and reordered messages (seq <= last accepted) before any decryption.
 * Every (key, nonce) pair is used once because the sender never reuses a seq on a channel.
 *
 * @module
 */
import { Aes128Gcm, CipherSuite, HkdfSha256 } from '@hpke/core';
import { XWing } from '@hpke/hybridkem-x-wing';
import { expand } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ab, concat, lp16, u64be, utf8, wipe } from './bytes.ts';
import { SESSION_PUBLIC_LEN, SESSION_SECRET_LEN, XWING_ENC_LEN } from './identity.ts';
import { E2eeError } from './errors.ts';


export const HPKE_INFO_LABEL = 'sealed-meet v1 key transport';
export const HPKE_EXPORT_LABEL = 'sealed-meet v1 envelope root';
export const HPKE_AEAD_LABEL = 'sealed-meet v1 envelope aead';
export const CHANNEL_ROOT_LEN = 32;
export const AEAD_TAG_LEN = 16;
export const MAX_SEQ = 0xffff_ffff_ffff_ffffn;

export interface HpkePsk {
  /** 32 bytes (invite `psk`). */
  key: Uint8Array;
  /** invite `pskId`. */
  id: Uint8Array;
}

/** Sender side of a channel: keep it per recipient and reuse it for later rekeys. */
export interface SenderChannel {
  /** X-Wing encapsulation (1120 bytes): sent with the first message of the channel. */
  readonly enc: Uint8Array;
  /** Secret: exporter-derived channel root. */
  readonly root: Uint8Array;
  /** Next sequence number to use (0 for a new channel). */
  readonly nextSeq: bigint;
}

/** Recipient side of a channel. */
export interface RecipientChannel {
  /** The `enc` that opened this channel (a different `enc` from the same sender means a new channel). */
  readonly enc: Uint8Array;
  readonly root: Uint8Array;
  /** Highest seq accepted so far (-1n before the first message). */
  readonly lastSeq: bigint;
}

/** The suite used for key transport: X-Wing / HKDF-SHA256 / AES-128-GCM. */
export function keyTransportSuite(): CipherSuite {
  return new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
}

export function channelInfo(roomId: string, senderMemberId: string, recipientMemberId: string): Uint8Array<ArrayBuffer> {
  return concat(utf8(HPKE_INFO_LABEL), lp16(utf8(roomId)), lp16(utf8(senderMemberId)), lp16(utf8(recipientMemberId)));
}

function checkPsk(psk: HpkePsk): void {
  if (psk.key.length < 32) throw new E2eeError('bad-key', 'HPKE PSK must be at least 32 bytes');
  if (psk.id.length === 0) throw new E2eeError('bad-key', 'HPKE psk_id must not be empty');
}

/** Sets up a new sender channel to `recipientSessionPublicKey` (one X-Wing encapsulation). */
export async function openSenderChannel(recipientSessionPublicKey: Uint8Array, psk: HpkePsk, info: Uint8Array): Promise<SenderChannel> {
  if (recipientSessionPublicKey.length !== SESSION_PUBLIC_LEN) throw new E2eeError('bad-key', 'recipient session key must be 1216 bytes');
  checkPsk(psk);
  const suite = keyTransportSuite();
  let pk: CryptoKey;
  try {
    pk = await suite.kem.deserializePublicKey(ab(recipientSessionPublicKey).buffer);
  } catch (e) {
    throw new E2eeError('bad-key', 'recipient session key is not a valid X-Wing public key', { cause: e });
  }
  try {
    const ctx = await suite.createSenderContext({ recipientPublicKey: pk, info: ab(info), psk: { key: ab(psk.key), id: ab(psk.id) } });
    const root = new Uint8Array(await ctx.export(utf8(HPKE_EXPORT_LABEL), CHANNEL_ROOT_LEN));
    return { enc: new Uint8Array(ctx.enc), root, nextSeq: 0n };
  } catch (e) {
    throw new E2eeError('bad-key', 'HPKE setup failed (invalid recipient key)', { cause: e });
  }
}

/** Sets up the recipient side of a channel from the `enc` of a new-channel message. */
export async function acceptChannel(enc: Uint8Array, sessionSecretKey: Uint8Array, psk: HpkePsk, info: Uint8Array): Promise<RecipientChannel> {
  if (enc.length !== XWING_ENC_LEN) throw new E2eeError('malformed', 'X-Wing enc must be 1120 bytes');
  if (sessionSecretKey.length !== SESSION_SECRET_LEN) throw new E2eeError('bad-key', 'session secret key must be 32 bytes');
  checkPsk(psk);
  const suite = keyTransportSuite();
  const skBytes = ab(sessionSecretKey);
  try {
    const sk = await suite.kem.deserializePrivateKey(skBytes.buffer);
    const ctx = await suite.createRecipientContext({ recipientKey: sk, enc: ab(enc), info: ab(info), psk: { key: ab(psk.key), id: ab(psk.id) } });
    const root = new Uint8Array(await ctx.export(utf8(HPKE_EXPORT_LABEL), CHANNEL_ROOT_LEN));
    return { enc: enc.slice(), root, lastSeq: -1n };
  } catch (e) {
    throw new E2eeError('auth', 'HPKE recipient setup failed', { cause: e });
  } finally {
    wipe(skBytes);
  }
}

function seqKeyNonce(root: Uint8Array, seq: bigint): { key: Uint8Array; nonce: Uint8Array } {
  if (root.length !== CHANNEL_ROOT_LEN) throw new E2eeError('bad-key', 'channel root must be 32 bytes');
  if (seq < 0n || seq > MAX_SEQ) throw new E2eeError('malformed', 'seq out of range');
  const okm = expand(sha256, root, concat(utf8(HPKE_AEAD_LABEL), u64be(seq)), 28);
  return { key: okm.slice(0, 16), nonce: okm.slice(16, 28) };
}

/** Seals message `seq` of a channel. Pure in its inputs: the caller advances `nextSeq`. */
export async function sealOnChannel(root: Uint8Array, seq: bigint, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
  const { key, nonce } = seqKeyNonce(root, seq);
  try {
    const k = await crypto.subtle.importKey('raw', ab(key), { name: 'AES-GCM' }, false, ['encrypt']);
    return new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: ab(nonce), additionalData: ab(aad), tagLength: 128 }, k, ab(plaintext)));
  } finally {
    wipe(key, nonce);
  }
}

/** Opens message `seq` of a channel. Replay checks are the caller's (see `checkSeq`). @throws E2eeError('auth') */
export async function openOnChannel(root: Uint8Array, seq: bigint, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
  if (ciphertext.length < AEAD_TAG_LEN) throw new E2eeError('malformed', 'ciphertext shorter than the tag');
  const { key, nonce } = seqKeyNonce(root, seq);
  try {
    const k = await crypto.subtle.importKey('raw', ab(key), { name: 'AES-GCM' }, false, ['decrypt']);
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ab(nonce), additionalData: ab(aad), tagLength: 128 }, k, ab(ciphertext)));
  } catch (e) {
    if (e instanceof E2eeError) throw e;
    throw new E2eeError('auth', 'key transport message failed authentication');
  } finally {
    wipe(key, nonce);
  }
}

/** Throws `replay` unless `seq` is newer than the channel's last accepted seq. */
export function checkSeq(channel: RecipientChannel, seq: bigint): void {
  if (seq <= channel.lastSeq) throw new E2eeError('replay', `seq ${seq} is not newer than ${channel.lastSeq} (replayed or reordered)`);
}

/** Wipes a channel's secret root. */
export function closeChannel(channel: SenderChannel | RecipientChannel): void {
  wipe(channel.root);
}
