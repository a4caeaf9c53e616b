import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  check,
  emptyVerifications,
  exportVerifications,
  importVerifications,
  markVerified,
} from '../../client/src/e2ee/verification.ts';
import { fingerprint } from '../../client/src/e2ee/identity.ts';
import { rawIdentity } from '../../client/src/e2ee/identity-key.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const fpA = fingerprint(rawIdentity().publicKey);
const fpB = fingerprint(rawIdentity().publicKey);

describe('verification records', () => {
  it('unverified -> verified; changed identity behind a known name warns; normalization', () => {
    let v = emptyVerifications();
    expect(check(v, 'Alice', fpA).status).toBe('unverified');
    v = markVerified(v, 'Alice', fpA, 1000);
    expect(check(v, 'Alice', fpA).status).toBe('verified');
    expect(check(v, '  alice ', fpA).status).toBe('verified');
    expect(check(v, 'ＡＬＩＣＥ', fpA).status).toBe('verified'); // NFKC fullwidth
    const c = check(v, 'Alice', fpB);
    expect(c.status).toBe('changed');
    expect(c.warning).toMatchObject({ kind: 'identity-changed', name: 'Alice', verifiedAt: 1000 });
    expect(check(v, 'Bob', fpA)).toEqual({ status: 'unverified', knownAs: 'Alice' });
    v = markVerified(v, 'Alice', fpB, 2000); // re-verified the new identity
    expect(check(v, 'Alice', fpB).status).toBe('verified');
  });

  it('export/import round trip; garbage rejected', () => {
    let v = markVerified(emptyVerifications(), 'Alice', fpA, 1);
    v = markVerified(v, 'Bob', fpB, 2);
    const s = exportVerifications(v);
    const back = importVerifications(s);
    expect(exportVerifications(back)).toBe(s);
    expect(check(back, 'bob', fpB).status).toBe('verified');
    const o = JSON.parse(s);
    const bad = [
      '',
      '1',
      '{}',
      JSON.stringify({ ...o, v: 2 }),
      JSON.stringify({ ...o, x: 1 }),
      JSON.stringify({ ...o, records: [{ name: 'a', fingerprint: 'AAAA', verifiedAt: 1 }] }),
      JSON.stringify({ ...o, records: [{ name: 'a', fingerprint: o.records[0].fingerprint }] }),
      JSON.stringify({ ...o, records: [o.records[0], { ...o.records[0], name: ' ALICE' }] }),
      JSON.stringify({ ...o, records: [{ ...o.records[0], name: '' }] }),
    ];
    for (const b of bad) {
      try {
        importVerifications(b);
        expect.unreachable(b);
      } catch (e) {
        expect(isE2eeError(e), b).toBe(true);
      }
    }
    fc.assert(
      fc.property(fc.json(), (j) => {
        try {
          importVerifications(j);
        } catch (e) {
          expect(isE2eeError(e)).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('fast-check: round trip of arbitrary records', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 30 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat()), { maxLength: 10 }), (rows) => {
        let v = emptyVerifications();
        for (const [n, f, t] of rows) {
          try {
            v = markVerified(v, n, f, t);
          } catch (e) {
            expect(isE2eeError(e, 'malformed')).toBe(true); // whitespace-only names
          }
        }
        expect(exportVerifications(importVerifications(exportVerifications(v)))).toBe(exportVerifications(v));
      }),
      { numRuns: 100 },
    );
  });
});

describe('creator fingerprint from the invite', () => {
  it('matches only the creator identity', async () => {
    const { isCreator } = await import('../../client/src/e2ee/verification.ts');
    const { generateInvite, parseInviteFragment } = await import('../../client/src/e2ee/invite.ts');
    const creator = rawIdentity();
    const other = rawIdentity();
    const { fragment } = generateInvite(fingerprint(creator.publicKey));
    const fp = parseInviteFragment(fragment).creatorFingerprint;
    expect(isCreator(fp, creator.publicKey)).toBe(true);
    expect(isCreator(fp, other.publicKey)).toBe(false);
    expect(isCreator(undefined, creator.publicKey)).toBe(false);
  });
});
