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
 * Room code (roster agreement, property 4), a commit-then-reveal round per roster (as ZRTP's SAS, RFC 6189 §4.4.1):
 *   roster hash  R = SHA-256(UTF-8("sealed-meet v1 roster") || u16be(n)
 *                    || for each member sorted by UTF-8(memberId) bytes (unique):
 *                         lp16(UTF-8(memberId)) || identityPublicKey(32) || lp16(sessionPublicKey))
 *   each member m draws a fresh 32-byte value v_m per round and first sends only its commitment
 *                C_m = SHA-256(UTF-8("sealed-meet v1 room code value") || lp16(UTF-8 roomId) || lp16(UTF-8 m)
 *                      || u32be(round_m) || R || v_m)
 *   and reveals v_m once it holds the commitments of everyone in its roster (membership-code.ts runs the round);
 *   code hash    H = SHA-256(UTF-8("sealed-meet v1 room code") || R || u16be(n)
 *                    || for each member in the same order: lp16(UTF-8(memberId)) || v_m(32))
 *   emoji: 6 emoji from the first 36 bits of H (6-bit groups, most significant bit first); digits: u64be(H[8..16])
 *   mod 10^12, 12 digits zero-padded. Members compare either form. docs/protocol.md B §10 states and argues the bound.
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
  /** The code hash H both forms are taken from. */
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

export const ROSTER_LABEL = 'sealed-meet v1 roster';
export const ROOM_CODE_VALUE_LABEL = 'sealed-meet v1 room code value';
/** Bytes of a member's per-round room-code value. */
export const ROOM_CODE_VALUE_LEN = 32;

/** Roster members in code order: sorted by the UTF-8 bytes of their member ids, which must be unique. */
function sortedByMemberId<T extends { memberId: string }>(members: readonly T[]): T[] {
  const sorted = [...members].sort((a, b) => compareBytes(utf8(a.memberId), utf8(b.memberId)));
  for (let i = 1; i < sorted.length; i++) if (sorted[i]!.memberId === sorted[i - 1]!.memberId) throw new E2eeError('malformed', 'duplicate member id in roster');
  return sorted;
}

/** R: the hash of a roster (order of `roster` does not matter). */
export function rosterHash(roster: readonly RosterEntry[]): Uint8Array {
  const parts: Uint8Array[] = [utf8(ROSTER_LABEL), u16be(roster.length)];
  for (const m of sortedByMemberId(roster)) {
    if (m.identityPublicKey.length !== 32) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
    parts.push(lp16(utf8(m.memberId)), m.identityPublicKey, lp16(m.sessionPublicKey));
  }
  return sha256(concat(...parts));
}

/** C_m: what a member commits to before it reveals its value (binds room, member, its round and R). */
export function roomCodeCommitment(roomId: string, memberId: string, round: number, rosterHashR: Uint8Array, value: Uint8Array): Uint8Array {
  if (rosterHashR.length !== 32) throw new E2eeError('malformed', 'roster hash must be 32 bytes');
  if (value.length !== ROOM_CODE_VALUE_LEN) throw new E2eeError('malformed', 'room code value must be 32 bytes');
  return sha256(concat(utf8(ROOM_CODE_VALUE_LABEL), lp16(utf8(roomId)), lp16(utf8(memberId)), u32be(round), rosterHashR, value));
}

/** The displayed forms of a 32-byte code hash: 6 emoji (first 36 bits) and 12 digits (u64(H[8..16]) mod 10^12). */
export function displayCode(hash: Uint8Array): RoomCode {
  if (hash.length !== 32) throw new E2eeError('malformed', 'code hash must be 32 bytes');
  const v = new DataView(hash.buffer, hash.byteOffset + 8, 8).getBigUint64(0, false);
  return {
    emoji: sixBitGroups(hash, 6).map((i) => EMOJI[i]!),
    digits: (v % 10n ** 12n).toString().padStart(12, '0'),
    hash,
  };
}

/**
 * The room code of a completed round: the roster hash R and every roster member's revealed value (order does not
 * matter; one value per member).
 */
export function roomCode(rosterHashR: Uint8Array, values: readonly { memberId: string; value: Uint8Array }[]): RoomCode {
  if (rosterHashR.length !== 32) throw new E2eeError('malformed', 'roster hash must be 32 bytes');
  const parts: Uint8Array[] = [utf8(ROOM_CODE_LABEL), rosterHashR, u16be(values.length)];
  for (const m of sortedByMemberId(values)) {
    if (m.value.length !== ROOM_CODE_VALUE_LEN) throw new E2eeError('malformed', 'room code value must be 32 bytes');
    parts.push(lp16(utf8(m.memberId)), m.value);
  }
  return displayCode(sha256(concat(...parts)));
}
