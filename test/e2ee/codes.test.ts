import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sha512 } from '@noble/hashes/sha2.js';
import { EMOJI, roomCode, safetyNumber } from '../../client/src/e2ee/codes.ts';

const pk = (n: number) => new Uint8Array(32).fill(n);
const member = (id: string, n: number) => ({ memberId: id, identityPublicKey: pk(n), sessionPublicKey: new Uint8Array(1216).fill(n) });

describe('emoji table', () => {
  it('64 distinct entries', () => {
    expect(EMOJI.length).toBe(64);
    expect(new Set(EMOJI.map((e) => e.emoji)).size).toBe(64);
    expect(new Set(EMOJI.map((e) => e.name)).size).toBe(64);
  });
});

describe('safety number', () => {
  it('60 digits, 12 emoji, order independent, different keys differ', () => {
    const a = safetyNumber(pk(1), pk(2));
    const b = safetyNumber(pk(2), pk(1));
    expect(a).toEqual(b);
    expect(a.digits).toMatch(/^\d{60}$/);
    expect(a.groups.length).toBe(12);
    expect(a.emoji.length).toBe(12);
    const c = safetyNumber(pk(1), pk(3));
    expect(c.digits).not.toBe(a.digits);
    // one half of the digits is shared (the side of pk(1))
    const halves = (s: string) => [s.slice(0, 30), s.slice(30)];
    expect(halves(a.digits).filter((h) => halves(c.digits).includes(h)).length).toBe(1);
  });

  it('matches an independent re-implementation of the documented construction', () => {
    const label = new TextEncoder().encode('sealed-meet v1 safety number');
    const f = (k: Uint8Array) => {
      let h = sha512(new Uint8Array([0, 0, ...k, ...label]));
      for (let i = 1; i < 5200; i++) h = sha512(new Uint8Array([...h, ...k]));
      return h.slice(0, 30);
    };
    const d = (x: Uint8Array) => {
      let s = '';
      for (let i = 0; i < 30; i += 5) s += String(Number(BigInt('0x' + Buffer.from(x.slice(i, i + 5)).toString('hex')) % 100000n)).padStart(5, '0');
      return s;
    };
    const [x, y] = [d(f(pk(1))), d(f(pk(2)))].sort();
    expect(safetyNumber(pk(1), pk(2)).digits).toBe(x! + y!);
  });

  it('known answer (regression)', () => {
    const s = safetyNumber(pk(1), pk(2));
    expect(s.groups.join(' ')).toMatchInlineSnapshot(`"08327 98874 04952 37668 28791 28439 99368 97082 00845 14781 61814 04231"`);
    expect(s.emoji.map((e) => e.name).join(',')).toMatchInlineSnapshot(`"Dog,Pig,Clock,Pin,Light Bulb,Corn,Glasses,Telephone,Train,Umbrella,Cactus,Turtle"`);
  });

  it('rejects bad keys', () => {
    expect(() => safetyNumber(new Uint8Array(31), pk(1))).toThrow(/bad-key/);
  });
});

describe('room code', () => {
  it('order independent; any roster/epoch/key difference changes it', () => {
    const r = [member('alice', 1), member('bob', 2), member('carol', 3)];
    const c = roomCode(r, 7);
    expect(c.emoji.length).toBe(6);
    expect(c.digits).toMatch(/^\d{12}$/);
    expect(roomCode([...r].reverse(), 7)).toEqual(c);
    const variants = [
      roomCode(r.slice(0, 2), 7),
      roomCode(r, 8),
      roomCode([member('alice', 1), member('bob', 2), member('carol', 4)], 7),
      roomCode([member('alice', 1), member('bob', 2), { ...member('carol', 3), sessionPublicKey: new Uint8Array(1216).fill(9) }], 7),
      roomCode([member('alice', 1), member('bob', 2), member('carl', 3)], 7),
      roomCode([...r, member('mallory', 4)], 7),
    ];
    for (const v of variants) {
      expect(v.digits).not.toBe(c.digits);
      expect(Buffer.from(v.hash).equals(Buffer.from(c.hash))).toBe(false);
    }
  });

  it('fast-check: permutation invariance', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z]{1,8}$/), { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (ids, epoch) => {
        const r = ids.map((id, i) => member(id, i));
        const shuffled = [...r].sort(() => 0.5 - Math.random());
        expect(roomCode(shuffled, epoch).digits).toBe(roomCode(r, epoch).digits);
      }),
      { numRuns: 50 },
    );
  });

  it('known answer (regression) and rejects duplicates', () => {
    const c = roomCode([member('alice', 1), member('bob', 2)], 1);
    expect(`${c.emoji.map((e) => e.emoji).join('')} ${c.digits}`).toMatchInlineSnapshot(`"🎁🐓🐱🐱⏰🐷 786405413518"`);
    expect(() => roomCode([member('a', 1), member('a', 2)], 1)).toThrow(/duplicate/);
  });
});
