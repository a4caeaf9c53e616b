import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromUtf8, utf8 } from '../../client/src/e2ee/bytes.ts';
import { openMetadata, sealMetadata } from '../../client/src/e2ee/metadata.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const KEY = new Uint8Array(32).fill(3);
const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isE2eeError(e) ? e.code : 'not-an-E2eeError';
  }
}

describe('metadata', () => {
  it('round trip, and the format is 1 + 12 + len + 16 bytes', async () => {
    const s = await sealMetadata(KEY, ROOM, 'peer-1', utf8('Alice ✓'));
    expect(s.length).toBe(1 + 12 + new TextEncoder().encode('Alice ✓').length + 16);
    expect(s[0]).toBe(1);
    expect(fromUtf8(await openMetadata(KEY, ROOM, 'peer-1', s))).toBe('Alice ✓');
  });

  it('random nonces: two seals differ', async () => {
    const a = await sealMetadata(KEY, ROOM, 'p', utf8('x'));
    const b = await sealMetadata(KEY, ROOM, 'p', utf8('x'));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('rejects wrong room, wrong sender, wrong key, tampering, truncation, version', async () => {
    const s = await sealMetadata(KEY, ROOM, 'peer-1', utf8('Alice'));
    expect(await code(openMetadata(KEY, 'AAAAAAAAAAAAAAAAAAAAAB', 'peer-1', s))).toBe('auth');
    expect(await code(openMetadata(KEY, ROOM, 'peer-2', s))).toBe('auth');
    expect(await code(openMetadata(new Uint8Array(32), ROOM, 'peer-1', s))).toBe('auth');
    for (let i = 1; i < s.length; i++) {
      const t = s.slice();
      t[i]! ^= 1;
      expect(await code(openMetadata(KEY, ROOM, 'peer-1', t))).toBe('auth');
    }
    expect(await code(openMetadata(KEY, ROOM, 'peer-1', s.subarray(0, 28)))).toBe('malformed');
    expect(await code(openMetadata(KEY, ROOM, 'peer-1', s.subarray(0, s.length - 1)))).toBe('auth');
    const v = s.slice();
    v[0] = 2;
    expect(await code(openMetadata(KEY, ROOM, 'peer-1', v))).toBe('unsupported-version');
    expect(await code(openMetadata(new Uint8Array(16), ROOM, 'peer-1', s))).toBe('bad-key');
    // ambiguous (room, sender) splits are not confusable thanks to length prefixes
    const s2 = await sealMetadata(KEY, ROOM, 'ab', utf8('x'));
    expect(await code(openMetadata(KEY, ROOM + 'a', 'b', s2))).toBe('auth');
  });

  it('fast-check round trip', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.string({ minLength: 1, maxLength: 64 }), async (pt, sender) => {
        const s = await sealMetadata(KEY, ROOM, sender, pt);
        expect(Buffer.from(await openMetadata(KEY, ROOM, sender, s)).equals(Buffer.from(pt))).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it('garbage never opens', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 100 }), async (g) => {
        const c = await code(openMetadata(KEY, ROOM, 'p', g));
        expect(['malformed', 'auth', 'unsupported-version']).toContain(c);
      }),
      { numRuns: 100 },
    );
  });
});
