import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sha512 } from '@noble/hashes/sha2.js';
import { createHash } from 'node:crypto';
import { EMOJI, roomCode, roomCodeCommitment, rosterHash, safetyNumber } from '../../client/src/e2ee/codes.ts';

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
  const values = (ids: string[], fill = 0) => ids.map((memberId, i) => ({ memberId, value: new Uint8Array(32).fill(fill + i) }));

  it('roster hash: order independent; any member, id, identity or session key difference changes it; duplicates refused', () => {
    const r = [member('alice', 1), member('bob', 2), member('carol', 3)];
    const h = rosterHash(r);
    expect(h.length).toBe(32);
    expect(rosterHash([...r].reverse())).toEqual(h);
    const variants = [
      rosterHash(r.slice(0, 2)),
      rosterHash([member('alice', 1), member('bob', 2), member('carol', 4)]),
      rosterHash([member('alice', 1), member('bob', 2), { ...member('carol', 3), sessionPublicKey: new Uint8Array(1216).fill(9) }]),
      rosterHash([member('alice', 1), member('bob', 2), member('carl', 3)]),
      rosterHash([...r, member('mallory', 4)]),
    ];
    for (const v of variants) expect(Buffer.from(v).equals(Buffer.from(h))).toBe(false);
    expect(() => rosterHash([member('a', 1), member('a', 2)])).toThrow(/duplicate/);
    expect(() => rosterHash([{ ...member('a', 1), identityPublicKey: new Uint8Array(31) }])).toThrow(/bad-key/);
  });

  it('code: order independent; any roster hash or revealed value difference changes it', () => {
    const R = rosterHash([member('alice', 1), member('bob', 2), member('carol', 3)]);
    const v = values(['alice', 'bob', 'carol']);
    const c = roomCode(R, v);
    expect(c.emoji.length).toBe(6);
    expect(c.digits).toMatch(/^\d{12}$/);
    expect(roomCode(R, [...v].reverse())).toEqual(c);
    const R2 = rosterHash([member('alice', 1), member('bob', 2), member('carl', 3)]);
    const variants = [
      roomCode(R2, v),
      roomCode(R, v.slice(0, 2)),
      roomCode(R, [v[0]!, v[1]!, { memberId: 'carol', value: new Uint8Array(32).fill(7) }]),
      roomCode(R, [v[0]!, v[1]!, { memberId: 'carl', value: v[2]!.value }]),
    ];
    for (const x of variants) {
      expect(x.digits).not.toBe(c.digits);
      expect(Buffer.from(x.hash).equals(Buffer.from(c.hash))).toBe(false);
    }
    expect(() => roomCode(R, [...v, { memberId: 'alice', value: new Uint8Array(32) }])).toThrow(/duplicate/);
    expect(() => roomCode(R, [{ memberId: 'a', value: new Uint8Array(31) }])).toThrow(/malformed/);
  });

  it('commitment binds room, member, round, roster hash and value', () => {
    const R = rosterHash([member('alice', 1)]);
    const v = new Uint8Array(32).fill(5);
    const c = Buffer.from(roomCodeCommitment('room', 'alice', 1, R, v));
    const differ = [
      roomCodeCommitment('room2', 'alice', 1, R, v),
      roomCodeCommitment('room', 'alicf', 1, R, v),
      roomCodeCommitment('room', 'alice', 2, R, v),
      roomCodeCommitment('room', 'alice', 1, rosterHash([member('alice', 2)]), v),
      roomCodeCommitment('room', 'alice', 1, R, new Uint8Array(32).fill(6)),
    ];
    for (const d of differ) expect(Buffer.from(d).equals(c)).toBe(false);
  });

  it('fast-check: permutation invariance of roster hash and code', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z]{1,8}$/), { minLength: 1, maxLength: 8 }), (ids) => {
        const r = ids.map((id, i) => member(id, i));
        const shuffled = [...r].sort(() => 0.5 - Math.random());
        const R = rosterHash(r);
        expect(rosterHash(shuffled)).toEqual(R);
        const v = values(ids);
        expect(roomCode(R, [...v].sort(() => 0.5 - Math.random())).digits).toBe(roomCode(R, v).digits);
      }),
      { numRuns: 50 },
    );
  });

  it('matches an independent re-implementation of the documented construction (docs/protocol.md B §10)', () => {
    const sha = (...parts: (Buffer | Uint8Array)[]) => new Uint8Array(createHash('sha256').update(Buffer.concat(parts)).digest());
    const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
    const lp = (b: Uint8Array | Buffer) => Buffer.concat([u16(b.length), b]);
    const t = (x: string) => Buffer.from(x, 'utf8');
    const ms = [member('bob', 2), member('alice', 1), member('Zed', 3)]; // "Zed" < "alice" < "bob" in UTF-8 bytes
    const sorted = [ms[2]!, ms[1]!, ms[0]!];
    const R = sha(t('sealed-meet v1 roster'), u16(3), ...sorted.flatMap((m) => [lp(t(m.memberId)), m.identityPublicKey, lp(m.sessionPublicKey)]));
    expect(rosterHash(ms)).toEqual(R);
    const v = (n: number) => new Uint8Array(32).fill(n);
    const C = sha(t('sealed-meet v1 room code value'), lp(t('room')), lp(t('alice')), Buffer.from([0, 0, 1, 2]), R, v(1));
    expect(roomCodeCommitment('room', 'alice', 258, R, v(1))).toEqual(C);
    const H = sha(t('sealed-meet v1 room code'), R, u16(3), lp(t('Zed')), v(3), lp(t('alice')), v(1), lp(t('bob')), v(2));
    const code = roomCode(R, [{ memberId: 'bob', value: v(2) }, { memberId: 'alice', value: v(1) }, { memberId: 'Zed', value: v(3) }]);
    expect(code.hash).toEqual(H);
    const bits = BigInt('0x' + Buffer.from(H.slice(0, 5)).toString('hex')) >> 4n; // first 36 bits
    expect(code.emoji.map((e) => EMOJI.indexOf(e))).toEqual([30n, 24n, 18n, 12n, 6n, 0n].map((sh) => Number((bits >> sh) & 63n)));
    expect(code.digits).toBe((BigInt('0x' + Buffer.from(H.slice(8, 16)).toString('hex')) % 10n ** 12n).toString().padStart(12, '0'));
  });

  it('known answer (regression)', () => {
    const R = rosterHash([member('alice', 1), member('bob', 2)]);
    expect(Buffer.from(R).toString('hex')).toMatchInlineSnapshot(`"e7c1474546aa27b53aedc68f393a161410f4e4d63fbc7fb6f5f48df1add8cdd5"`);
    const c = roomCode(R, values(['alice', 'bob'], 1));
    expect(`${c.emoji.map((e) => e.emoji).join('')} ${c.digits}`).toMatchInlineSnapshot(`"📌🔨🐧📕🏁🐢 761950052093"`);
  });
});
