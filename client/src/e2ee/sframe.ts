/**
 * SFrame (RFC 9605): header codec, key schedule, AEADs, seal/open.
 *
 * Wire-exact with RFC 9605 §4.3 (header), §4.4.2 (key derivation), §4.4.3/§4.4.4 (encryption/decryption),
 * §4.5 and §4.5.1 (cipher suites 0x0001-0x0005) and §5.1 (sender-key ratchet). Checked against every vector of
 * RFC 9605 Appendix C (test/vectors/sframe-rfc9605.json, through the one-shot API in test/e2ee/sframe-oneshot.ts).
 *
 * Runs in a Web Worker, a page or Node 20: AES-GCM / AES-CTR / HMAC through `globalThis.crypto.subtle`,
 * HKDF through @noble/hashes. No module-level mutable state: derived keys live in `SFrameKey` objects.
 *
 * Hot path (`sealWithKey` / `openWithKey` with an already imported key): one header encode, one nonce XOR, one
 * AAD build (header || metadata, a few bytes), one WebCrypto AEAD call, and on seal one copy of the ciphertext
 * behind the header (WebCrypto always returns a fresh buffer).
 *
 * @module
 */
import { expand, extract } from '@noble/hashes/hkdf.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import type { CHash } from '@noble/hashes/utils.js';
import { E2eeError } from './errors.ts';

// ---------------------------------------------------------------------------------------------------------------
// Cipher suites (RFC 9605 §4.5, Table 1; IANA §8.1)
// ---------------------------------------------------------------------------------------------------------------

export const CipherSuite = {
  AES_128_CTR_HMAC_SHA256_80: 0x0001,
  AES_128_CTR_HMAC_SHA256_64: 0x0002,
  AES_128_CTR_HMAC_SHA256_32: 0x0003,
  AES_128_GCM_SHA256_128: 0x0004,
  AES_256_GCM_SHA512_128: 0x0005,
} as const;
export type CipherSuiteId = (typeof CipherSuite)[keyof typeof CipherSuite];

/** The project default (design brief): AES_128_GCM_SHA256_128. */
export const DEFAULT_SUITE: CipherSuiteId = CipherSuite.AES_128_GCM_SHA256_128;

export interface SuiteParams {
  readonly id: CipherSuiteId;
  readonly name: string;
  readonly kind: 'gcm' | 'ctr-hmac';
  readonly hash: 'SHA-256' | 'SHA-512';
  /** Hash output size (bytes). */
  readonly nh: number;
  /** AES key size inside the compound CTR+HMAC AEAD (bytes); 0 for GCM. */
  readonly nka: number;
  /** AEAD key size (bytes). */
  readonly nk: number;
  /** Nonce size (bytes). */
  readonly nn: number;
  /** Tag size (bytes). */
  readonly nt: number;
}

const SUITES: ReadonlyMap<number, SuiteParams> = new Map<number, SuiteParams>([
  [1, { id: 1, name: 'AES_128_CTR_HMAC_SHA256_80', kind: 'ctr-hmac', hash: 'SHA-256', nh: 32, nka: 16, nk: 48, nn: 12, nt: 10 }],
  [2, { id: 2, name: 'AES_128_CTR_HMAC_SHA256_64', kind: 'ctr-hmac', hash: 'SHA-256', nh: 32, nka: 16, nk: 48, nn: 12, nt: 8 }],
  [3, { id: 3, name: 'AES_128_CTR_HMAC_SHA256_32', kind: 'ctr-hmac', hash: 'SHA-256', nh: 32, nka: 16, nk: 48, nn: 12, nt: 4 }],
  [4, { id: 4, name: 'AES_128_GCM_SHA256_128', kind: 'gcm', hash: 'SHA-256', nh: 32, nka: 0, nk: 16, nn: 12, nt: 16 }],
  [5, { id: 5, name: 'AES_256_GCM_SHA512_128', kind: 'gcm', hash: 'SHA-512', nh: 64, nka: 0, nk: 32, nn: 12, nt: 16 }],
]);

/** Parameters of a cipher suite; throws `unsupported-suite` for anything but 0x0001-0x0005. */
export function suiteParams(suite: number): SuiteParams {
  const p = SUITES.get(suite);
  if (p === undefined) throw new E2eeError('unsupported-suite', `cipher suite 0x${suite.toString(16).padStart(4, '0')}`);
  return p;
}

// ---------------------------------------------------------------------------------------------------------------
// Header (RFC 9605 §4.3)
// ---------------------------------------------------------------------------------------------------------------

/** 2^64 - 1: KID and CTR are 64-bit unsigned integers. */
export const MAX_U64 = 0xffff_ffff_ffff_ffffn;

function checkU64(name: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > MAX_U64) throw new E2eeError('range', `${name} must be a bigint in [0, 2^64)`);
}

/** Minimal big-endian byte length of v (v >= 8 here, so at least 1). */
function byteLength(v: bigint): number {
  if (v <= 0xffff_ffffn) {
    const n = Number(v);
    return n <= 0xff ? 1 : n <= 0xffff ? 2 : n <= 0xff_ffff ? 3 : 4;
  }
  const hi = Number(v >> 32n);
  return hi <= 0xff ? 5 : hi <= 0xffff ? 6 : hi <= 0xff_ffff ? 7 : 8;
}

function writeBE(out: Uint8Array, off: number, v: bigint, len: number): void {
  // Split into two 32-bit halves: Number arithmetic is much cheaper than BigInt shifts per byte.
  let lo = Number(v & 0xffff_ffffn);
  let hi = len > 4 ? Number(v >> 32n) : 0;
  for (let i = off + len - 1; i >= off; i--) {
    out[i] = lo & 0xff;
    lo = (lo >>> 8) | ((hi & 0xff) << 24);
    hi >>>= 8;
  }
}

/** Length in bytes of the encoded header for (kid, ctr). */
export function headerLength(kid: bigint, ctr: bigint): number {
  checkU64('kid', kid);
  checkU64('ctr', ctr);
  return 1 + (kid < 8n ? 0 : byteLength(kid)) + (ctr < 8n ? 0 : byteLength(ctr));
}

/** Writes the header at out[off..]; returns the number of bytes written. Values are assumed range-checked. */
function writeHeader(out: Uint8Array, off: number, kid: bigint, ctr: bigint): number {
  let p = off + 1;
  let config = 0;
  if (kid < 8n) {
    config = Number(kid) << 4;
  } else {
    const kl = byteLength(kid);
    config = 0x80 | ((kl - 1) << 4);
    writeBE(out, p, kid, kl);
    p += kl;
  }
  if (ctr < 8n) {
    config |= Number(ctr);
  } else {
    const cl = byteLength(ctr);
    config |= 0x08 | (cl - 1);
    writeBE(out, p, ctr, cl);
    p += cl;
  }
  out[off] = config;
  return p - off;
}

/**
 * RFC 9605 §4.3: config byte `X|KKK|Y|CCC`, values 0-7 inline (flag 0), otherwise flag 1, field = byte length - 1,
 * value appended big-endian in the minimum number of bytes (KID first, then CTR).
 * Throws `range` unless 0 <= kid, ctr <= 2^64 - 1.
 */
export function encodeHeader(kid: bigint, ctr: bigint): Uint8Array {
  const out = new Uint8Array(headerLength(kid, ctr));
  writeHeader(out, 0, kid, ctr);
  return out;
}

export interface DecodedHeader {
  readonly kid: bigint;
  readonly ctr: bigint;
  /** Number of header bytes consumed from the start of the buffer. */
  readonly length: number;
}

function readBE(buf: Uint8Array, off: number, len: number): bigint {
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < len; i++) {
    const b = buf[off + i] as number;
    hi = ((hi << 8) | (lo >>> 24)) >>> 0;
    lo = ((lo << 8) | b) >>> 0;
  }
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Parses the header at the start of `buf` (trailing bytes are the ciphertext and are ignored).
 *
 * Strict: throws `E2eeError('malformed')` on an empty or truncated buffer and on non-minimal encodings
 * (an extended field holding a value < 8, or a leading zero byte), which RFC 9605 §4.3 forbids ("the value MUST
 * be encoded with the minimum number of bytes required"). Every (kid, ctr) therefore has exactly one accepted
 * header. Values cannot exceed 2^64 - 1 (at most 8 bytes each).
 */
export function decodeHeader(buf: Uint8Array): DecodedHeader {
  if (!(buf instanceof Uint8Array)) throw new E2eeError('malformed', 'header input is not a Uint8Array');
  if (buf.length < 1) throw new E2eeError('malformed', 'empty SFrame');
  const config = buf[0] as number;
  let p = 1;
  let kid: bigint;
  let ctr: bigint;
  if ((config & 0x80) === 0) {
    kid = BigInt((config >> 4) & 7);
  } else {
    const kl = ((config >> 4) & 7) + 1;
    if (buf.length < p + kl) throw new E2eeError('malformed', 'truncated KID');
    if (kl > 1 && buf[p] === 0) throw new E2eeError('malformed', 'non-minimal KID encoding');
    kid = readBE(buf, p, kl);
    if (kid < 8n) throw new E2eeError('malformed', 'non-minimal KID encoding (value < 8 must be inline)');
    p += kl;
  }
  if ((config & 0x08) === 0) {
    ctr = BigInt(config & 7);
  } else {
    const cl = (config & 7) + 1;
    if (buf.length < p + cl) throw new E2eeError('malformed', 'truncated CTR');
    if (cl > 1 && buf[p] === 0) throw new E2eeError('malformed', 'non-minimal CTR encoding');
    ctr = readBE(buf, p, cl);
    if (ctr < 8n) throw new E2eeError('malformed', 'non-minimal CTR encoding (value < 8 must be inline)');
    p += cl;
  }
  return { kid, ctr, length: p };
}

// ---------------------------------------------------------------------------------------------------------------
// Key schedule (RFC 9605 §4.4.2, §5.1)
// ---------------------------------------------------------------------------------------------------------------

const te = new TextEncoder();
const KEY_LABEL = te.encode('SFrame 1.0 Secret key ');
const SALT_LABEL = te.encode('SFrame 1.0 Secret salt ');
const RATCHET_LABEL = te.encode('SFrame 1.0 Ratchet');

function hashFor(p: SuiteParams): CHash {
  return p.hash === 'SHA-512' ? sha512 : sha256;
}

/** label || uint64_be(KID) || uint16_be(cipher_suite) (RFC 9605 §4.4.2: the 8-byte KID, not the header form). */
export function derivationLabel(which: 'key' | 'salt', kid: bigint, suite: number): Uint8Array {
  checkU64('kid', kid);
  const prefix = which === 'key' ? KEY_LABEL : SALT_LABEL;
  const out = new Uint8Array(prefix.length + 10);
  out.set(prefix, 0);
  writeBE(out, prefix.length, kid, 8);
  out[prefix.length + 8] = (suite >> 8) & 0xff;
  out[prefix.length + 9] = suite & 0xff;
  return out;
}

/** Base keys are Uint8Arrays of at least 16 bytes (AES-128). @throws E2eeError('range') */
export function checkBaseKey(baseKey: Uint8Array): void {
  if (!(baseKey instanceof Uint8Array) || baseKey.length < 16) {
    throw new E2eeError('range', 'base_key must be a Uint8Array of at least 16 bytes');
  }
}

/**
 * RFC 9605 §4.4.2 derive_key_salt: raw sframe_key (Nk bytes) and sframe_salt (Nn bytes).
 * The caller owns both arrays and must wipe them (`fill(0)`) when done. The intermediate secret is wiped here.
 */
export function deriveKeySalt(suite: number, baseKey: Uint8Array, kid: bigint): { key: Uint8Array; salt: Uint8Array } {
  const p = suiteParams(suite);
  checkBaseKey(baseKey);
  const h = hashFor(p);
  const secret = extract(h, baseKey, new Uint8Array(0));
  try {
    const key = expand(h, secret, derivationLabel('key', kid, p.id), p.nk);
    const salt = expand(h, secret, derivationLabel('salt', kid, p.id), p.nn);
    return { key, salt };
  } finally {
    secret.fill(0);
  }
}

/**
 * RFC 9605 §5.1 sender-key ratchet:
 * `base_key[i+1] = HKDF-Expand(HKDF-Extract("", base_key[i]), "SFrame 1.0 Ratchet", CipherSuite.Nh)`.
 * Returns a new array (Nh bytes); the input is not modified.
 */
export function ratchetBaseKey(suite: number, baseKey: Uint8Array): Uint8Array {
  const p = suiteParams(suite);
  checkBaseKey(baseKey);
  const h = hashFor(p);
  const secret = extract(h, baseKey, new Uint8Array(0));
  try {
    return expand(h, secret, RATCHET_LABEL, p.nh);
  } finally {
    secret.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Imported keys
// ---------------------------------------------------------------------------------------------------------------

/** RFC 9605 §4.4.1: "Implementations MUST mark each base_key as usable for encryption or decryption, never both." */
export type KeyUsage = 'seal' | 'open';

/** A (base_key, KID) pair turned into WebCrypto keys + salt, bound to one suite and one direction. */
export interface SFrameKey {
  readonly suite: SuiteParams;
  readonly kid: bigint;
  readonly usage: KeyUsage;
  /** sframe_salt (Nn bytes). Wiped by `wipeSFrameKey`. */
  readonly salt: Uint8Array;
  /** AES-GCM key (gcm suites) or AES-CTR key (ctr-hmac suites). Non-extractable. */
  readonly aes: CryptoKey;
  /** HMAC key for ctr-hmac suites (sign only: verification recomputes and compares in constant time). */
  readonly mac: CryptoKey | undefined;
  /** Set by `wipeSFrameKey`; a wiped key refuses to seal or open. */
  wiped: boolean;
}

/** WebCrypto's BufferSource excludes SharedArrayBuffer-backed views; our inputs are ordinary Uint8Arrays. */
function bs(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return u as Uint8Array<ArrayBuffer>;
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (s === undefined) throw new E2eeError('state', 'WebCrypto (globalThis.crypto.subtle) is not available');
  return s;
}

/** Derive (RFC 9605 §4.4.2) and import the key for one KID. The raw derived key bytes are wiped after import. */
export async function importSFrameKey(suite: number, baseKey: Uint8Array, kid: bigint, usage: KeyUsage): Promise<SFrameKey> {
  const p = suiteParams(suite);
  const { key, salt } = deriveKeySalt(p.id, baseKey, kid);
  try {
    const s = subtle();
    if (p.kind === 'gcm') {
      const aes = await s.importKey('raw', bs(key), { name: 'AES-GCM' }, false, [usage === 'seal' ? 'encrypt' : 'decrypt']);
      return { suite: p, kid, usage, salt, aes, mac: undefined, wiped: false };
    }
    const encKey = key.subarray(0, p.nka);
    const authKey = key.subarray(p.nka);
    const aes = await s.importKey('raw', bs(encKey), { name: 'AES-CTR' }, false, [usage === 'seal' ? 'encrypt' : 'decrypt']);
    const mac = await s.importKey('raw', bs(authKey), { name: 'HMAC', hash: p.hash }, false, ['sign']);
    return { suite: p, kid, usage, salt, aes, mac, wiped: false };
  } catch (e) {
    salt.fill(0);
    throw e;
  } finally {
    key.fill(0);
  }
}

/** Wipe the salt and mark the key dead (the CryptoKeys are non-extractable; dropping the reference frees them). */
export function wipeSFrameKey(k: SFrameKey): void {
  k.salt.fill(0);
  k.wiped = true;
}

/** nonce = sframe_salt XOR uint_be(CTR, Nn) (RFC 9605 §4.4.3). */
export function sframeNonce(salt: Uint8Array, ctr: bigint): Uint8Array {
  const n = salt.slice();
  const len = n.length;
  let lo = Number(ctr & 0xffff_ffffn);
  let hi = Number(ctr >> 32n);
  for (let i = len - 1; i >= len - 4; i--) {
    n[i] = (n[i] as number) ^ (lo & 0xff);
    lo >>>= 8;
  }
  for (let i = len - 5; i >= len - 8; i--) {
    n[i] = (n[i] as number) ^ (hi & 0xff);
    hi >>>= 8;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// AES-CTR + HMAC compound AEAD (RFC 9605 §4.5.1)
// ---------------------------------------------------------------------------------------------------------------

function u64be(out: Uint8Array, off: number, n: number): void {
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n >>> 0;
  out[off] = hi >>> 24;
  out[off + 1] = (hi >>> 16) & 0xff;
  out[off + 2] = (hi >>> 8) & 0xff;
  out[off + 3] = hi & 0xff;
  out[off + 4] = lo >>> 24;
  out[off + 5] = (lo >>> 16) & 0xff;
  out[off + 6] = (lo >>> 8) & 0xff;
  out[off + 7] = lo & 0xff;
}

async function ctrHmacTag(mac: CryptoKey, nt: number, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
  const authData = new Uint8Array(24 + nonce.length + aad.length + ct.length);
  u64be(authData, 0, aad.length);
  u64be(authData, 8, ct.length);
  u64be(authData, 16, nt);
  authData.set(nonce, 24);
  authData.set(aad, 24 + nonce.length);
  authData.set(ct, 24 + nonce.length + aad.length);
  const full = new Uint8Array(await subtle().sign('HMAC', mac, bs(authData)));
  return full.subarray(0, nt);
}

function ctrParams(nonce: Uint8Array): AesCtrParams {
  const counter = new Uint8Array(16);
  counter.set(nonce, 0); // initial_counter = nonce || 0x00000000
  return { name: 'AES-CTR', counter: bs(counter), length: 32 };
}

/** Constant-time comparison of equal-length byte strings. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

/**
 * AEAD.Encrypt of RFC 9605 §4.5.1 with imported keys: ciphertext = AES-CTR(enc_key, nonce || 0^32, pt),
 * tag = HMAC(auth_key, len(aad) || len(ct) || Nt || nonce || aad || ct) truncated to Nt bytes.
 */
export async function ctrHmacSeal(aes: CryptoKey, mac: CryptoKey, nt: number, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Promise<{ ciphertext: Uint8Array; tag: Uint8Array }> {
  const ciphertext = new Uint8Array(await subtle().encrypt(ctrParams(nonce), aes, bs(pt)));
  return { ciphertext, tag: await ctrHmacTag(mac, nt, nonce, aad, ciphertext) };
}

/** AEAD.Decrypt of RFC 9605 §4.5.1 with imported keys: checks the tag (constant time) before decrypting. */
export async function ctrHmacOpen(aes: CryptoKey, mac: CryptoKey, nt: number, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
  const inner = ct.subarray(0, ct.length - nt);
  const tag = ct.subarray(ct.length - nt);
  const expected = await ctrHmacTag(mac, nt, nonce, aad, inner);
  if (!constantTimeEqual(tag, expected)) throw new E2eeError('auth', 'authentication tag mismatch');
  return new Uint8Array(await subtle().decrypt(ctrParams(nonce), aes, bs(inner)));
}

// ---------------------------------------------------------------------------------------------------------------
// Seal / open with an imported key (RFC 9605 §4.4.3, §4.4.4)
// ---------------------------------------------------------------------------------------------------------------

function buildAad(header: Uint8Array, headerLen: number, metadata: Uint8Array): Uint8Array {
  const aad = new Uint8Array(headerLen + metadata.length);
  aad.set(header.subarray(0, headerLen), 0);
  aad.set(metadata, headerLen);
  return aad;
}

export interface SealOptions {
  /**
   * Bytes to place in front of the SFrame in the returned buffer (`leading || header || ciphertext`), written in
   * the same allocation (no extra copy). The frame codec passes the clear prefix here. Not authenticated by
   * itself: pass it as `metadata` too if it must be.
   */
  readonly leading?: Uint8Array;
}

/**
 * Encrypt one frame: returns `header || AEAD.Encrypt(sframe_key, nonce, header || metadata, plaintext)`
 * (or `leading || header || ciphertext`). The caller guarantees (key, KID, CTR) uniqueness (use `SendKey`).
 */
export async function sealWithKey(
  k: SFrameKey,
  ctr: bigint,
  metadata: Uint8Array,
  plaintext: Uint8Array,
  opts?: SealOptions,
): Promise<Uint8Array> {
  if (k.wiped) throw new E2eeError('state', 'key was wiped');
  if (k.usage !== 'seal') throw new E2eeError('state', 'key is marked for decryption only (RFC 9605 §4.4.1)');
  checkU64('ctr', ctr);
  const lead = opts?.leading;
  const leadLen = lead === undefined ? 0 : lead.length;
  const p = k.suite;
  // One output allocation: leading || header || ciphertext (its length is known before encrypting). The header is
  // written in place and, when there is no metadata, the AAD is a view of it (no copy).
  const hlen = 1 + (k.kid < 8n ? 0 : byteLength(k.kid)) + (ctr < 8n ? 0 : byteLength(ctr));
  const out = new Uint8Array(leadLen + hlen + plaintext.length + p.nt);
  if (lead !== undefined) out.set(lead, 0);
  writeHeader(out, leadLen, k.kid, ctr);
  const hdr = out.subarray(leadLen, leadLen + hlen);
  const aad = metadata.length === 0 ? hdr : buildAad(hdr, hlen, metadata);
  const nonce = sframeNonce(k.salt, ctr);
  if (p.kind === 'gcm') {
    const ct = await subtle().encrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 }, k.aes, bs(plaintext));
    out.set(new Uint8Array(ct), leadLen + hlen);
  } else {
    const { ciphertext, tag } = await ctrHmacSeal(k.aes, k.mac as CryptoKey, p.nt, nonce, aad, plaintext);
    out.set(ciphertext, leadLen + hlen);
    out.set(tag, leadLen + hlen + ciphertext.length);
  }
  return out;
}

/**
 * Decrypt one SFrame ciphertext with the key for its KID. `header` may be passed when the caller already parsed
 * it (it must be `decodeHeader(sframe)`). Throws E2eeError: `malformed` (bad header, shorter than a tag),
 * `unknown-kid` (header KID is not this key's KID), `auth` (tag check failed). Plaintext is a fresh buffer.
 */
export async function openWithKey(k: SFrameKey, metadata: Uint8Array, sframe: Uint8Array, header?: DecodedHeader): Promise<Uint8Array> {
  if (k.wiped) throw new E2eeError('state', 'key was wiped');
  if (k.usage !== 'open') throw new E2eeError('state', 'key is marked for encryption only (RFC 9605 §4.4.1)');
  const h = header ?? decodeHeader(sframe);
  if (h.kid !== k.kid) throw new E2eeError('unknown-kid', 'SFrame KID does not match the key');
  const p = k.suite;
  if (sframe.length - h.length < p.nt) throw new E2eeError('malformed', 'SFrame shorter than header + tag');
  const aad = buildAad(sframe, h.length, metadata);
  const nonce = sframeNonce(k.salt, h.ctr);
  const ct = sframe.subarray(h.length);
  if (p.kind === 'gcm') {
    try {
      return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 }, k.aes, bs(ct)));
    } catch (e) {
      throw new E2eeError('auth', 'authentication failed', { cause: e });
    }
  }
  return ctrHmacOpen(k.aes, k.mac as CryptoKey, p.nt, nonce, aad, ct);
}
