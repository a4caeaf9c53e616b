import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { extract } from '@noble/hashes/hkdf.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import {
  CipherSuite,
  MAX_U64,
  decodeHeader,
  deriveKeySalt,
  derivationLabel,
  encodeHeader,
  headerLength,
  importSFrameKey,
  openWithKey,
  ratchetBaseKey,
  sealWithKey,
  sframeNonce,
  suiteParams,
  wipeSFrameKey,
} from '../../client/src/e2ee/sframe.ts';
import { KeyCache, ctrHmacDecrypt, ctrHmacEncrypt, open, seal } from './sframe-oneshot.ts';
import { E2eeError, isE2eeError } from '../../client/src/e2ee/errors.ts';
import type { E2eeErrorCode } from '../../client/src/e2ee/errors.ts';

// ---- vectors ---------------------------------------------------------------------------------------------------

interface HeaderVector { kid: string; ctr: string; encoded: string }
interface CtrHmacVector { cipher_suite: number; key: string; enc_key: string; auth_key: string; nonce: string; aad: string; pt: string; ct: string }
interface SFrameVector {
  cipher_suite: number; kid: string; ctr: string; base_key: string; sframe_key_label: string; sframe_salt_label: string;
  sframe_secret: string; sframe_key: string; sframe_salt: string; metadata: string; nonce: string; aad: string; pt: string; ct: string;
}
interface Vectors {
  header: HeaderVector[];
  aes_ctr_hmac: CtrHmacVector[];
  sframe: SFrameVector[];
  non_rfc_draft_barnes_sframe_iana_256: { sframe_aes_256_ctr_hmac: SFrameVector[] };
}
const V = JSON.parse(readFileSync(new URL('../vectors/sframe-rfc9605.json', import.meta.url), 'utf8')) as Vectors;

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const flipBit = (b: Uint8Array, bit: number): void => {
  b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7));
};

async function errCode(p: Promise<unknown> | (() => unknown)): Promise<E2eeErrorCode | 'none' | 'foreign'> {
  try {
    if (typeof p === 'function') p();
    else await p;
    return 'none';
  } catch (e) {
    return isE2eeError(e) ? e.code : 'foreign';
  }
}

const KEY16 = hex('000102030405060708090a0b0c0d0e0f');
const u64 = fc.bigInt({ min: 0n, max: MAX_U64 });
// Bias towards the interesting boundaries (inline < 8, byte-length edges).
const u64Edge = fc.oneof(
  u64,
  fc.integer({ min: 0, max: 64 }).chain((bits) => fc.constantFrom(...[-1n, 0n, 1n].map((d) => (1n << BigInt(bits)) + d).filter((v) => v >= 0n && v <= MAX_U64))),
);

// ---- tests -------------------------------------------------------------------------------------------------------

describe('RFC 9605 Appendix C test vectors', () => {
  it(`C.1 header encoding: all ${V.header.length} vectors encode and decode exactly`, () => {
    expect(V.header.length).toBe(289);
    for (const v of V.header) {
      const kid = BigInt(v.kid);
      const ctr = BigInt(v.ctr);
      const enc = encodeHeader(kid, ctr);
      expect(toHex(enc), `kid=${v.kid} ctr=${v.ctr}`).toBe(v.encoded);
      expect(headerLength(kid, ctr)).toBe(enc.length);
      // decode with a trailing ciphertext byte to show the length is reported, not assumed
      const d = decodeHeader(Uint8Array.from([...enc, 0xaa]));
      expect(d).toEqual({ kid, ctr, length: enc.length });
    }
  });

  it('C.2 AES-CTR-HMAC AEAD: all 3 vectors (suites 1, 2, 3) encrypt and decrypt', async () => {
    expect(V.aes_ctr_hmac.map((v) => v.cipher_suite)).toEqual([1, 2, 3]);
    for (const v of V.aes_ctr_hmac) {
      expect(toHex(hex(v.key).subarray(0, 16))).toBe(v.enc_key);
      expect(toHex(hex(v.key).subarray(16))).toBe(v.auth_key);
      const ct = await ctrHmacEncrypt(v.cipher_suite, hex(v.key), hex(v.nonce), hex(v.aad), hex(v.pt));
      expect(toHex(ct)).toBe(v.ct);
      expect(toHex(await ctrHmacDecrypt(v.cipher_suite, hex(v.key), hex(v.nonce), hex(v.aad), ct))).toBe(v.pt);
      const bad = ct.slice();
      flipBit(bad, bad.length * 8 - 8);
      expect(await errCode(ctrHmacDecrypt(v.cipher_suite, hex(v.key), hex(v.nonce), hex(v.aad), bad))).toBe('auth');
    }
  });

  it('C.3 SFrame encryption: all 5 vectors (suites 1-5): labels, secret, key, salt, nonce, aad, ciphertext', async () => {
    expect(V.sframe.map((v) => v.cipher_suite)).toEqual([1, 2, 3, 4, 5]);
    for (const v of V.sframe) {
      const suite = v.cipher_suite;
      const kid = BigInt(v.kid);
      const ctr = BigInt(v.ctr);
      const base = hex(v.base_key);
      expect(toHex(derivationLabel('key', kid, suite))).toBe(v.sframe_key_label);
      expect(toHex(derivationLabel('salt', kid, suite))).toBe(v.sframe_salt_label);
      const h = suiteParams(suite).hash === 'SHA-512' ? sha512 : sha256;
      expect(toHex(extract(h, base, new Uint8Array(0)))).toBe(v.sframe_secret);
      const { key, salt } = deriveKeySalt(suite, base, kid);
      expect(toHex(key)).toBe(v.sframe_key);
      expect(toHex(salt)).toBe(v.sframe_salt);
      expect(toHex(sframeNonce(salt, ctr))).toBe(v.nonce);
      expect(toHex(encodeHeader(kid, ctr)) + v.metadata).toBe(v.aad);
      const ct = await seal(suite, base, kid, ctr, hex(v.metadata), hex(v.pt));
      expect(toHex(ct), `suite ${suite}`).toBe(v.ct);
      expect(toHex(await open(suite, base, hex(v.metadata), hex(v.ct)))).toBe(v.pt);
    }
  });

  it('suites 6-8 (draft-barnes-sframe-iana-256, not RFC 9605) are refused with unsupported-suite', async () => {
    for (const v of V.non_rfc_draft_barnes_sframe_iana_256.sframe_aes_256_ctr_hmac) {
      expect(await errCode(open(v.cipher_suite, hex(v.base_key), hex(v.metadata), hex(v.ct)))).toBe('unsupported-suite');
    }
  });
});

describe('RFC 9605 §4.3 header encoding', () => {
  it('values 0-7 are carried inline in the config byte (X/Y = 0)', () => {
    for (let k = 0n; k < 8n; k++) for (let c = 0n; c < 8n; c++) {
      expect(encodeHeader(k, c)).toEqual(Uint8Array.of(Number((k << 4n) | c)));
    }
  });

  it('MUST encode with the minimum number of bytes: non-minimal encodings are rejected as malformed', async () => {
    // KID 5 in an extended 1-byte field, CTR 3 in an extended 1-byte field
    expect(await errCode(() => decodeHeader(Uint8Array.of(0x80, 0x05)))).toBe('malformed');
    expect(await errCode(() => decodeHeader(Uint8Array.of(0x08, 0x03)))).toBe('malformed');
    // leading zero byte: KID 0x0123 in 3 bytes, CTR 0xff in 2 bytes
    expect(await errCode(() => decodeHeader(Uint8Array.of(0xa0, 0x00, 0x01, 0x23)))).toBe('malformed');
    expect(await errCode(() => decodeHeader(Uint8Array.of(0x09, 0x00, 0xff)))).toBe('malformed');
    // ... while the minimal forms decode
    expect(decodeHeader(Uint8Array.of(0x90, 0x01, 0x23))).toEqual({ kid: 0x123n, ctr: 0n, length: 3 });
    expect(decodeHeader(Uint8Array.of(0x08, 0xff))).toEqual({ kid: 0n, ctr: 0xffn, length: 2 });
  });

  it('truncated headers are rejected as malformed', async () => {
    expect(await errCode(() => decodeHeader(new Uint8Array(0)))).toBe('malformed');
    const full = encodeHeader(MAX_U64, MAX_U64);
    expect(full.length).toBe(17);
    for (let n = 0; n < full.length; n++) expect(await errCode(() => decodeHeader(full.subarray(0, n)))).toBe('malformed');
  });

  it('KID and CTR outside [0, 2^64) are refused with range', async () => {
    expect(await errCode(() => encodeHeader(MAX_U64 + 1n, 0n))).toBe('range');
    expect(await errCode(() => encodeHeader(0n, MAX_U64 + 1n))).toBe('range');
    expect(await errCode(() => encodeHeader(-1n, 0n))).toBe('range');
  });

  it('property: encode/decode round trip for random kid, ctr in [0, 2^64)', () => {
    fc.assert(
      fc.property(u64Edge, u64Edge, fc.uint8Array({ maxLength: 4 }), (kid, ctr, tail) => {
        const enc = encodeHeader(kid, ctr);
        const d = decodeHeader(Uint8Array.from([...enc, ...tail]));
        return d.kid === kid && d.ctr === ctr && d.length === enc.length && enc.length === headerLength(kid, ctr);
      }),
      { numRuns: 5000 },
    );
  });

  it('property: decodeHeader on random bytes returns a canonical header or throws E2eeError(malformed), nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20 }), (bytes) => {
        try {
          const d = decodeHeader(bytes);
          // anything accepted is canonical: re-encoding gives back the same bytes
          return toHex(encodeHeader(d.kid, d.ctr)) === toHex(bytes.subarray(0, d.length));
        } catch (e) {
          return e instanceof E2eeError && e.code === 'malformed';
        }
      }),
      { numRuns: 20000 },
    );
  });
});

describe('RFC 9605 §4.4.1 key selection', () => {
  it('MUST mark each base_key as usable for encryption or decryption, never both', async () => {
    const sk = await importSFrameKey(4, KEY16, 9n, 'seal');
    const ok = await sealWithKey(sk, 1n, new Uint8Array(0), Uint8Array.of(1, 2, 3));
    expect(await errCode(openWithKey(sk, new Uint8Array(0), ok))).toBe('state');
    const rk = await importSFrameKey(4, KEY16, 9n, 'open');
    expect(await errCode(sealWithKey(rk, 2n, new Uint8Array(0), Uint8Array.of(1)))).toBe('state');
    expect(await openWithKey(rk, new Uint8Array(0), ok)).toEqual(Uint8Array.of(1, 2, 3));
    // the WebCrypto key itself carries only one usage
    expect(sk.aes.usages).toEqual(['encrypt']);
    expect(rk.aes.usages).toEqual(['decrypt']);
  });

  it('the key is selected by the header KID: a frame for another KID is refused with unknown-kid, not tried', async () => {
    const sk = await importSFrameKey(4, KEY16, 9n, 'seal');
    const rk = await importSFrameKey(4, KEY16, 10n, 'open');
    const f = await sealWithKey(sk, 1n, new Uint8Array(0), Uint8Array.of(1));
    expect(await errCode(openWithKey(rk, new Uint8Array(0), f))).toBe('unknown-kid');
  });

  it('a wiped key refuses to work and its salt is zeroed', async () => {
    const k = await importSFrameKey(4, KEY16, 1n, 'seal');
    wipeSFrameKey(k);
    expect(k.salt.every((b) => b === 0)).toBe(true);
    expect(await errCode(sealWithKey(k, 0n, new Uint8Array(0), new Uint8Array(1)))).toBe('state');
  });
});

describe('RFC 9605 §4.4.2 key derivation', () => {
  it('labels carry the KID as 8 bytes big-endian (not the compact header form) and the 2-byte suite id', () => {
    const l = derivationLabel('key', 0x123n, 4);
    expect(new TextDecoder().decode(l.subarray(0, 22))).toBe('SFrame 1.0 Secret key ');
    expect(toHex(l.subarray(22))).toBe('00000000000001230004');
    const s = derivationLabel('salt', MAX_U64, 5);
    expect(new TextDecoder().decode(s.subarray(0, 23))).toBe('SFrame 1.0 Secret salt ');
    expect(toHex(s.subarray(23))).toBe('ffffffffffffffff0005');
  });

  it('key and salt sizes follow Nk / Nn of the suite, and each KID gets a distinct key and salt', () => {
    for (const suite of [1, 2, 3, 4, 5]) {
      const p = suiteParams(suite);
      const a = deriveKeySalt(suite, KEY16, 1n);
      const b = deriveKeySalt(suite, KEY16, 2n);
      expect(a.key.length).toBe(p.nk);
      expect(a.salt.length).toBe(p.nn);
      expect(toHex(a.key)).not.toBe(toHex(b.key));
      expect(toHex(a.salt)).not.toBe(toHex(b.salt));
    }
  });

  it('base keys shorter than 16 bytes are refused (range)', async () => {
    expect(await errCode(() => deriveKeySalt(4, new Uint8Array(15), 0n))).toBe('range');
  });
});

describe('RFC 9605 §4.4.3 encryption', () => {
  it('nonce = sframe_salt XOR CTR right-aligned in Nn bytes (full 64-bit CTR)', () => {
    const salt = hex('00112233445566778899aabb');
    expect(toHex(sframeNonce(salt, 0n))).toBe('00112233445566778899aabb');
    expect(toHex(sframeNonce(salt, 0x0102030405060708n))).toBe('00112233455765738d9fadb3');
    expect(toHex(sframeNonce(salt, MAX_U64))).toBe('00112233bbaa99887766554' + '4');
  });

  it('output = header || ciphertext, with AAD = header || metadata (changing either breaks authentication)', async () => {
    const md = Uint8Array.of(9, 9, 9);
    const pt = new Uint8Array(100).fill(7);
    const f = await seal(4, KEY16, 300n, 70000n, md, pt);
    const hdr = encodeHeader(300n, 70000n);
    expect(toHex(f.subarray(0, hdr.length))).toBe(toHex(hdr));
    expect(f.length).toBe(hdr.length + pt.length + 16);
    expect(await open(4, KEY16, md, f)).toEqual(pt);
    expect(await errCode(open(4, KEY16, Uint8Array.of(9, 9), f))).toBe('auth');
    expect(await errCode(open(4, KEY16, new Uint8Array(0), f))).toBe('auth');
  });

  it('leading bytes are written in front of the SFrame in the same buffer', async () => {
    const k = await importSFrameKey(4, KEY16, 1n, 'seal');
    const lead = Uint8Array.of(0xde, 0xad);
    const f = await sealWithKey(k, 5n, lead, Uint8Array.of(1, 2), { leading: lead });
    expect(toHex(f.subarray(0, 2))).toBe('dead');
    const rk = await importSFrameKey(4, KEY16, 1n, 'open');
    expect(await openWithKey(rk, lead, f.subarray(2))).toEqual(Uint8Array.of(1, 2));
  });

  it('property: seal/open round trip for every suite, random kid/ctr/metadata/plaintext', async () => {
    const cache = new KeyCache();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1, 2, 3, 4, 5),
        u64Edge,
        u64Edge,
        fc.uint8Array({ maxLength: 24 }),
        fc.uint8Array({ maxLength: 300 }),
        async (suite, kid, ctr, md, pt) => {
          const f = await seal(suite, KEY16, kid, ctr, md, pt, cache);
          expect(f.length).toBe(headerLength(kid, ctr) + pt.length + suiteParams(suite).nt);
          expect(await open(suite, KEY16, md, f, cache)).toEqual(pt);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('RFC 9605 §4.4.4 decryption', () => {
  it('MUST discard on any failure other than a missing key: property, any single bit flip in the SFrame or the metadata → auth or malformed', async () => {
    const cache = new KeyCache();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1, 2, 3, 4, 5),
        u64Edge,
        u64Edge,
        fc.uint8Array({ maxLength: 16 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.nat(),
        fc.boolean(),
        async (suite, kid, ctr, md, pt, pos, inMetadata) => {
          const f = await seal(suite, KEY16, kid, ctr, md, pt, cache);
          const f2 = f.slice();
          const md2 = md.slice();
          if (inMetadata && md.length > 0) {
            const bit = pos % (md.length * 8);
            flipBit(md2, bit);
          } else {
            const bit = pos % (f.length * 8);
            flipBit(f2, bit);
          }
          const c = await errCode(open(suite, KEY16, md2, f2, cache));
          expect(['auth', 'malformed']).toContain(c);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('frames shorter than header + tag are malformed; truncation anywhere fails', async () => {
    const f = await seal(4, KEY16, 1n, 1n, new Uint8Array(0), new Uint8Array(10));
    for (let n = 0; n < f.length; n++) {
      expect(['auth', 'malformed']).toContain(await errCode(open(4, KEY16, new Uint8Array(0), f.subarray(0, n))));
    }
    expect(await errCode(open(4, KEY16, new Uint8Array(0), f.subarray(0, 16)))).toBe('malformed');
  });

  it('a frame sealed with another base key fails with auth', async () => {
    const f = await seal(4, KEY16, 1n, 1n, new Uint8Array(0), new Uint8Array(10));
    expect(await errCode(open(4, new Uint8Array(16).fill(1), new Uint8Array(0), f))).toBe('auth');
  });
});

describe('RFC 9605 §4.5 cipher suites', () => {
  it('0x0001-0x0005 are implemented with the Table 1 constants; 0x0000, 0x0006, 0xF000 are refused', async () => {
    expect([1, 2, 3, 4, 5].map((s) => [suiteParams(s).nk, suiteParams(s).nt])).toEqual([[48, 10], [48, 8], [48, 4], [16, 16], [32, 16]]);
    expect(suiteParams(CipherSuite.AES_128_GCM_SHA256_128).name).toBe('AES_128_GCM_SHA256_128');
    for (const s of [0, 6, 0xf000]) expect(await errCode(() => suiteParams(s))).toBe('unsupported-suite');
    expect(await errCode(seal(0, KEY16, 0n, 0n, new Uint8Array(0), new Uint8Array(0)))).toBe('unsupported-suite');
  });

  it('§4.5.1 the CTR-HMAC tag is truncated to Nt bytes', async () => {
    for (const [suite, nt] of [[1, 10], [2, 8], [3, 4]] as const) {
      const f = await seal(suite, KEY16, 0n, 0n, new Uint8Array(0), new Uint8Array(5));
      expect(f.length).toBe(1 + 5 + nt);
    }
  });
});

describe('RFC 9605 §5.1 sender-key ratchet', () => {
  it('base_key[i+1] = HKDF-Expand(HKDF-Extract("", base_key[i]), "SFrame 1.0 Ratchet", Nh)', async () => {
    const { expand } = await import('@noble/hashes/hkdf.js');
    for (const [suite, h, nh] of [[4, sha256, 32], [5, sha512, 64]] as const) {
      const next = ratchetBaseKey(suite, KEY16);
      expect(next.length).toBe(nh);
      const want = expand(h, extract(h, KEY16, new Uint8Array(0)), new TextEncoder().encode('SFrame 1.0 Ratchet'), nh);
      expect(toHex(next)).toBe(toHex(want));
      expect(toHex(ratchetBaseKey(suite, next))).not.toBe(toHex(next));
    }
  });
});

describe('KeyCache', () => {
  it('returns the same imported key for the same (base key, suite, KID, usage) and wipes on drop', async () => {
    const c = new KeyCache();
    const base = new Uint8Array(32).fill(5);
    const a = await c.get(4, base, 1n, 'seal');
    expect(await c.get(4, base, 1n, 'seal')).toBe(a);
    expect(await c.get(4, base, 2n, 'seal')).not.toBe(a);
    expect(await c.get(4, base, 1n, 'open')).not.toBe(a);
    c.drop(base);
    await Promise.resolve();
    await Promise.resolve();
    expect(a.wiped).toBe(true);
    expect(await c.get(4, base, 1n, 'seal')).not.toBe(a);
  });
});
