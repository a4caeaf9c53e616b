/**
 * The ONE place that decides how this browser profile's Ed25519 identity key (identity.ts `Identity`) is held, and
 * the two ways it can be:
 *
 * - `webcrypto`: a non-extractable WebCrypto key (`{ name: 'Ed25519' }`, WebCrypto Secure Curves; Chromium 137+,
 *   Firefox 129+, Safari 17+, Node 20). Page script can sign with it but never read the secret; IndexedDB stores the
 *   `CryptoKey` object itself (structured clone keeps it non-extractable; lib/identity-store.ts).
 * - `raw`: the 32-byte secret seed in memory, signing with @noble/curves. Only where this browser's WebCrypto has no
 *   Ed25519 (`generateKey` or `importKey` throws), and for tests and vectors that need a fixed key.
 *
 * Both make the same signatures for the same key (Ed25519 is deterministic, RFC 8032 §5.1.6), checked by identity.ts
 * `verify` (noble, strict). Raw storage format (JSON string, the format every identity had before the WebCrypto key):
 * `{"kind":"sealed-meet identity","v":1,"sk":"<base64url 32>","pk":"<base64url 32>"}`. WebCrypto storage format
 * (an IndexedDB value, never JSON): `{ kind: "sealed-meet identity", v: 2, privateKey: CryptoKey, publicKey: 32 bytes }`.
 *
 * @module
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import * as z from 'zod/mini';
import { ab, concat, equalBytes, fromBase64urlExact, randomBytes, toBase64url, utf8, wipe } from './bytes.ts';
import { E2eeError } from './errors.ts';
import { IDENTITY_PUBLIC_LEN, IDENTITY_SECRET_LEN, SIGNATURE_LEN, verify, type Identity } from './identity.ts';
import { parseJson } from './json.ts';

export const IDENTITY_EXPORT_KIND = 'sealed-meet identity';
/** What a stored WebCrypto key signs once when it is loaded, to prove it belongs to the stored public key (never sent). */
export const IDENTITY_SELF_TEST_LABEL = 'sealed-meet v1 identity self-test';
/** RFC 8410 §7 PKCS#8 `OneAsymmetricKey` for Ed25519 (OID 1.3.101.112), up to the 32-byte seed. */
const PKCS8_ED25519_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);
const ED25519 = { name: 'Ed25519' } as const;

/** A non-extractable WebCrypto Ed25519 key. */
export interface WebCryptoIdentity extends Identity {
  readonly kind: 'webcrypto';
  /** Ed25519 private key, `extractable === false`, usages `['sign']`. */
  readonly privateKey: CryptoKey;
}

/** The secret seed in memory (fallback, tests, vectors). */
export interface RawIdentity extends Identity {
  readonly kind: 'raw';
  /** Ed25519 secret key (32-byte seed). Secret: wipe (`fill(0)`) when dropped. */
  readonly secretKey: Uint8Array;
}

export type IdentityKey = WebCryptoIdentity | RawIdentity;

/** The WebCrypto calls this module makes (default `globalThis.crypto.subtle`). */
export type Ed25519Subtle = Pick<SubtleCrypto, 'generateKey' | 'importKey' | 'exportKey' | 'sign'>;

function defaultSubtle(): Ed25519Subtle | undefined {
  return globalThis.crypto?.subtle;
}

function checkMessage(message: Uint8Array): void {
  if (!(message instanceof Uint8Array)) throw new E2eeError('malformed', 'the message to sign must be bytes');
}

/** Raw identity from a 32-byte seed (default: a fresh random one). @throws E2eeError('bad-key') */
export function rawIdentity(secretKey: Uint8Array = randomBytes(IDENTITY_SECRET_LEN)): RawIdentity {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== IDENTITY_SECRET_LEN) throw new E2eeError('bad-key', 'identity secret key must be 32 bytes');
  return {
    kind: 'raw',
    secretKey,
    publicKey: ed25519.getPublicKey(secretKey),
    // RFC 8032 §5.1.6
    sign: async (message) => {
      checkMessage(message);
      return ed25519.sign(message, secretKey);
    },
  };
}

/**
 * Wraps a non-extractable WebCrypto Ed25519 private key and its 32-byte public key, after a self-test signature that
 * must verify under `publicKey` (a key pair that does not match is refused, not used).
 * @throws E2eeError('bad-key')
 */
export async function webCryptoIdentity(privateKey: CryptoKey, publicKey: Uint8Array, subtle: Ed25519Subtle | undefined = defaultSubtle()): Promise<WebCryptoIdentity> {
  if (subtle === undefined) throw new E2eeError('state', 'WebCrypto (globalThis.crypto.subtle) is not available');
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== IDENTITY_PUBLIC_LEN) throw new E2eeError('bad-key', 'identity public key must be 32 bytes');
  if (privateKey.algorithm.name !== ED25519.name || privateKey.type !== 'private' || !privateKey.usages.includes('sign')) {
    throw new E2eeError('bad-key', 'identity key must be an Ed25519 private key that can sign');
  }
  if (privateKey.extractable) throw new E2eeError('bad-key', 'identity private key must be non-extractable');
  const pk = publicKey.slice();
  const id: WebCryptoIdentity = {
    kind: 'webcrypto',
    privateKey,
    publicKey: pk,
    sign: async (message) => {
      checkMessage(message);
      const sig = new Uint8Array(await subtle.sign(ED25519, privateKey, ab(message)));
      if (sig.length !== SIGNATURE_LEN) throw new E2eeError('bad-key', 'WebCrypto Ed25519 signature is not 64 bytes');
      return sig;
    },
  };
  const probe = utf8(IDENTITY_SELF_TEST_LABEL);
  if (!verify(pk, probe, await id.sign(probe))) throw new E2eeError('bad-key', 'identity private key does not match its public key');
  return id;
}

/**
 * A new identity for this browser profile: a non-extractable WebCrypto key pair, or a raw one only where
 * `generateKey({ name: 'Ed25519' })` throws (this browser's WebCrypto has no Ed25519). A WebCrypto failure after
 * `generateKey` succeeded is an error, never a reason to fall back.
 */
export async function createIdentity(subtle: Ed25519Subtle | undefined = defaultSubtle()): Promise<IdentityKey> {
  let pair: CryptoKeyPair;
  try {
    if (subtle === undefined) throw new Error('no WebCrypto');
    pair = (await subtle.generateKey(ED25519, false, ['sign', 'verify'])) as CryptoKeyPair;
  } catch {
    return rawIdentity();
  }
  const publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return webCryptoIdentity(pair.privateKey, publicKey, subtle);
}

/**
 * The same key (same public key, same fingerprint) as a non-extractable WebCrypto key, imported from the raw seed as
 * PKCS#8 (RFC 8410 §7); null where this browser's WebCrypto has no Ed25519 (`importKey` throws). The caller wipes
 * `raw.secretKey` once it stored the result.
 * @throws E2eeError('bad-key') if the imported key does not sign for `raw.publicKey`
 */
export async function toNonExtractable(raw: RawIdentity, subtle: Ed25519Subtle | undefined = defaultSubtle()): Promise<WebCryptoIdentity | null> {
  if (subtle === undefined) return null;
  const pkcs8 = concat(PKCS8_ED25519_PREFIX, raw.secretKey);
  let privateKey: CryptoKey;
  try {
    privateKey = await subtle.importKey('pkcs8', pkcs8, ED25519, false, ['sign']);
  } catch {
    return null;
  } finally {
    wipe(pkcs8);
  }
  return webCryptoIdentity(privateKey, raw.publicKey, subtle);
}

// ------------------------------------------------------------------------------------------------
// Storage formats
// ------------------------------------------------------------------------------------------------

/** Raw storage format (JSON string with the secret key: store it only in the profile's own storage). */
export function exportIdentity(identity: RawIdentity): string {
  return JSON.stringify({ kind: IDENTITY_EXPORT_KIND, v: 1, sk: toBase64url(identity.secretKey), pk: toBase64url(identity.publicKey) });
}

const IdentityExport = z.strictObject({ kind: z.literal(IDENTITY_EXPORT_KIND), v: z.number(), sk: z.string(), pk: z.string() });

/** @throws E2eeError('malformed' | 'unsupported-version' | 'bad-key') */
export function importIdentity(s: string): RawIdentity {
  const r = parseJson(IdentityExport, s, 'identity export');
  if (r.v !== 1) throw new E2eeError('unsupported-version', 'identity export version');
  const sk = fromBase64urlExact(r.sk, IDENTITY_SECRET_LEN, 'identity secret key');
  const pk = fromBase64urlExact(r.pk, IDENTITY_PUBLIC_LEN, 'identity public key');
  const id = rawIdentity(sk);
  if (!equalBytes(id.publicKey, pk)) {
    wipe(sk);
    throw new E2eeError('bad-key', 'identity public key does not match the secret key');
  }
  return id;
}

/** The IndexedDB value of a WebCrypto identity (structured clone; the CryptoKey stays non-extractable). */
export interface IdentityRecord {
  kind: typeof IDENTITY_EXPORT_KIND;
  v: 2;
  privateKey: CryptoKey;
  publicKey: Uint8Array;
}

export function identityRecord(identity: WebCryptoIdentity): IdentityRecord {
  return { kind: IDENTITY_EXPORT_KIND, v: 2, privateKey: identity.privateKey, publicKey: identity.publicKey.slice() };
}

const IdentityRecordSchema = z.strictObject({
  kind: z.literal(IDENTITY_EXPORT_KIND),
  v: z.literal(2),
  privateKey: z.custom<CryptoKey>((k) => typeof CryptoKey !== 'undefined' && k instanceof CryptoKey),
  publicKey: z.instanceof(Uint8Array),
});

/** A stored IndexedDB value back to its identity (self-tested). @throws E2eeError('malformed' | 'bad-key') */
export async function fromIdentityRecord(value: unknown, subtle: Ed25519Subtle | undefined = defaultSubtle()): Promise<WebCryptoIdentity> {
  const r = IdentityRecordSchema.safeParse(value);
  if (!r.success) throw new E2eeError('malformed', 'stored identity does not have the expected fields');
  return webCryptoIdentity(r.data.privateKey, r.data.publicKey, subtle);
}
