import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concat, equalBytes, fromBase64url, toBase64url, u16be, u32be, u64be, readU64be, Reader } from '../../client/src/e2ee/bytes.ts';

describe('bytes', () => {
  it('base64url matches Buffer and round trips', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const s = toBase64url(b);
        expect(s).toBe(Buffer.from(b).toString('base64url'));
        expect(Buffer.from(fromBase64url(s)).equals(Buffer.from(b))).toBe(true);
      }),
    );
  });
  it('strict base64url decoding', () => {
    for (const s of ['A', 'AB=', 'A+B/', 'AB C', 'AF', 'AAB']) expect(() => fromBase64url(s)).toThrow(/malformed/);
  });
  it('ints and concat', () => {
    expect([...u16be(0x1234)]).toEqual([0x12, 0x34]);
    expect([...u32be(0x01020304)]).toEqual([1, 2, 3, 4]);
    expect(readU64be(u64be(2n ** 64n - 1n), 0)).toBe(2n ** 64n - 1n);
    expect(() => u16be(65536)).toThrow();
    expect(() => u64be(-1n)).toThrow();
    expect([...concat(Uint8Array.of(1), Uint8Array.of(2, 3))]).toEqual([1, 2, 3]);
    expect(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(equalBytes(Uint8Array.of(1), Uint8Array.of(1, 3))).toBe(false);
    const r = new Reader(Uint8Array.of(0, 1, 9));
    expect(r.u16('x')).toBe(1);
    expect(() => r.end('x')).toThrow(/trailing/);
    expect(() => r.bytes(2, 'y')).toThrow(/truncated/);
  });
});
