/**
 * Key-transport batches: one relay message per sender per rekey, carrying one envelope per recipient.
 * Each envelope holds the sender's new media base key, sealed on the (sender -> recipient) HPKE channel
 * (hpke.ts) and signed by the sender's Ed25519 identity over its full context.
 *
 * Batch wire format (all integers big-endian; lp16(x) = u16 length || x):
 *
 *   u8    version = 0x01
 *   lp16  roomId (UTF-8)
 *   lp16  senderMemberId (UTF-8)
 *   u32   epoch              sender's key epoch: +1 for every new send key (ratchet or fresh)
 *   u16   count              1..1024, recipients distinct
 *   count x entry:
 *     lp16  recipientMemberId (UTF-8)
 *     u64   seq              channel sequence number (0 for the first message on a channel)
 *     u8    flags            bit 0 = NEW_CHANNEL: `enc` follows and a new channel starts; other bits 0
 *     [1120 bytes enc]       X-Wing encapsulation, only if NEW_CHANNEL
 *     u16   ctLen, ct        AES-128-GCM(payload) incl. 16-byte tag
 *     64    signature
 *
 * Context transcript T (not sent; rebuilt by the recipient from what it knows):
 *   T = UTF-8("sealed-meet v1 envelope") || 0x01 || lp16(roomId) || u32 epoch || lp16(sender) || lp16(recipient)
 *       || u64 seq || u8 flags || [enc] || SHA-256(sender session public key) || SHA-256(recipient session public key)
 *   AEAD aad  = T
 *   signature = Ed25519(sender identity, T || u32(ctLen) || ct)
 *
 * Payload (plaintext, 21 + keyLen bytes):
 *   u8 version = 0x01 | u8 reason (0 initial, 1 ratchet, 2 fresh) | u16 senderIndex | u32 generation | u32 step
 *   | u64 kid | u8 keyLen (16..64) | baseKey
 * (generation/step/kid as in send-schedule.ts `SendKeyInfo` / kid.ts `makeKid`.)
 *
 * Acceptance (recipient, in this order, each failure a typed E2eeError):
 *   parse (malformed) -> room & sender match the relay's claimed sender (wrong-context) -> find own entry (none: not
 *   for me, `null`) -> epoch > last accepted epoch from this sender, and seq > channel.lastSeq (replay) -> a
 *   follow-up without a channel, or with an `enc` for a channel that already exists (state/replay) -> signature
 *   (bad-signature; checked before the costly decapsulation) -> HPKE setup / AEAD open (auth) -> payload parse.
 *
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, fromUtf8, lp16, Reader, u16be, u32be, u64be, utf8 } from './bytes.ts';
import {
  acceptChannel,
  channelInfo,
  checkSeq,
  openOnChannel,
  openSenderChannel,
  sealOnChannel,
  type HpkePsk,
  type RecipientChannel,
  type SenderChannel,
} from './hpke.ts';
import { verify, SIGNATURE_LEN, XWING_ENC_LEN, type Identity } from './identity.ts';
import { E2eeError } from './errors.ts';

export const BATCH_VERSION = 0x01;
export const PAYLOAD_VERSION = 0x01;
export const ENVELOPE_LABEL = 'sealed-meet v1 envelope';
export const FLAG_NEW_CHANNEL = 0x01;
export const MAX_RECIPIENTS = 1024;
/** Default size cap of one encoded batch: the relay blob limit is 65536 base64url chars = 49152 bytes, minus framing. */
export const DEFAULT_MAX_BATCH_BYTES = 48_000;

export type KeyReason = 'initial' | 'ratchet' | 'fresh';
const REASONS: readonly KeyReason[] = ['initial', 'ratchet', 'fresh'];

/** What an envelope transports: one media base key of the sender. */
export interface KeyUpdate {
  reason: KeyReason;
  /** 16-bit sender index (membership.ts) used in the KID. */
  senderIndex: number;
  /** u32 key generation of this sender (send-schedule.ts: +1 per fresh key). */
  generation: number;
  /** u32 ratchet step within the generation (send-schedule.ts: +1 per ratchet). */
  step: number;
  /** SFrame KID (u64) under which the sender uses this key. */
  kid: bigint;
  /** Secret: the SFrame base key (16..64 bytes). */
  baseKey: Uint8Array;
}

export interface BatchEntry {
  recipientMemberId: string;
  seq: bigint;
  flags: number;
  enc?: Uint8Array;
  ct: Uint8Array;
  signature: Uint8Array;
}

export interface KeyBatch {
  roomId: string;
  senderMemberId: string;
  epoch: number;
  entries: BatchEntry[];
}

export interface BatchRecipient {
  memberId: string;
  sessionPublicKey: Uint8Array;
  /** Existing sender channel to this recipient (reuse); omitted -> a new channel is set up. */
  channel?: SenderChannel;
}

export interface SealBatchInput {
  roomId: string;
  epoch: number;
  sender: { memberId: string; identity: Identity; sessionPublicKey: Uint8Array };
  psk: HpkePsk;
  recipients: readonly BatchRecipient[];
  update: KeyUpdate;
  /** Split into several batches so that none exceeds this many bytes (default 48000). */
  maxBatchBytes?: number;
}

export interface SealBatchResult {
  /** One or more encoded batches (more than one only if the size cap forced a split). */
  batches: Uint8Array[];
  /** Updated sender channels by recipient member id (new ones, and reused ones with nextSeq advanced). */
  channels: Map<string, SenderChannel>;
  /** Number of new channels (X-Wing encapsulations) this rekey needed. */
  newChannels: number;
}

export interface OpenBatchInput {
  roomId: string;
  /** The member id the relay says sent this (server-asserted `from`); must match the batch. */
  fromMemberId: string;
  me: { memberId: string; sessionSecretKey: Uint8Array; sessionPublicKey: Uint8Array };
  sender: { identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array };
  psk: HpkePsk;
  /** Current recipient channel from this sender, if any. */
  channel?: RecipientChannel;
  /** Highest epoch accepted from this sender so far (-1 / omitted before the first). */
  lastEpoch?: number;
}

export interface OpenedEnvelope {
  epoch: number;
  update: KeyUpdate;
  /** The recipient channel to keep for this sender (new one, or the old one with lastSeq advanced). */
  channel: RecipientChannel;
}

// ------------------------------------------------------------------------------------------------
// Payload
// ------------------------------------------------------------------------------------------------

export function encodePayload(u: KeyUpdate): Uint8Array {
  if (u.baseKey.length < 16 || u.baseKey.length > 64) throw new E2eeError('bad-key', 'base key must be 16..64 bytes');
  const r = REASONS.indexOf(u.reason);
  if (r < 0) throw new E2eeError('malformed', 'unknown key reason');
  return concat(Uint8Array.of(PAYLOAD_VERSION, r), u16be(u.senderIndex), u32be(u.generation), u32be(u.step), u64be(u.kid), Uint8Array.of(u.baseKey.length), u.baseKey);
}

export function decodePayload(b: Uint8Array): KeyUpdate {
  const r = new Reader(b);
  const v = r.u8('payload version');
  if (v !== PAYLOAD_VERSION) throw new E2eeError('unsupported-version', `payload version ${v}`);
  const reason = REASONS[r.u8('reason')];
  if (reason === undefined) throw new E2eeError('malformed', 'unknown key reason');
  const senderIndex = r.u16('sender index');
  const generation = r.u32('generation');
  const step = r.u32('step');
  const kid = r.u64('kid');
  const len = r.u8('key length');
  if (len < 16 || len > 64) throw new E2eeError('malformed', 'base key length must be 16..64');
  const baseKey = r.bytes(len, 'base key');
  r.end('payload');
  return { reason, senderIndex, generation, step, kid, baseKey };
}

// ------------------------------------------------------------------------------------------------
// Batch encoding
// ------------------------------------------------------------------------------------------------

function encodeEntry(e: BatchEntry): Uint8Array {
  const hasEnc = (e.flags & FLAG_NEW_CHANNEL) !== 0;
  return concat(
    lp16(utf8(e.recipientMemberId)),
    u64be(e.seq),
    Uint8Array.of(e.flags),
    hasEnc ? e.enc! : new Uint8Array(0),
    lp16(e.ct),
    e.signature,
  );
}

function encodeHeader(roomId: string, senderMemberId: string, epoch: number, count: number): Uint8Array {
  return concat(Uint8Array.of(BATCH_VERSION), lp16(utf8(roomId)), lp16(utf8(senderMemberId)), u32be(epoch), u16be(count));
}

export function encodeKeyBatch(b: KeyBatch): Uint8Array {
  if (b.entries.length === 0 || b.entries.length > MAX_RECIPIENTS) throw new E2eeError('malformed', 'batch must have 1..1024 entries');
  return concat(encodeHeader(b.roomId, b.senderMemberId, b.epoch, b.entries.length), ...b.entries.map(encodeEntry));
}

/** Strict parser. @throws E2eeError('malformed' | 'unsupported-version') */
export function decodeKeyBatch(bytes: Uint8Array): KeyBatch {
  const r = new Reader(bytes);
  const v = r.u8('batch version');
  if (v !== BATCH_VERSION) throw new E2eeError('unsupported-version', `batch version ${v}`);
  const roomId = fromUtf8(r.lp16('roomId'));
  const senderMemberId = fromUtf8(r.lp16('sender'));
  const epoch = r.u32('epoch');
  const count = r.u16('count');
  if (count === 0 || count > MAX_RECIPIENTS) throw new E2eeError('malformed', 'batch must have 1..1024 entries');
  const entries: BatchEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const recipientMemberId = fromUtf8(r.lp16('recipient'));
    if (seen.has(recipientMemberId)) throw new E2eeError('malformed', 'duplicate recipient in batch');
    seen.add(recipientMemberId);
    const seq = r.u64('seq');
    const flags = r.u8('flags');
    if ((flags & ~FLAG_NEW_CHANNEL) !== 0) throw new E2eeError('malformed', 'unknown envelope flags');
    const enc = (flags & FLAG_NEW_CHANNEL) !== 0 ? r.bytes(XWING_ENC_LEN, 'enc') : undefined;
    const ct = r.lp16('ciphertext');
    const signature = r.bytes(SIGNATURE_LEN, 'signature');
    entries.push(enc === undefined ? { recipientMemberId, seq, flags, ct, signature } : { recipientMemberId, seq, flags, enc, ct, signature });
  }
  r.end('batch');
  return { roomId, senderMemberId, epoch, entries };
}

// ------------------------------------------------------------------------------------------------
// Transcript
// ------------------------------------------------------------------------------------------------

export function envelopeTranscript(p: {
  roomId: string;
  epoch: number;
  senderMemberId: string;
  recipientMemberId: string;
  seq: bigint;
  flags: number;
  enc?: Uint8Array;
  senderSessionPublicKey: Uint8Array;
  recipientSessionPublicKey: Uint8Array;
}): Uint8Array {
  return concat(
    utf8(ENVELOPE_LABEL),
    Uint8Array.of(BATCH_VERSION),
    lp16(utf8(p.roomId)),
    u32be(p.epoch),
    lp16(utf8(p.senderMemberId)),
    lp16(utf8(p.recipientMemberId)),
    u64be(p.seq),
    Uint8Array.of(p.flags),
    p.enc ?? new Uint8Array(0),
    sha256(p.senderSessionPublicKey),
    sha256(p.recipientSessionPublicKey),
  );
}

function signatureInput(t: Uint8Array, ct: Uint8Array): Uint8Array {
  return concat(t, u32be(ct.length), ct);
}

// ------------------------------------------------------------------------------------------------
// Seal / open
// ------------------------------------------------------------------------------------------------

/** Seals one rekey for every recipient. Channels are reused when given, created otherwise. */
export async function sealKeyBatch(input: SealBatchInput): Promise<SealBatchResult> {
  const { roomId, epoch, sender, psk, update } = input;
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) throw new E2eeError('malformed', 'epoch must be u32');
  if (input.recipients.length === 0) throw new E2eeError('state', 'no recipients');
  const maxBytes = input.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const payload = encodePayload(update);
  const channels = new Map<string, SenderChannel>();
  const encoded: { entry: BatchEntry; length: number }[] = [];
  let newChannels = 0;
  try {
    for (const rc of input.recipients) {
      if (channels.has(rc.memberId) || rc.memberId === sender.memberId) throw new E2eeError('malformed', 'duplicate or self recipient');
      let ch = rc.channel;
      let flags = 0;
      if (ch === undefined) {
        ch = await openSenderChannel(rc.sessionPublicKey, psk, channelInfo(roomId, sender.memberId, rc.memberId));
        flags = FLAG_NEW_CHANNEL;
        newChannels++;
      }
      const seq = ch.nextSeq;
      const enc = flags ? ch.enc : undefined;
      const t = envelopeTranscript({
        roomId,
        epoch,
        senderMemberId: sender.memberId,
        recipientMemberId: rc.memberId,
        seq,
        flags,
        ...(enc ? { enc } : {}),
        senderSessionPublicKey: sender.sessionPublicKey,
        recipientSessionPublicKey: rc.sessionPublicKey,
      });
      const ct = await sealOnChannel(ch.root, seq, t, payload);
      const signature = await sender.identity.sign(signatureInput(t, ct));
      const entry: BatchEntry = enc ? { recipientMemberId: rc.memberId, seq, flags, enc, ct, signature } : { recipientMemberId: rc.memberId, seq, flags, ct, signature };
      encoded.push({ entry, length: encodeEntry(entry).length });
      channels.set(rc.memberId, { enc: ch.enc, root: ch.root, nextSeq: seq + 1n });
    }
  } finally {
    payload.fill(0);
  }
  // Pack entries into batches under the size cap.
  const batches: Uint8Array[] = [];
  const headerLen = encodeHeader(roomId, sender.memberId, epoch, 1).length;
  let cur: BatchEntry[] = [];
  let curLen = headerLen;
  const flush = (): void => {
    if (cur.length) batches.push(encodeKeyBatch({ roomId, senderMemberId: sender.memberId, epoch, entries: cur }));
    cur = [];
    curLen = headerLen;
  };
  for (const { entry, length } of encoded) {
    if (headerLen + length > maxBytes) throw new E2eeError('malformed', 'one envelope exceeds the batch size cap');
    if (curLen + length > maxBytes || cur.length === MAX_RECIPIENTS) flush();
    cur.push(entry);
    curLen += length;
  }
  flush();
  return { batches, channels, newChannels };
}

/**
 * Opens this member's envelope in a batch. Returns `null` if the batch has no entry for `me` (not an error:
 * batches are broadcast). @throws E2eeError on any rejection (see module doc for the order of checks).
 */
export async function openKeyBatch(bytes: Uint8Array, input: OpenBatchInput): Promise<OpenedEnvelope | null> {
  const batch = decodeKeyBatch(bytes);
  if (batch.roomId !== input.roomId) throw new E2eeError('wrong-context', 'batch is for another room');
  if (batch.senderMemberId !== input.fromMemberId) throw new E2eeError('wrong-context', 'batch sender does not match the relay sender');
  const entry = batch.entries.find((e) => e.recipientMemberId === input.me.memberId);
  if (entry === undefined) return null;
  if (input.lastEpoch !== undefined && batch.epoch <= input.lastEpoch)
    throw new E2eeError('replay', `epoch ${batch.epoch} is not newer than ${input.lastEpoch} (replayed or reordered)`);
  const isNew = (entry.flags & FLAG_NEW_CHANNEL) !== 0;
  if (isNew) {
    if (input.channel !== undefined && equalBytes(input.channel.enc, entry.enc!)) throw new E2eeError('replay', 'channel setup replayed');
    if (entry.seq !== 0n) throw new E2eeError('malformed', 'a new channel must start at seq 0');
  } else {
    if (input.channel === undefined) throw new E2eeError('state', 'follow-up envelope without a channel (missed its setup)');
    checkSeq(input.channel, entry.seq);
  }
  const t = envelopeTranscript({
    roomId: batch.roomId,
    epoch: batch.epoch,
    senderMemberId: batch.senderMemberId,
    recipientMemberId: entry.recipientMemberId,
    seq: entry.seq,
    flags: entry.flags,
    ...(entry.enc ? { enc: entry.enc } : {}),
    senderSessionPublicKey: input.sender.sessionPublicKey,
    recipientSessionPublicKey: input.me.sessionPublicKey,
  });
  if (!verify(input.sender.identityPublicKey, signatureInput(t, entry.ct), entry.signature))
    throw new E2eeError('bad-signature', 'envelope signature is invalid');
  const channel = isNew
    ? await acceptChannel(entry.enc!, input.me.sessionSecretKey, input.psk, channelInfo(batch.roomId, batch.senderMemberId, entry.recipientMemberId))
    : input.channel!;
  let pt: Uint8Array | undefined;
  try {
    pt = await openOnChannel(channel.root, entry.seq, t, entry.ct);
    const update = decodePayload(pt);
    return { epoch: batch.epoch, update, channel: { enc: channel.enc, root: channel.root, lastSeq: entry.seq } };
  } catch (e) {
    if (isNew) channel.root.fill(0); // a channel that failed its first message is not kept: wipe its root
    throw e;
  } finally {
    pt?.fill(0);
  }
}
