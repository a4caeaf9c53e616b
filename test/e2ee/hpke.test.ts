import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { XWing } from '@hpke/hybridkem-x-wing';
import {
  acceptChannel,
  channelInfo,
  checkSeq,
  closeChannel,
  openOnChannel,
  openSenderChannel,
  sealOnChannel,
} from '../../client/src/e2ee/hpke.ts';
import { generateSessionKeyPair } from '../../client/src/e2ee/identity.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const hex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');
const PSK = { key: new Uint8Array(32).fill(0x11), id: new Uint8Array(32).fill(0x22) };
const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';

async function errCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isE2eeError(e) ? e.code : `not an E2eeError: ${String(e)}`;
  }
}

describe('X-Wing interop: @noble/post-quantum ml_kem768_x25519 <-> @hpke/hybridkem-x-wing', () => {
  it('same public key from the same seed; encapsulations decapsulate across libraries', async () => {
    const seed = new Uint8Array(32).map((_, i) => i);
    const kp = generateSessionKeyPair(seed);
    expect(kp.publicKey.length).toBe(1216);
    const xw = new XWing();
    const kp2 = await xw.generateKeyPairDerand(seed);
    expect(hex(await xw.serializePublicKey(kp2.publicKey))).toBe(hex(kp.publicKey));
    const { cipherText, sharedSecret } = ml_kem768_x25519.encapsulate(kp.publicKey);
    expect(cipherText.length).toBe(1120);
    expect(hex(await xw.decap({ enc: new Uint8Array(cipherText).buffer, recipientKey: kp2.privateKey }))).toBe(hex(sharedSecret));
    const e = await xw.encap({ recipientPublicKey: await xw.deserializePublicKey(new Uint8Array(kp.publicKey).buffer) });
    expect(hex(ml_kem768_x25519.decapsulate(new Uint8Array(e.enc), kp.secretKey))).toBe(hex(e.sharedSecret));
  });
});

describe('key transport channel (HPKE mode_psk, X-Wing, HKDF-SHA256, AES-128-GCM)', () => {
  const rk = generateSessionKeyPair();
  const info = channelInfo(ROOM, 'alice', 'bob');

  it('setup, seal/open several seqs, gaps allowed, replays caught by checkSeq', async () => {
    const s = await openSenderChannel(rk.publicKey, PSK, info);
    expect(s.enc.length).toBe(1120);
    expect(s.nextSeq).toBe(0n);
    const r = await acceptChannel(s.enc, rk.secretKey, PSK, info);
    expect(hex(r.root)).toBe(hex(s.root));
    const aad = new Uint8Array([1, 2, 3]);
    const c0 = await sealOnChannel(s.root, 0n, aad, new Uint8Array([9]));
    const c5 = await sealOnChannel(s.root, 5n, aad, new Uint8Array([10]));
    expect(hex(await openOnChannel(r.root, 0n, aad, c0))).toBe('09');
    expect(hex(await openOnChannel(r.root, 5n, aad, c5))).toBe('0a');
    // wrong seq, wrong aad
    expect(await errCode(openOnChannel(r.root, 1n, aad, c0))).toBe('auth');
    expect(await errCode(openOnChannel(r.root, 0n, new Uint8Array([1, 2]), c0))).toBe('auth');
    const after = { ...r, lastSeq: 5n };
    expect(() => checkSeq(after, 5n)).toThrow(/replay/);
    expect(() => checkSeq(after, 4n)).toThrow(/replay/);
    expect(() => checkSeq(after, 6n)).not.toThrow();
    closeChannel(s);
    expect(s.root.every((b) => b === 0)).toBe(true);
  });

  it('wrong PSK, wrong info (re-addressed), wrong recipient key: channels do not agree', async () => {
    const s = await openSenderChannel(rk.publicKey, PSK, info);
    const c = await sealOnChannel(s.root, 0n, new Uint8Array(0), new Uint8Array([1]));
    const variants = [
      acceptChannel(s.enc, rk.secretKey, { key: new Uint8Array(32).fill(0x12), id: PSK.id }, info),
      acceptChannel(s.enc, rk.secretKey, { key: PSK.key, id: new Uint8Array(32).fill(0x23) }, info),
      acceptChannel(s.enc, rk.secretKey, PSK, channelInfo(ROOM, 'alice', 'carol')),
      acceptChannel(s.enc, rk.secretKey, PSK, channelInfo('AAAAAAAAAAAAAAAAAAAAAB', 'alice', 'bob')),
      acceptChannel(s.enc, generateSessionKeyPair().secretKey, PSK, info),
    ];
    for (const v of variants) {
      const r = await v; // X-Wing decapsulation is implicit-reject: it yields an unrelated root
      expect(await errCode(openOnChannel(r.root, 0n, new Uint8Array(0), c))).toBe('auth');
    }
  });

  it('garbage inputs give typed errors', async () => {
    expect(await errCode(openSenderChannel(new Uint8Array(100), PSK, info))).toBe('bad-key');
    expect(await errCode(openSenderChannel(rk.publicKey, { key: new Uint8Array(16), id: PSK.id }, info))).toBe('bad-key');
    expect(await errCode(acceptChannel(new Uint8Array(1119), rk.secretKey, PSK, info))).toBe('malformed');
    expect(await errCode(acceptChannel(new Uint8Array(1120), new Uint8Array(31), PSK, info))).toBe('bad-key');
    expect(await errCode(openOnChannel(new Uint8Array(32), 0n, new Uint8Array(0), new Uint8Array(10)))).toBe('malformed');
    expect(await errCode(openOnChannel(new Uint8Array(32), -1n, new Uint8Array(0), new Uint8Array(20)))).toBe('malformed');
  });

  it('fast-check: seal/open round trip for arbitrary seq, aad, plaintext', async () => {
    const s = await openSenderChannel(rk.publicKey, PSK, info);
    const r = await acceptChannel(s.enc, rk.secretKey, PSK, info);
    await fc.assert(
      fc.asyncProperty(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 200 }), async (seq, aad, pt) => {
        const c = await sealOnChannel(s.root, seq, aad, pt);
        expect(c.length).toBe(pt.length + 16);
        expect(hex(await openOnChannel(r.root, seq, aad, c))).toBe(hex(pt));
      }),
      { numRuns: 50 },
    );
  });
});
