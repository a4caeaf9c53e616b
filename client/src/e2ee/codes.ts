/**
 * Human-comparable codes.
 *
 * Safety number (pairwise, property 5), modelled on Signal's numeric fingerprint:
 *   for each identity public key pk (32 bytes):
 *     h = SHA-512(0x00 0x00 || pk || UTF-8("sealed-meet v1 safety number"))
 *     repeat 5199 times: h = SHA-512(h || pk)                 (5200 iterations in total)
 *     f(pk) = h[0..30]
 *     digits(pk) = for each 5-byte chunk c of f(pk): (u40be(c) mod 100000) as 5 decimal digits   -> 30 digits
 *   the two 30-digit halves are sorted (as strings) and concatenated: 60 digits, the same on both sides.
 *   emoji: E = SHA-512(UTF-8("sealed-meet v1 safety emoji") || f_low || f_high) (f in the same sorted order),
 *   12 emoji = 12 consecutive 6-bit groups (big-endian bit order) of E[0..9], each an index into EMOJI (64 entries).
 *   The 60 digits carry ~2 x 100 bits; the 12 emoji 72 bits (plus the 5200-iteration cost per attacker guess).
 *
 * Room code (roster agreement, property 4):
 *   H = SHA-256(UTF-8("sealed-meet v1 room code") || u32be(epoch) || u16be(n)
 *               || for each member sorted by member id (UTF-16 code unit order, unique):
 *                    lp16(UTF-8(memberId)) || identityPublicKey(32) || lp16(sessionPublicKey))
 *   emoji: 6 emoji from the first 36 bits of H (6-bit groups); digits: u64be(H[8..16]) mod 10^12, 12 digits
 *   zero-padded. Members compare either form.
 *
 * @module
 */
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { concat, lp16, u16be, u32be, utf8 } from './bytes.ts';
import { E2eeError } from './errors.ts';

export const SAFETY_NUMBER_LABEL = 'sealed-meet v1 safety number';
export const SAFETY_EMOJI_LABEL = 'sealed-meet v1 safety emoji';
export const ROOM_CODE_LABEL = 'sealed-meet v1 room code';
export const SAFETY_ITERATIONS = 5200;

/** 64 emoji with names (the Matrix SAS table, v1.1 spec §"SAS method: emoji"), index = 6-bit value. */
export const EMOJI: readonly { emoji: string; name: string }[] = [
  ['🐶', 'Dog'], ['🐱', 'Cat'], ['🦁', 'Lion'], ['🐎', 'Horse'], ['🦄', 'Unicorn'], ['🐷', 'Pig'], ['🐘', 'Elephant'], ['🐰', 'Rabbit'],
  ['🐼', 'Panda'], ['🐓', 'Rooster'], ['🐧', 'Penguin'], ['🐢', 'Turtle'], ['🐟', 'Fish'], ['🐙', 'Octopus'], ['🦋', 'Butterfly'], ['🌷', 'Flower'],
  ['🌳', 'Tree'], ['🌵', 'Cactus'], ['🍄', 'Mushroom'], ['🌏', 'Globe'], ['🌙', 'Moon'], ['☁️', 'Cloud'], ['🔥', 'Fire'], ['🍌', 'Banana'],
  ['🍎', 'Apple'], ['🍓', 'Strawberry'], ['🌽', 'Corn'], ['🍕', 'Pizza'], ['🎂', 'Cake'], ['❤️', 'Heart'], ['😀', 'Smiley'], ['🤖', 'Robot'],
  ['🎩', 'Hat'], ['👓', 'Glasses'], ['🔧', 'Spanner'], ['🎅', 'Santa'], ['👍', 'Thumbs Up'], ['☂️', 'Umbrella'], ['⌛', 'Hourglass'], ['⏰', 'Clock'],
  ['🎁', 'Gift'], ['💡', 'Light Bulb'], ['📕', 'Book'], ['✏️', 'Pencil'], ['📎', 'Paperclip'], ['✂️', 'Scissors'], ['🔒', 'Lock'], ['🔑', 'Key'],
  ['🔨', 'Hammer'], ['☎️', 'Telephone'], ['🏁', 'Flag'], ['🚂', 'Train'], ['🚲', 'Bicycle'], ['✈️', 'Aeroplane'], ['🚀', 'Rocket'], ['🏆', 'Trophy'],
  ['⚽', 'Ball'], ['🎸', 'Guitar'], ['🎺', 'Trumpet'], ['🔔', 'Bell'], ['⚓', 'Anchor'], ['🎧', 'Headphones'], ['📁', 'Folder'], ['📌', 'Pin'],
].map(([emoji, name]) => ({ emoji: emoji!, name: name! }));

export interface SafetyNumber {
  /** 60 decimal digits. */
  digits: string;
  /** 12 groups of 5 digits, for display. */
  groups: string[];
  /** 12 emoji (with names for screen readers). */
  emoji: { emoji: string; name: string }[];
}

export interface RoomCode {
  emoji: { emoji: string; name: string }[];
  /** 12 decimal digits. */
  digits: string;
  /** SHA-256 over the roster (the value both forms are taken from). */
  hash: Uint8Array;
}

export interface RosterEntry {
  memberId: string;
  identityPublicKey: Uint8Array;
  sessionPublicKey: Uint8Array;
}

function sixBitGroups(b: Uint8Array, count: number): number[] {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  let i = 0;
  while (out.length < count) {
    acc = ((acc << 8) | b[i++]!) & 0xffffff;
    bits += 8;
    while (bits >= 6 && out.length < count) {
      bits -= 6;
      out.push((acc >>> bits) & 63);
    }
  }
  return out;
}

function iteratedFingerprint(pk: Uint8Array): Uint8Array {
  if (pk.length !== 32) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
  let h = sha512(concat(Uint8Array.of(0, 0), pk, utf8(SAFETY_NUMBER_LABEL)));
  for (let i = 1; i < SAFETY_ITERATIONS; i++) h = sha512(concat(h, pk));
  return h.slice(0, 30);
}

function digits30(f: Uint8Array): string {
  let s = '';
  for (let i = 0; i < 30; i += 5) {
    const v = f[i]! * 2 ** 32 + (((f[i + 1]! << 24) | (f[i + 2]! << 16) | (f[i + 3]! << 8) | f[i + 4]!) >>> 0);
    s += String(v % 100000).padStart(5, '0');
  }
  return s;
}

/** Pairwise safety number; `safetyNumber(a, b)` equals `safetyNumber(b, a)`. */
export function safetyNumber(identityKeyA: Uint8Array, identityKeyB: Uint8Array): SafetyNumber {
  const fa = iteratedFingerprint(identityKeyA);
  const fb = iteratedFingerprint(identityKeyB);
  const da = digits30(fa);
  const db = digits30(fb);
  // Order by digits, tie-broken by the fingerprint bytes (equal digits with different keys are astronomically rare).
  const aFirst = da < db || (da === db && compareBytes(fa, fb) <= 0);
  const [lo, hi] = aFirst ? [fa, fb] : [fb, fa];
  const digits = aFirst ? da + db : db + da;
  const e = sha512(concat(utf8(SAFETY_EMOJI_LABEL), lo, hi));
  return {
    digits,
    groups: digits.match(/\d{5}/g)!,
    emoji: sixBitGroups(e, 12).map((i) => EMOJI[i]!),
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Room code over the roster and epoch (order of `roster` does not matter; member ids must be unique). */
export function roomCode(roster: readonly RosterEntry[], epoch: number): RoomCode {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) throw new E2eeError('malformed', 'epoch must be u32');
  const sorted = [...roster].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) if (sorted[i]!.memberId === sorted[i - 1]!.memberId) throw new E2eeError('malformed', 'duplicate member id in roster');
  const parts: Uint8Array[] = [utf8(ROOM_CODE_LABEL), u32be(epoch), u16be(sorted.length)];
  for (const m of sorted) {
    if (m.identityPublicKey.length !== 32) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
    parts.push(lp16(utf8(m.memberId)), m.identityPublicKey, lp16(m.sessionPublicKey));
  }
  const hash = sha256(concat(...parts));
  const v = new DataView(hash.buffer, hash.byteOffset + 8, 8).getBigUint64(0, false);
  return {
    emoji: sixBitGroups(hash, 6).map((i) => EMOJI[i]!),
    digits: (v % 10n ** 12n).toString().padStart(12, '0'),
    hash,
  };
}
