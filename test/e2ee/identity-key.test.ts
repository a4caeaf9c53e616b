/**
 * The two Ed25519 signers behind `Identity.sign` (client/src/e2ee/identity-key.ts), with Node 20's real WebCrypto:
 * - the WebCrypto identity is a non-extractable CryptoKey (exportKey rejects in every format, also after the
 *   structured clone IndexedDB makes), and its signatures verify with noble's strict `verify`;
 * - the raw (noble) identity and the same key moved into WebCrypto (the migration of an old JSON identity) sign the
 *   RFC 8032 §7.1 vectors byte for byte, so the public key and fingerprint do not change;
 * - the raw fallback is chosen only when `generateKey({ name: 'Ed25519' })` throws; any later WebCrypto failure is an
 *   error, never a silent raw key;
 * - keys that are extractable, of another algorithm, or do not match their public key are refused; stored records
 *   that are not ours are refused as malformed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import prims from '../vectors/primitives.json' with { type: 'json' };
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import { fingerprint, verify } from '../../client/src/e2ee/identity.ts';
import {
  createIdentity,
  fromIdentityRecord,
  identityRecord,
  rawIdentity,
  toNonExtractable,
  webCryptoIdentity,
  type Ed25519Subtle,
  type WebCryptoIdentity,
} from '../../client/src/e2ee/identity-key.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const real = crypto.subtle;
const ED25519 = { name: 'Ed25519' };
const vectors = (prims.ed25519 as { src: string; secret?: string; public: string; msg: string; sig: string }[]).filter((v) => v.secret !== undefined);

/** Node's real SubtleCrypto with some calls replaced (the parts of WebCrypto a browser may lack). */
function subtleWith(over: Partial<Record<keyof Ed25519Subtle, (...args: never[]) => unknown>>): Ed25519Subtle {
  return {
    generateKey: real.generateKey.bind(real),
    importKey: real.importKey.bind(real),
    exportKey: real.exportKey.bind(real),
    sign: real.sign.bind(real),
    ...over,
  } as Ed25519Subtle;
}
const notSupported = (): Promise<never> => Promise.reject(new DOMException('Unrecognized algorithm name', 'NotSupportedError'));

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    return isE2eeError(e) ? e.code : `not an E2eeError: ${String(e)}`;
  }
}

async function expectNonExtractable(id: WebCryptoIdentity): Promise<void> {
  expect(id.privateKey.extractable).toBe(false);
  expect(id.privateKey.type).toBe('private');
  expect(id.privateKey.algorithm.name).toBe('Ed25519');
  for (const format of ['pkcs8', 'jwk', 'raw'] as const) await expect(real.exportKey(format, id.privateKey), format).rejects.toThrow();
}

describe('WebCrypto identity (Node 20 has Ed25519)', () => {
  it('is chosen here, non-extractable (exportKey rejects in every format), and signs what noble verifies strictly', async () => {
    const id = await createIdentity();
    expect(id.kind).toBe('webcrypto');
    if (id.kind !== 'webcrypto') throw new Error('unreachable');
    await expectNonExtractable(id);
    expect(id.publicKey.length).toBe(32);
    const m = new Uint8Array([1, 2, 3]);
    const s = await id.sign(m);
    expect(s.length).toBe(64);
    expect(verify(id.publicKey, m, s)).toBe(true);
    expect(verify(id.publicKey, new Uint8Array([1, 2]), s)).toBe(false);
    expect(verify((await createIdentity()).publicKey, m, s)).toBe(false);
    expect(await code(id.sign('not bytes' as unknown as Uint8Array))).toBe('malformed');
  });

  it('survives a structured clone (what IndexedDB stores) still non-extractable, same key; foreign records are malformed', async () => {
    const id = (await createIdentity()) as WebCryptoIdentity;
    const back = await fromIdentityRecord(structuredClone(identityRecord(id)));
    await expectNonExtractable(back);
    expect(hex(back.publicKey)).toBe(hex(id.publicKey));
    const m = new TextEncoder().encode('after reload');
    expect(verify(id.publicKey, m, await back.sign(m))).toBe(true);
    const rec = identityRecord(id);
    const bad: unknown[] = [
      null,
      'a string',
      {},
      { ...rec, v: 1 },
      { ...rec, kind: 'x' },
      { ...rec, extra: 1 },
      { ...rec, privateKey: { type: 'private' } },
      { ...rec, publicKey: [...rec.publicKey] },
    ];
    for (const v of bad) expect(await code(fromIdentityRecord(v)), JSON.stringify(v)).toBe('malformed');
    // a record whose public key is not the private key's: refused by the self-test, not used
    expect(await code(fromIdentityRecord({ ...rec, publicKey: rawIdentity().publicKey }))).toBe('bad-key');
    expect(await code(fromIdentityRecord({ ...rec, publicKey: new Uint8Array(31) }))).toBe('bad-key');
    await fc.assert(
      fc.asyncProperty(fc.anything(), async (v) => {
        expect(await code(fromIdentityRecord(v))).toBe('malformed');
      }),
      { numRuns: 200 },
    );
  });

  it('refuses an extractable key, a public key, a key of another algorithm, and a key that does not match its public key', async () => {
    const extractable = (await real.generateKey(ED25519, true, ['sign', 'verify'])) as CryptoKeyPair;
    const pk = new Uint8Array(await real.exportKey('raw', extractable.publicKey));
    expect(await code(webCryptoIdentity(extractable.privateKey, pk))).toBe('bad-key');
    const pair = (await real.generateKey(ED25519, false, ['sign', 'verify'])) as CryptoKeyPair;
    const pairPk = new Uint8Array(await real.exportKey('raw', pair.publicKey));
    expect(await code(webCryptoIdentity(pair.publicKey, pairPk))).toBe('bad-key');
    const hmac = await real.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    expect(await code(webCryptoIdentity(hmac, pairPk))).toBe('bad-key');
    expect(await code(webCryptoIdentity(pair.privateKey, pk))).toBe('bad-key'); // another key's public key
    expect(await code(webCryptoIdentity(pair.privateKey, pairPk.subarray(0, 31)))).toBe('bad-key');
    expect((await webCryptoIdentity(pair.privateKey, pairPk)).kind).toBe('webcrypto');
  });
});

describe('raw identity and the migration into WebCrypto', () => {
  it('both sign the RFC 8032 §7.1 vectors byte for byte: moving a raw key into WebCrypto keeps its public key and fingerprint', async () => {
    expect(vectors.length).toBeGreaterThanOrEqual(2);
    for (const v of vectors) {
      const raw = rawIdentity(h(v.secret!));
      expect(raw.kind).toBe('raw');
      expect(hex(raw.publicKey), v.src).toBe(v.public);
      expect(hex(await raw.sign(h(v.msg))), v.src).toBe(v.sig);
      const web = await toNonExtractable(raw);
      expect(web, v.src).not.toBeNull();
      await expectNonExtractable(web!);
      expect(hex(web!.publicKey), v.src).toBe(v.public);
      expect(hex(fingerprint(web!.publicKey))).toBe(hex(fingerprint(raw.publicKey)));
      expect(hex(await web!.sign(h(v.msg))), v.src).toBe(v.sig);
      expect(hex(raw.secretKey), 'the caller wipes the raw secret, not toNonExtractable').toBe(v.secret);
    }
  });

  it('property: for any seed and message, the raw and the migrated key make the same signature, which verifies', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), async (seed, m) => {
        const raw = rawIdentity(seed);
        const web = (await toNonExtractable(raw))!;
        const s = await web.sign(m);
        expect(hex(s)).toBe(hex(await raw.sign(m)));
        expect(verify(raw.publicKey, m, s)).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('a raw key needs a 32-byte seed; the migration is null where importKey has no Ed25519, and refuses a key that signs for another public key', async () => {
    expect(() => rawIdentity(new Uint8Array(31))).toThrow(/bad-key/);
    expect(() => rawIdentity('x'.repeat(32) as unknown as Uint8Array)).toThrow(/bad-key/);
    const raw = rawIdentity();
    expect(await code(raw.sign([1, 2] as unknown as Uint8Array))).toBe('malformed');
    expect(await toNonExtractable(raw, subtleWith({ importKey: notSupported }))).toBeNull();
    const other = rawIdentity();
    const wrongKey = subtleWith({
      importKey: ((_f: string, _k: BufferSource, alg: AlgorithmIdentifier, ext: boolean, use: KeyUsage[]) =>
        real.importKey('pkcs8', new Uint8Array([...h('302e020100300506032b657004220420'), ...other.secretKey]), alg, ext, use)) as never,
    });
    expect(await code(toNonExtractable(raw, wrongKey))).toBe('bad-key');
  });
});

describe('which signer this browser gets (createIdentity)', () => {
  it('the raw fallback only when generateKey throws (rejects or throws at once); a WebCrypto failure after it is an error, not a fallback', async () => {
    const m = new Uint8Array([9, 9]);
    for (const generateKey of [notSupported, (): never => {
      throw new TypeError('crypto.subtle.generateKey: Ed25519 unknown');
    }]) {
      const id = await createIdentity(subtleWith({ generateKey }));
      expect(id.kind).toBe('raw');
      expect(verify(id.publicKey, m, await id.sign(m))).toBe(true);
    }
    // generateKey works: WebCrypto, and nothing after it falls back silently
    expect((await createIdentity(subtleWith({}))).kind).toBe('webcrypto');
    await expect(createIdentity(subtleWith({ exportKey: () => Promise.reject(new DOMException('boom', 'OperationError')) }))).rejects.toThrow(/boom/);
    await expect(createIdentity(subtleWith({ sign: () => Promise.reject(new DOMException('boom', 'OperationError')) }))).rejects.toThrow(/boom/);
    // a sign that returns another key's signature is caught by the self-test
    const other = (await createIdentity()) as WebCryptoIdentity;
    expect(await code(createIdentity(subtleWith({ sign: ((alg: AlgorithmIdentifier, _k: CryptoKey, data: BufferSource) => real.sign(alg, other.privateKey, data)) as never })))).toBe('bad-key');
  });
});
