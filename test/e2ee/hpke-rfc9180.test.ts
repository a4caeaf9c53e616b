/**
 * RFC 9180 Appendix A.1 vectors (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM), base (A.1.1) and
 * psk (A.1.2) modes, through the same HPKE library (@hpke/core) that key transport uses. Plus the primitive
 * known-answer cases from primitives.json (X25519 RFC 7748, Ed25519 RFC 8032, HKDF RFC 5869, AES-GCM).
 */
import { describe, expect, it } from 'vitest';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { x25519, ed25519 } from '@noble/curves/ed25519.js';
import { hkdf, extract } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import vectors from '../vectors/rfc9180-x25519-aes128gcm.json' with { type: 'json' };
import prims from '../vectors/primitives.json' with { type: 'json' };
import { verify } from '../../client/src/e2ee/identity.ts';

const h = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, 'hex'));
const hex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');

type V = (typeof vectors)['A.1.2'];

function suite(): CipherSuite {
  return new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
}

async function runVector(name: 'A.1.1' | 'A.1.2'): Promise<void> {
  const v = vectors[name] as Partial<V> & (typeof vectors)['A.1.1'];
  const s = suite();
  const psk = v.psk !== undefined && v.psk_id !== undefined ? { key: h(v.psk), id: h(v.psk_id) } : undefined;
  // Receiver key from ikmR (DeriveKeyPair) must match skRm/pkRm.
  const rkp = await s.kem.deriveKeyPair(h(v.ikmR));
  expect(hex(await s.kem.serializePublicKey(rkp.publicKey))).toBe(v.pkRm);
  expect(hex(await s.kem.serializePrivateKey(rkp.privateKey))).toBe(v.skRm);
  const ekm = await s.kem.deriveKeyPair(h(v.ikmE));
  const pkR = await s.kem.deserializePublicKey(h(v.pkRm).buffer);
  const sender = await s.createSenderContext({ recipientPublicKey: pkR, info: h(v.info), ekm, ...(psk ? { psk } : {}) });
  expect(hex(sender.enc)).toBe(v.enc);
  const skR = await s.kem.deserializePrivateKey(h(v.skRm).buffer);
  const recipient = await s.createRecipientContext({ recipientKey: skR, enc: h(v.enc), info: h(v.info), ...(psk ? { psk } : {}) });
  let seq = 0;
  for (const e of v.encryptions) {
    // Advance both contexts to e.seq with filler messages (the library's sequence is implicit).
    for (; seq < e.seq; seq++) {
      const filler = await sender.seal(new Uint8Array(1), new Uint8Array(0));
      await recipient.open(filler, new Uint8Array(0));
    }
    const ct = await sender.seal(h(e.pt), h(e.aad));
    expect(hex(ct), `${name} seq ${e.seq}`).toBe(e.ct);
    expect(hex(await recipient.open(h(e.ct), h(e.aad)))).toBe(e.pt);
    seq++;
  }
  for (const x of v.exports) {
    expect(hex(await sender.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
    expect(hex(await recipient.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
  }
}

describe('RFC 9180 A.1 through @hpke/core', () => {
  it('A.1.1 base mode: enc, all published encryptions (seq 0,1,2,4,255,256), exports', async () => {
    await runVector('A.1.1');
  });
  it('A.1.2 psk mode: enc, all published encryptions, exports', async () => {
    await runVector('A.1.2');
  });
  it('A.1.1 seq0 matches primitives.json', () => {
    expect(prims.hpke_rfc9180_A1_base.seq0.ct).toBe(vectors['A.1.1'].encryptions[0]!.ct);
    expect(prims.hpke_rfc9180_A1_base.enc).toBe(vectors['A.1.1'].enc);
  });
  it('psk mode rejects a wrong PSK and a tampered ciphertext', async () => {
    const v = vectors['A.1.2'];
    const s = suite();
    const skR = await s.kem.deserializePrivateKey(h(v.skRm).buffer);
    const bad = await s.createRecipientContext({ recipientKey: skR, enc: h(v.enc), info: h(v.info), psk: { key: new Uint8Array(32).fill(1), id: h(v.psk_id) } });
    await expect(bad.open(h(v.encryptions[0]!.ct), h(v.encryptions[0]!.aad))).rejects.toThrow();
    const good = await s.createRecipientContext({ recipientKey: skR, enc: h(v.enc), info: h(v.info), psk: { key: h(v.psk), id: h(v.psk_id) } });
    const t = h(v.encryptions[0]!.ct);
    t[3]! ^= 1;
    await expect(good.open(t, h(v.encryptions[0]!.aad))).rejects.toThrow();
  });
});

describe('primitives.json', () => {
  it('X25519 (RFC 7748) and low-order rejection', () => {
    const [a, b, c] = prims.x25519 as [any, any, any];
    expect(hex(x25519.scalarMult(h(a.scalar), h(a.u)))).toBe(a.out);
    expect(hex(x25519.getPublicKey(h(b.alice_priv)))).toBe(b.alice_pub);
    expect(hex(x25519.getPublicKey(h(b.bob_priv)))).toBe(b.bob_pub);
    expect(hex(x25519.getSharedSecret(h(b.alice_priv), h(b.bob_pub)))).toBe(b.shared);
    expect(() => x25519.getSharedSecret(h(c.private), h(c.public))).toThrow();
  });
  it('Ed25519 (RFC 8032) + strict verification rejects s+L', () => {
    for (const v of prims.ed25519 as any[]) {
      if (v.result === 'invalid') {
        expect(verify(h(v.public), h(v.msg), h(v.sig))).toBe(false);
        continue;
      }
      expect(hex(ed25519.getPublicKey(h(v.secret)))).toBe(v.public);
      expect(hex(ed25519.sign(h(v.msg), h(v.secret)))).toBe(v.sig);
      expect(verify(h(v.public), h(v.msg), h(v.sig))).toBe(true);
      const bad = h(v.sig);
      bad[0]! ^= 1;
      expect(verify(h(v.public), h(v.msg), bad)).toBe(false);
    }
  });
  it('HKDF-SHA256 (RFC 5869)', () => {
    for (const v of prims.hkdf_sha256 as any[]) {
      expect(hex(extract(sha256, h(v.ikm), h(v.salt)))).toBe(v.prk);
      expect(hex(hkdf(sha256, h(v.ikm), h(v.salt), h(v.info), v.L))).toBe(v.okm);
    }
  });
  it('AES-GCM (Wycheproof) via WebCrypto', async () => {
    for (const v of prims.aes_gcm as any[]) {
      const k = await crypto.subtle.importKey('raw', h(v.key), 'AES-GCM', false, ['encrypt', 'decrypt']);
      const p = { name: 'AES-GCM', iv: h(v.iv), additionalData: h(v.aad) };
      if (v.result === 'valid') {
        expect(hex(await crypto.subtle.encrypt(p, k, h(v.msg)))).toBe(v.ct + v.tag);
        expect(hex(await crypto.subtle.decrypt(p, k, h(v.ct + v.tag)))).toBe(v.msg);
      } else {
        await expect(crypto.subtle.decrypt(p, k, h(v.ct + v.tag))).rejects.toThrow();
      }
    }
  });
});
