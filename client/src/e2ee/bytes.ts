/**
 * Small byte helpers shared by the key-management modules: base64url (RFC 4648 §5, no padding), concat,
 * constant-time equality, big-endian integers, UTF-8, randomness, wiping.
 *
 * Pure functions over `Uint8Array`; no DOM, no I/O. Works in Node 20, Web Workers and pages.
 *
 * @module
 */
import { base64urlnopad } from '@scure/base';
import { E2eeError } from './errors.ts';

/** Encodes bytes as base64url without padding (RFC 4648 §5). */
export function toBase64url(bytes: Uint8Array): string {
  return base64urlnopad.encode(bytes);
}

/**
 * Decodes unpadded base64url, strictly (@scure/base `base64urlnopad`): rejects padding, other alphabets, whitespace,
 * impossible lengths (len % 4 == 1) and non-canonical encodings (non-zero unused low bits), so every byte string has
 * exactly one encoding. The message never quotes the input (it may be a secret).
 * @throws E2eeError('malformed')
 */
export function fromBase64url(s: string): Uint8Array {
  try {
    return base64urlnopad.decode(s);
  } catch {
    throw new E2eeError('malformed', 'not canonical unpadded base64url (allowed: A-Z a-z 0-9 - _, no padding)');
  }
}

/** Decodes base64url and checks the decoded length. @throws E2eeError('malformed') */
export function fromBase64urlExact(s: string, len: number, what: string): Uint8Array {
  const b = fromBase64url(s);
  if (b.length !== len) throw new E2eeError('malformed', `${what}: expected ${len} bytes, got ${b.length}`);
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time (in the contents; not in the lengths) equality. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function u8(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new E2eeError('malformed', 'u8 out of range');
  return Uint8Array.of(n);
}

export function u16be(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new E2eeError('malformed', 'u16 out of range');
  return Uint8Array.of(n >>> 8, n & 0xff);
}

export function u32be(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new E2eeError('malformed', 'u32 out of range');
  return Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

export function u64be(n: bigint | number): Uint8Array {
  const v = BigInt(n);
  if (v < 0n || v > 0xffffffffffffffffn) throw new E2eeError('malformed', 'u64 out of range');
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v, false);
  return out;
}

export function readU16be(b: Uint8Array, off: number): number {
  if (off + 2 > b.length) throw new E2eeError('malformed', 'truncated (u16)');
  return (b[off]! << 8) | b[off + 1]!;
}

export function readU32be(b: Uint8Array, off: number): number {
  if (off + 4 > b.length) throw new E2eeError('malformed', 'truncated (u32)');
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

export function readU64be(b: Uint8Array, off: number): bigint {
  if (off + 8 > b.length) throw new E2eeError('malformed', 'truncated (u64)');
  return new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, false);
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export function utf8(s: string): Uint8Array<ArrayBuffer> {
  return enc.encode(s);
}

/** Strict UTF-8 decoding. @throws E2eeError('malformed') */
export function fromUtf8(b: Uint8Array): string {
  try {
    return dec.decode(b);
  } catch {
    throw new E2eeError('malformed', 'invalid UTF-8');
  }
}

/** Length-prefixed (u16 BE) field, used to build unambiguous transcripts. */
export function lp16(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(u16be(b.length), b);
}

/** Cryptographically secure random bytes (WebCrypto, available in Node 20, workers and pages). */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  // getRandomValues is limited to 65536 bytes per call.
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

/** Overwrites secret bytes with zeros (best effort: JS may have made copies we cannot reach). */
export function wipe(...bs: (Uint8Array | undefined)[]): void {
  for (const b of bs) b?.fill(0);
}

/** A copy backed by a plain ArrayBuffer (what WebCrypto's `BufferSource` type wants). */
export function ab(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b);
}

/** Sequential reader for the binary formats; every read checks bounds. */
export class Reader {
  private off = 0;
  constructor(private readonly b: Uint8Array) {}
  get remaining(): number {
    return this.b.length - this.off;
  }
  bytes(n: number, what: string): Uint8Array {
    if (n < 0 || this.off + n > this.b.length) throw new E2eeError('malformed', `truncated (${what})`);
    const out = this.b.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
  u8(what: string): number {
    if (this.off + 1 > this.b.length) throw new E2eeError('malformed', `truncated (${what})`);
    return this.b[this.off++]!;
  }
  u16(what: string): number {
    const v = readU16be(this.b, this.off);
    void what;
    this.off += 2;
    return v;
  }
  u32(what: string): number {
    if (this.off + 4 > this.b.length) throw new E2eeError('malformed', `truncated (${what})`);
    const v = readU32be(this.b, this.off);
    this.off += 4;
    return v;
  }
  u64(what: string): bigint {
    if (this.off + 8 > this.b.length) throw new E2eeError('malformed', `truncated (${what})`);
    const v = readU64be(this.b, this.off);
    this.off += 8;
    return v;
  }
  lp16(what: string): Uint8Array {
    if (this.off + 2 > this.b.length) throw new E2eeError('malformed', `truncated (${what} length)`);
    return this.bytes(this.u16(what), what);
  }
  end(what: string): void {
    if (this.off !== this.b.length) throw new E2eeError('malformed', `${what}: ${this.remaining} trailing bytes`);
  }
}
