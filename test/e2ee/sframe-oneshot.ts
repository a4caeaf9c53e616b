/**
 * Test support: the RFC 9605 one-shot API (seal / open with a base key, the raw-key AES-CTR+HMAC AEAD of §4.5.1)
 * that the Appendix C vectors are stated in, built only from the production primitives of client/src/e2ee/sframe.ts
 * (`importSFrameKey`, `sealWithKey`, `openWithKey`, `ctrHmacSeal`, `ctrHmacOpen`). The app never seals without a
 * key ring, so none of this is in a production module.
 */
import { E2eeError } from '../../client/src/e2ee/errors.ts';
import {
  ctrHmacOpen,
  ctrHmacSeal,
  decodeHeader,
  importSFrameKey,
  openWithKey,
  sealWithKey,
  suiteParams,
  wipeSFrameKey,
  type KeyUsage,
  type SFrameKey,
} from '../../client/src/e2ee/sframe.ts';

/** Raw-key AEAD.Encrypt of RFC 9605 §4.5.1 (`key` = enc_key || auth_key, Nk bytes), for the C.2 vectors. */
export async function ctrHmacEncrypt(suite: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Promise<Uint8Array> {
  const { p, aes, mac } = await importRaw(suite, key, 'encrypt');
  const { ciphertext, tag } = await ctrHmacSeal(aes, mac, p.nt, nonce, aad, pt);
  const out = new Uint8Array(ciphertext.length + tag.length);
  out.set(ciphertext, 0);
  out.set(tag, ciphertext.length);
  return out;
}

/** Raw-key AEAD.Decrypt of RFC 9605 §4.5.1. */
export async function ctrHmacDecrypt(suite: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
  const { p, aes, mac } = await importRaw(suite, key, 'decrypt');
  if (ct.length < p.nt) throw new E2eeError('malformed', 'ciphertext shorter than the tag');
  return ctrHmacOpen(aes, mac, p.nt, nonce, aad, ct);
}

async function importRaw(suite: number, key: Uint8Array, use: 'encrypt' | 'decrypt') {
  const p = suiteParams(suite);
  if (p.kind !== 'ctr-hmac') throw new E2eeError('unsupported-suite', `${p.name} is not an AES-CTR+HMAC suite`);
  if (key.length !== p.nk) throw new E2eeError('range', `key must be ${p.nk} bytes`);
  const s = globalThis.crypto.subtle;
  const aes = await s.importKey('raw', key.slice(0, p.nka), { name: 'AES-CTR' }, false, [use]);
  const mac = await s.importKey('raw', key.slice(p.nka), { name: 'HMAC', hash: p.hash }, false, ['sign']);
  return { p, aes, mac };
}

/**
 * Caller-owned cache of imported keys per (base key object, suite, KID, usage). Keyed by the identity of the
 * base-key `Uint8Array` (a WeakMap: no secret ever becomes a map key string); call `drop(baseKey)` before wiping
 * or reusing that array.
 */
export class KeyCache {
  #byBase = new WeakMap<Uint8Array, Map<string, Promise<SFrameKey>>>();

  get(suite: number, baseKey: Uint8Array, kid: bigint, usage: KeyUsage): Promise<SFrameKey> {
    let m = this.#byBase.get(baseKey);
    if (m === undefined) {
      m = new Map();
      this.#byBase.set(baseKey, m);
    }
    const id = `${suite}:${kid}:${usage}`;
    let pk = m.get(id);
    if (pk === undefined) {
      const map = m;
      pk = importSFrameKey(suite, baseKey, kid, usage);
      pk.catch(() => map.delete(id));
      map.set(id, pk);
    }
    return pk;
  }

  /** Forget and wipe every key derived from `baseKey`. */
  drop(baseKey: Uint8Array): void {
    const m = this.#byBase.get(baseKey);
    if (m === undefined) return;
    this.#byBase.delete(baseKey);
    for (const pk of m.values()) pk.then(wipeSFrameKey, () => undefined);
  }
}

/**
 * One-shot RFC 9605 encrypt: derive (or take from `cache`) the key for (baseKey, kid) and seal.
 * Returns `header || ciphertext`.
 */
export async function seal(
  suite: number,
  baseKey: Uint8Array,
  kid: bigint,
  ctr: bigint,
  metadata: Uint8Array,
  plaintext: Uint8Array,
  cache?: KeyCache,
): Promise<Uint8Array> {
  if (cache !== undefined) return sealWithKey(await cache.get(suite, baseKey, kid, 'seal'), ctr, metadata, plaintext);
  const k = await importSFrameKey(suite, baseKey, kid, 'seal');
  try {
    return await sealWithKey(k, ctr, metadata, plaintext);
  } finally {
    wipeSFrameKey(k);
  }
}

/**
 * One-shot RFC 9605 decrypt: parse the header, derive the key for (baseKey, header KID) and open.
 * Throws E2eeError (`malformed` | `auth` | `unsupported-suite` ...).
 */
export async function open(suite: number, baseKey: Uint8Array, metadata: Uint8Array, sframe: Uint8Array, cache?: KeyCache): Promise<Uint8Array> {
  suiteParams(suite);
  const h = decodeHeader(sframe);
  if (cache !== undefined) return openWithKey(await cache.get(suite, baseKey, h.kid, 'open'), metadata, sframe, h);
  const k = await importSFrameKey(suite, baseKey, h.kid, 'open');
  try {
    return await openWithKey(k, metadata, sframe, h);
  } finally {
    wipeSFrameKey(k);
  }
}
