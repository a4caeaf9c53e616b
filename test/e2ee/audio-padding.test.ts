/**
 * Audio padding for HIDE_VOICE_ACTIVITY (docs/protocol.md A §2.1): inside the SFrame plaintext, so it is encrypted and
 * authenticated; every Opus frame up to 127 bytes after its TOC leaves the sender as the same number of bytes; the
 * receiver strips it exactly and refuses anything that is not padded that way.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import {
  AUDIO_PADDING_BLOCK,
  frameFromResult,
  padAudioPlaintext,
  protectFrame,
  unpadAudioPlaintext,
  unprotectFrame,
} from '../../client/src/e2ee/frame-codec.ts';
import { ReceiveKeyRing } from '../../client/src/e2ee/receive-rings.ts';
import { decodeHeader } from '../../client/src/e2ee/sframe.ts';
import { SendKeyRing } from './send-ring.ts';

const KEY = new Uint8Array(16).fill(0x24);
const PAD = { padAudio: true };

async function pair() {
  const tx = new SendKeyRing({ sender: 300, now: 0 }, KEY);
  const rx = new ReceiveKeyRing({ sender: 300 });
  const k = tx.currentKey();
  await rx.addKey(k.kid, k.baseKey, 0);
  return { tx, rx };
}

/** An Opus packet: TOC byte 0x78 (SILK WB 20 ms, mono, code 0) and `n` payload bytes. */
const opus = (n: number, fill = 0x5a): Uint8Array => Uint8Array.from([0x78, ...new Array<number>(n).fill(fill)]);

const malformed = (fn: () => unknown): boolean => {
  try {
    fn();
    return false;
  } catch (e) {
    return isE2eeError(e, 'malformed');
  }
};

describe('audio padding format', () => {
  it('body || 0x80 || zeros, to the next multiple of the block (a full block is never left unpadded)', () => {
    expect(AUDIO_PADDING_BLOCK).toBe(128);
    expect(padAudioPlaintext(new Uint8Array(0))).toEqual(Uint8Array.from([0x80, ...new Array<number>(127).fill(0)]));
    for (const [n, len] of [[0, 128], [1, 128], [79, 128], [127, 128], [128, 256], [255, 256], [256, 384]] as const) {
      const p = padAudioPlaintext(new Uint8Array(n).fill(7));
      expect(p.length, `body ${n}`).toBe(len);
      expect(p[n]).toBe(0x80);
      expect(p.subarray(n + 1).every((b) => b === 0)).toBe(true);
    }
  });

  it('property: unpad(pad(body)) = body for any body, even one ending in 0x00 or 0x80', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom(new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(0x80), Uint8Array.of(0x80, 0, 0)), (body, tail) => {
        const b = Uint8Array.from([...body, ...tail]);
        const p = padAudioPlaintext(b);
        expect(p.length % AUDIO_PADDING_BLOCK).toBe(0);
        expect(p.length - b.length).toBeGreaterThanOrEqual(1);
        expect(p.length - b.length).toBeLessThanOrEqual(AUDIO_PADDING_BLOCK);
        expect(unpadAudioPlaintext(p)).toEqual(b);
      }),
    );
  });

  it('strict receiver: wrong length, no mark, a wrong last byte or more than a block of padding is malformed', () => {
    const block = (f: (b: Uint8Array) => void, len = AUDIO_PADDING_BLOCK) => {
      const b = new Uint8Array(len);
      f(b);
      return b;
    };
    expect(malformed(() => unpadAudioPlaintext(new Uint8Array(0)))).toBe(true);
    expect(malformed(() => unpadAudioPlaintext(padAudioPlaintext(Uint8Array.of(1, 2)).subarray(0, 127)))).toBe(true);
    expect(malformed(() => unpadAudioPlaintext(new Uint8Array(128)))).toBe(true); // all zeros: no mark
    expect(malformed(() => unpadAudioPlaintext(block((b) => (b[10] = 0x81))))).toBe(true); // last non-zero byte is not 0x80
    expect(malformed(() => unpadAudioPlaintext(block((b) => (b[127] = 0x01))))).toBe(true);
    expect(malformed(() => unpadAudioPlaintext(block((b) => (b[127] = 0x80), 256).fill(0x80, 127, 128)))).toBe(true); // 0x80 at 127 + 128 zeros
    expect(unpadAudioPlaintext(block((b) => (b[127] = 0x80), 256).fill(9, 0, 127).fill(0x80, 128, 129)).length).toBe(128);
  });
});

describe('padded Opus frames through SFrame', () => {
  it('every Opus frame of 1..127 bytes after the TOC is sent as TOC + header + 128 + tag bytes; VP8 is not padded', async () => {
    const { tx } = await pair();
    const sizes = new Set<number>();
    for (let n = 1; n <= 127; n++) {
      const out = await protectFrame(tx, 'opus', opus(n), PAD);
      const header = decodeHeader(out.subarray(1));
      sizes.add(out.length - header.length);
    }
    expect([...sizes]).toEqual([1 + AUDIO_PADDING_BLOCK + 16]);
    // Without padding the size follows the frame.
    const plain = [await protectFrame(tx, 'opus', opus(20)), await protectFrame(tx, 'opus', opus(90))].map((o) => o.length - decodeHeader(o.subarray(1)).length);
    expect(plain).toEqual([1 + 20 + 16, 1 + 90 + 16]);
    const vp8 = Uint8Array.from([0x31, 0x02, 0x00, ...new Array<number>(50).fill(3)]); // delta frame (bit 0 = 1)
    const a = await protectFrame(tx, 'vp8', vp8, PAD);
    const b = await protectFrame(tx, 'vp8', vp8);
    expect(a.length - decodeHeader(a.subarray(3)).length).toBe(b.length - decodeHeader(b.subarray(3)).length);
  });

  it('the receiver of a padded room gets the original frame back; without stripping it would get the padding', async () => {
    const { tx, rx } = await pair();
    const f = opus(79);
    const r = await unprotectFrame(rx, 'opus', await protectFrame(tx, 'opus', f, PAD), 0);
    expect(r.status).toBe('ok');
    expect(frameFromResult(r, 'opus', PAD)).toEqual(f);
    expect(frameFromResult(r, 'opus')!.length).toBe(1 + AUDIO_PADDING_BLOCK);
  });

  it('an unpadded frame in a padded room is malformed (dropped), never handed on', async () => {
    const { tx, rx } = await pair();
    const r = await unprotectFrame(rx, 'opus', await protectFrame(tx, 'opus', opus(40, 0x11)), 0);
    expect(r.status).toBe('ok');
    expect(malformed(() => frameFromResult(r, 'opus', PAD))).toBe(true);
  });

  it('the padding is authenticated: changing any byte of the padded ciphertext fails authentication', async () => {
    const { tx, rx } = await pair();
    const out = await protectFrame(tx, 'opus', opus(10), PAD);
    for (const i of [out.length - 17, out.length - 40, out.length - 100]) {
      const t = out.slice();
      t[i]! ^= 0x01;
      const r = await unprotectFrame(rx, 'opus', t, 0);
      expect(r.status === 'dropped' ? r.reason : r.status, `byte ${i}`).toBe('auth');
    }
  });
});
