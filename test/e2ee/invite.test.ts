import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  deriveInviteKeys,
  formatInviteFragment,
  generateInvite,
  checkRoomId,
  INVITE_LABELS,
  parseInviteFragment,
  ROOM_ID_LABEL,
  roomIdFor,
} from '../../client/src/e2ee/invite.ts';
import { fromBase64url, toBase64url, utf8 } from '../../client/src/e2ee/bytes.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';

describe('invite', () => {
  it('the room id is a commitment to the secret: HKDF(secret, "sealed-meet v1 room id"), 16 bytes as 22 base64url chars', () => {
    const secret = new Uint8Array(32).map((_, i) => i);
    const r = roomIdFor(secret);
    expect(r).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(r).toBe(toBase64url(hkdf(sha256, secret, new Uint8Array(0), utf8(ROOM_ID_LABEL), 16)));
    expect(fromBase64url(r).length).toBe(16);
    const a = generateInvite();
    expect(a.roomId).toBe(roomIdFor(a.secret));
    expect(generateInvite().roomId).not.toBe(a.roomId);
  });

  it('property: a link with any one character changed in its room id or its secret is recognised as damaged', () => {
    const { roomId, fragment } = generateInvite();
    const secret = parseInviteFragment(fragment).secret;
    expect(() => checkRoomId(secret, roomId)).not.toThrow();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 21 + 43 }), fc.integer({ min: 1, max: 63 }), (pos, shift) => {
        const swap = (str: string, i: number) => str.slice(0, i) + alphabet[(alphabet.indexOf(str[i]!) + shift) % 64] + str.slice(i + 1);
        if (pos < 22) {
          expect(() => checkRoomId(secret, swap(roomId, pos))).toThrow(/do not belong together/);
          return;
        }
        let other: Uint8Array;
        try {
          other = parseInviteFragment(swap(fragment, 3 + pos - 22)).secret;
        } catch (e) {
          expect(isE2eeError(e, 'malformed')).toBe(true); // non-canonical last character: refused as it is
          return;
        }
        expect(() => checkRoomId(other, roomId)).toThrow(/do not belong together/);
      }),
      { numRuns: 300 },
    );
  });

  it('generate/parse round trip, with and without fingerprint', () => {
    const a = generateInvite();
    expect(a.fragment).toMatch(/^v1\.[A-Za-z0-9_-]{43}$/);
    expect(hex(parseInviteFragment(a.fragment).secret)).toBe(hex(a.secret));
    expect(parseInviteFragment(a.fragment).creatorFingerprint).toBeUndefined();
    const fp = new Uint8Array(32).fill(7);
    const b = generateInvite(fp);
    expect(b.fragment).toMatch(/^v1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
    const p = parseInviteFragment('#' + b.fragment);
    expect(hex(p.secret)).toBe(hex(b.secret));
    expect(hex(p.creatorFingerprint!)).toBe(hex(fp));
  });

  it('fast-check: format/parse round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }), (s, fp) => {
        const p = parseInviteFragment(formatInviteFragment(s, fp));
        expect(hex(p.secret)).toBe(hex(s));
        expect(p.creatorFingerprint === undefined ? undefined : hex(p.creatorFingerprint)).toBe(fp === undefined ? undefined : hex(fp));
      }),
    );
  });

  it('rejects malformed / truncated fragments with typed errors', () => {
    const { fragment } = generateInvite(new Uint8Array(32).fill(1));
    const bad = [
      '',
      '#',
      'v1',
      'v1.',
      fragment.slice(0, 20),
      fragment.slice(0, 45),
      fragment.slice(0, -1),
      fragment + '.x',
      fragment + 'A',
      'V1.' + fragment.slice(3),
      'v1.' + '+'.repeat(43),
      'v1.' + 'A'.repeat(42) + '=',
      'v1.' + 'A'.repeat(42) + 'B', // non-canonical trailing bits
      'v1 ' + fragment.slice(3),
    ];
    for (const f of bad) {
      let err: unknown;
      try {
        parseInviteFragment(f);
      } catch (e) {
        err = e;
      }
      expect(isE2eeError(err, 'malformed'), `fragment ${JSON.stringify(f)}: ${String(err)}`).toBe(true);
    }
    expect(() => parseInviteFragment('v2.' + fragment.slice(3))).toThrow(/unsupported-version/);
  });

  it('fast-check: arbitrary strings never crash the parser with anything but an E2eeError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (s) => {
        try {
          parseInviteFragment(s);
        } catch (e) {
          expect(isE2eeError(e)).toBe(true);
        }
      }),
    );
  });

  it('derives keys per the documented HKDF construction (room in salt, label in info)', async () => {
    const secret = new Uint8Array(32).map((_, i) => i);
    const k = await deriveInviteKeys(secret, ROOM);
    const ref = (l: string) => hkdf(sha256, secret, utf8(ROOM), utf8(l), 32);
    expect(k.accessToken).toBe(toBase64url(ref(INVITE_LABELS.accessToken)));
    expect(k.accessToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hex(k.membershipMacKey)).toBe(hex(ref(INVITE_LABELS.membershipMacKey)));
    expect(hex(k.metadataKey)).toBe(hex(ref(INVITE_LABELS.metadataKey)));
    expect(hex(k.psk)).toBe(hex(ref(INVITE_LABELS.psk)));
    expect(hex(k.pskId)).toBe(hex(ref(INVITE_LABELS.pskId)));
    // all distinct
    const all = [k.accessToken, hex(k.membershipMacKey), hex(k.metadataKey), hex(k.psk), hex(k.pskId)];
    expect(new Set(all).size).toBe(5);
    // known answer (regression): fixed secret 00..1f, room 'AAAAAAAAAAAAAAAAAAAAAA'
    expect(k.accessToken).toMatchInlineSnapshot(`"czitwYibCNReB3vU6Ds7NqOjRVpO4XYqRYDxOmVIJkg"`);
  });

  it('binds the room id', async () => {
    const secret = new Uint8Array(32).fill(9);
    const a = await deriveInviteKeys(secret, ROOM);
    const b = await deriveInviteKeys(secret, 'AAAAAAAAAAAAAAAAAAAAAB');
    expect(a.accessToken).not.toBe(b.accessToken);
    expect(hex(a.psk)).not.toBe(hex(b.psk));
  });

  it('rejects bad secret length and bad room id', async () => {
    await expect(deriveInviteKeys(new Uint8Array(31), ROOM)).rejects.toThrow(/bad-key/);
    await expect(deriveInviteKeys(new Uint8Array(32), 'short')).rejects.toThrow(/malformed/);
  });
});
