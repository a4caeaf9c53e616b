import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { decodeAnnouncement, fingerprint, newSession, verify, verifyAnnouncement } from '../../client/src/e2ee/identity.ts';
import { createIdentity, exportIdentity, importIdentity, rawIdentity } from '../../client/src/e2ee/identity-key.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import { toBase64url } from '../../client/src/e2ee/bytes.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return isE2eeError(e) ? e.code : `not an E2eeError: ${String(e)}`;
  }
}

describe('identity', () => {
  it('sign/verify, strict, wrong key/message (both signers)', async () => {
    for (const id of [await createIdentity(), rawIdentity()]) {
      const m = new Uint8Array([1, 2, 3]);
      const s = await id.sign(m);
      expect(verify(id.publicKey, m, s)).toBe(true);
      expect(verify(rawIdentity().publicKey, m, s)).toBe(false);
      expect(verify(id.publicKey, new Uint8Array([1, 2]), s)).toBe(false);
      expect(verify(id.publicKey, m, s.subarray(0, 63))).toBe(false);
      expect(verify(new Uint8Array(32), m, s)).toBe(false);
    }
  });

  it('fingerprint = SHA-256("sealed-meet v1 fingerprint" || pk), 32 bytes', () => {
    const id = rawIdentity();
    const fp = fingerprint(id.publicKey);
    expect(fp.length).toBe(32);
    expect(hex(fp)).toBe(hex(sha256(new Uint8Array([...new TextEncoder().encode('sealed-meet v1 fingerprint'), ...id.publicKey]))));
    expect(code(() => fingerprint(new Uint8Array(31)))).toBe('bad-key');
  });

  it('export/import round trip and garbage rejection', () => {
    const id = rawIdentity();
    const s = exportIdentity(id);
    const back = importIdentity(s);
    expect(hex(back.secretKey)).toBe(hex(id.secretKey));
    expect(hex(back.publicKey)).toBe(hex(id.publicKey));
    const o = JSON.parse(s);
    const other = rawIdentity();
    const bad: [string, string][] = [
      ['', 'malformed'],
      ['null', 'malformed'],
      ['[]', 'malformed'],
      ['{"kind":"x"}', 'malformed'],
      [JSON.stringify({ ...o, v: 2 }), 'unsupported-version'],
      [JSON.stringify({ ...o, extra: 1 }), 'malformed'],
      [JSON.stringify({ ...o, sk: o.sk.slice(0, 40) }), 'malformed'],
      [JSON.stringify({ ...o, pk: toBase64url(other.publicKey) }), 'bad-key'],
      [JSON.stringify({ ...o, sk: 5 }), 'malformed'],
    ];
    for (const [str, c] of bad) expect(code(() => importIdentity(str)), str).toBe(c);
    fc.assert(
      fc.property(fc.string(), (str) => {
        const c = code(() => importIdentity(str));
        expect(c === undefined ? 'accepted' : c).not.toMatch(/not an E2eeError|accepted/);
      }),
    );
  });

  it('session announcement: sign, verify, decode; tamper and wrong room rejected', async () => {
    const id = await createIdentity();
    const s = await newSession(id, ROOM, 'peer-1');
    expect(s.keyPair.publicKey.length).toBe(1216);
    expect(s.body.length).toBe(1 + 2 + 22 + 2 + 6 + 32 + 1216 + 16);
    const a = verifyAnnouncement(s.body, s.signature, ROOM);
    expect(a.memberId).toBe('peer-1');
    expect(hex(a.sessionPublicKey)).toBe(hex(s.keyPair.publicKey));
    expect(code(() => verifyAnnouncement(s.body, s.signature, 'AAAAAAAAAAAAAAAAAAAAAB'))).toBe('wrong-context');
    for (const i of [0, 5, 30, 100, s.body.length - 1]) {
      const t = s.body.slice();
      t[i]! ^= 1;
      expect(['bad-signature', 'unsupported-version', 'malformed']).toContain(code(() => verifyAnnouncement(t, s.signature, ROOM)));
    }
    expect(code(() => verifyAnnouncement(s.body.subarray(0, 100), s.signature, ROOM))).toBe('malformed');
    expect(code(() => verifyAnnouncement(new Uint8Array([...s.body, 0]), s.signature, ROOM))).toBe('malformed');
    // a signature by another identity over the same body fails
    const s2 = await newSession(await createIdentity(), ROOM, 'peer-1');
    expect(code(() => verifyAnnouncement(s.body, s2.signature, ROOM))).toBe('bad-signature');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), (g) => {
        const c = code(() => decodeAnnouncement(g));
        expect(['malformed', 'unsupported-version', undefined]).toContain(c);
      }),
      { numRuns: 200 },
    );
  });
});
