import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  REFUSED_CODECS,
  SUPPORTED_CODECS,
  assertProtectableCodec,
  clearPrefixLength,
  codecFromMimeType,
  frameFromResult,
  isVp8KeyFrame,
  joinFrame,
  protectFrame,
  splitProtected,
  unprotectFrame,
} from '../../client/src/e2ee/frame-codec.ts';
import type { MediaCodec } from '../../client/src/e2ee/frame-codec.ts';
import { ReceiveKeyRing } from '../../client/src/e2ee/receive-rings.ts';
import { SendKeyRing } from './send-ring.ts';
import type { OpenResult } from '../../client/src/e2ee/receive-rings.ts';
import { decodeHeader, importSFrameKey, openWithKey, type SFrameKey } from '../../client/src/e2ee/sframe.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const KEY = new Uint8Array(32).fill(0x42);

/**
 * Port of mediasoup 3.8.4 worker/src/RTC/Codecs/VP8.cpp `VP8::Parse` (the part that decides isKeyFrame): walks the
 * RTP VP8 payload descriptor (RFC 7741 §4.2), then reads bit 0 of the first VP8 payload byte when S=1 and PID=0.
 */
function mediasoupVp8Parse(data: Uint8Array): { isKeyFrame: boolean; pictureId?: number } | undefined {
  const len = data.length;
  if (len < 1) return undefined;
  let offset = 0;
  let byte = data[offset] as number;
  const extended = (byte >> 7) & 1;
  const start = (byte >> 4) & 1;
  const partitionIndex = byte & 7;
  if (!extended) return undefined;
  if (len < ++offset + 1) return undefined;
  byte = data[offset] as number;
  const i = (byte >> 7) & 1;
  const l = (byte >> 6) & 1;
  const t = (byte >> 5) & 1;
  const k = (byte >> 4) & 1;
  let pictureId: number | undefined;
  if (i) {
    if (len < ++offset + 1) return undefined;
    byte = data[offset] as number;
    if ((byte >> 7) & 1) {
      if (len < ++offset + 1) return undefined;
      pictureId = ((byte & 0x7f) << 8) + (data[offset] as number);
    } else pictureId = byte & 0x7f;
  }
  if (l) {
    if (len < ++offset + 1) return undefined;
  }
  if (t || k) {
    if (len < ++offset + 1) return undefined;
  }
  const isKeyFrame = len >= ++offset + 1 && start === 1 && partitionIndex === 0 && !((data[offset] as number) & 0x01);
  return { isKeyFrame, pictureId };
}

/** First RTP payload of a frame as libwebrtc's VP8 packetizer emits it: X=1,S=1,PID=0; I (15-bit), L, T. */
function rtpVp8FirstPacket(frameChunk: Uint8Array, pictureId = 0x1234): Uint8Array {
  const descriptor = Uint8Array.of(0x90, 0xe0, 0x80 | (pictureId >> 8), pictureId & 0xff, 0x07, 0x40);
  return Uint8Array.from([...descriptor, ...frameChunk]);
}

/** A real-looking VP8 key frame: frame tag (key, version 0, show_frame, first partition size), start code, 640x480. */
function vp8KeyFrame(bodyLen = 200): Uint8Array {
  const firstPartSize = 120;
  const tag = (firstPartSize << 5) | (1 << 4) | (0 << 1) | 0; // show_frame=1, version 0, key frame (bit 0 = 0)
  const f = new Uint8Array(10 + bodyLen);
  f.set([tag & 0xff, (tag >> 8) & 0xff, (tag >> 16) & 0xff, 0x9d, 0x01, 0x2a, 640 & 0xff, 640 >> 8, 480 & 0xff, 480 >> 8]);
  for (let i = 10; i < f.length; i++) f[i] = (i * 7) & 0xff;
  return f;
}
function vp8DeltaFrame(bodyLen = 80): Uint8Array {
  const tag = (40 << 5) | (1 << 4) | 1; // bit 0 = 1: inter frame
  const f = new Uint8Array(3 + bodyLen);
  f.set([tag & 0xff, (tag >> 8) & 0xff, (tag >> 16) & 0xff]);
  for (let i = 3; i < f.length; i++) f[i] = (i * 13) & 0xff;
  return f;
}

/** What the receiving browser's VP8 depacketizer reads of a frame (RFC 6386 §9.1): frame tag, key-frame dimensions. */
function readVp8FrameInfo(frame: Uint8Array): { keyFrame: boolean; width?: number; height?: number; horizontalScale?: number; verticalScale?: number } {
  if (frame.length < 3) throw new Error('VP8 frame tag is 3 bytes');
  if (!isVp8KeyFrame(frame)) return { keyFrame: false };
  if (frame.length < 10 || frame[3] !== 0x9d || frame[4] !== 0x01 || frame[5] !== 0x2a) return { keyFrame: true };
  const w = (frame[6] as number) | ((frame[7] as number) << 8);
  const h = (frame[8] as number) | ((frame[9] as number) << 8);
  return { keyFrame: true, width: w & 0x3fff, horizontalScale: w >> 14, height: h & 0x3fff, verticalScale: h >> 14 };
}

/** Opens a protected frame with one imported key, as a receive ring does (split, open, join), but throwing. */
async function unprotectWithKey(k: SFrameKey, codec: MediaCodec, data: Uint8Array): Promise<Uint8Array> {
  const { prefix, sframe } = splitProtected(codec, data);
  return joinFrame(prefix, await openWithKey(k, prefix, sframe));
}

async function setup(sender = 5) {
  const tx = new SendKeyRing({ sender, now: 0 }, KEY);
  const rx = new ReceiveKeyRing({ sender });
  const a = tx.currentKey();
  await rx.addKey(a.kid, a.baseKey, 0);
  return { tx, rx };
}
function frameOf<T>(r: OpenResult<T>): Uint8Array {
  const f = frameFromResult(r);
  if (f === undefined) throw new Error(`not ok: ${r.status}${r.status === 'dropped' ? '/' + r.reason : ''}`);
  return f;
}
const dropReason = <T>(r: OpenResult<T>): string => (r.status === 'dropped' ? r.reason : r.status);

describe('frame codec: supported and refused codecs', () => {
  it('VP8, VP9 and Opus are protectable (case-insensitive mime types)', () => {
    expect(Object.keys(SUPPORTED_CODECS).sort()).toEqual(['audio/opus', 'video/vp8', 'video/vp9']);
    expect(assertProtectableCodec('video/VP8')).toBe('vp8');
    expect(assertProtectableCodec('video/vp9')).toBe('vp9');
    expect(assertProtectableCodec('audio/opus')).toBe('opus');
  });

  it('H.264 and AV1 are refused with a typed error that explains why', () => {
    for (const mime of ['video/H264', 'video/AV1', 'video/H265']) {
      expect(codecFromMimeType(mime)).toBeUndefined();
      try {
        assertProtectableCodec(mime);
        expect.unreachable();
      } catch (e) {
        expect(isE2eeError(e, 'unsupported-codec')).toBe(true);
        expect((e as Error).message).toContain(REFUSED_CODECS[mime.toLowerCase()]?.slice(0, 20));
      }
    }
    expect((() => { try { assertProtectableCodec('video/rtx'); } catch (e) { return isE2eeError(e, 'unsupported-codec'); } return false; })()).toBe(true);
  });
});

describe('frame codec: clear prefix lengths', () => {
  it('VP8 10 bytes on key frames, 3 on delta frames; Opus 1; VP9 0', () => {
    expect(clearPrefixLength('vp8', vp8KeyFrame())).toBe(10);
    expect(clearPrefixLength('vp8', vp8DeltaFrame())).toBe(3);
    expect(clearPrefixLength('opus', Uint8Array.of(0xfc, 1, 2))).toBe(1);
    expect(clearPrefixLength('vp9', Uint8Array.of(0x82, 1, 2))).toBe(0);
  });

  it('the receiver derives the same prefix length from the protected frame', async () => {
    const { tx } = await setup();
    for (const [codec, f] of [['vp8', vp8KeyFrame()], ['vp8', vp8DeltaFrame()], ['opus', Uint8Array.of(0x78, 9, 9)], ['vp9', Uint8Array.of(1, 2, 3)]] as const) {
      const p = await protectFrame(tx, codec, f);
      expect(clearPrefixLength(codec, p)).toBe(clearPrefixLength(codec, f));
      const n = clearPrefixLength(codec, f);
      expect(Buffer.from(p.subarray(0, n)).equals(Buffer.from(f.subarray(0, n)))).toBe(true);
      expect(decodeHeader(p.subarray(n)).kid).toBe(tx.kid); // the SFrame starts right after the prefix
    }
  });
});

describe('frame codec: VP8 key frame stays readable by the SFU (mediasoup 3.8.4 VP8::Parse)', () => {
  it('key-frame bit and 640x480 dimensions are readable from the protected frame, exactly as from the plain one', async () => {
    const { tx, rx } = await setup();
    const plain = vp8KeyFrame(500);
    const prot = await protectFrame(tx, 'vp8', plain);
    expect(prot.length).toBe(plain.length + 1 + 3 + 16); // + SFrame header (config, 3-byte KID, CTR 0 inline) + tag
    // the first RTP packet of the frame, as the packetizer builds it and mediasoup parses it
    const firstChunk = prot.subarray(0, 1100);
    expect(mediasoupVp8Parse(rtpVp8FirstPacket(firstChunk))).toEqual({ isKeyFrame: true, pictureId: 0x1234 });
    expect(mediasoupVp8Parse(rtpVp8FirstPacket(plain))).toEqual({ isKeyFrame: true, pictureId: 0x1234 });
    // what the receiving browser's VP8 depacketizer reads (RFC 6386 §9.1): dimensions survive
    expect(readVp8FrameInfo(prot)).toEqual({ keyFrame: true, width: 640, height: 480, horizontalScale: 0, verticalScale: 0 });
    expect(readVp8FrameInfo(prot)).toEqual(readVp8FrameInfo(plain));
    // and the receiver gets the original frame back
    expect(frameOf(await unprotectFrame(rx, 'vp8', prot, 0))).toEqual(plain);
  });

  it('a protected delta frame is still a delta frame to mediasoup', async () => {
    const { tx, rx } = await setup();
    const plain = vp8DeltaFrame();
    const prot = await protectFrame(tx, 'vp8', plain);
    expect(mediasoupVp8Parse(rtpVp8FirstPacket(prot))?.isKeyFrame).toBe(false);
    expect(readVp8FrameInfo(prot)).toEqual({ keyFrame: false });
    expect(frameOf(await unprotectFrame(rx, 'vp8', prot, 0))).toEqual(plain);
  });

  it('flipping any bit of the clear prefix fails authentication (the SFU cannot rewrite it)', async () => {
    const { tx, rx } = await setup();
    const prot = await protectFrame(tx, 'vp8', vp8KeyFrame());
    for (let bit = 1; bit < 80; bit++) {
      const t = prot.slice();
      t[bit >> 3] = (t[bit >> 3] as number) ^ (1 << (bit & 7));
      expect(dropReason(await unprotectFrame(rx, 'vp8', t, 0))).toBe('auth');
    }
    // flipping the key-frame bit (bit 0) changes the prefix length, so the receiver parses a different SFrame
    // header out of the start code: never opened (dropped, or buffered for a key that never comes and expired)
    const t = prot.slice();
    t[0] = (t[0] as number) ^ 1;
    const r0 = await unprotectFrame(rx, 'vp8', t, 0);
    expect(r0.status).not.toBe('ok');
    rx.tick(1000);
    expect(rx.bufferedCount).toBe(0);
    expect(rx.stats.opened).toBe(0);
    expect(frameOf(await unprotectFrame(rx, 'vp8', prot, 0))).toEqual(vp8KeyFrame()); // genuine one still fine
  });
});

describe('frame codec: round trips and failures', () => {
  it('property: protect/unprotect round trip for every codec; any single bit flip is dropped (auth or malformed)', async () => {
    const tx = new SendKeyRing({ sender: 0, generation: 0x501, now: 0 }, KEY); // KID 0x5010
    const r = await importSFrameKey(4, KEY, 0x5010n, 'open');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<MediaCodec>('vp8', 'vp9', 'opus'), fc.uint8Array({ minLength: 10, maxLength: 300 }), fc.nat(), async (codec, frame, pos) => {
        const p = await protectFrame(tx, codec, frame);
        expect(await unprotectWithKey(r, codec, p)).toEqual(frame);
        const t = p.slice();
        const bit = pos % (t.length * 8);
        t[bit >> 3] = (t[bit >> 3] as number) ^ (1 << (bit & 7));
        try {
          await unprotectWithKey(r, codec, t);
          expect.unreachable();
        } catch (e) {
          expect(isE2eeError(e) && ['auth', 'malformed', 'unknown-kid'].includes(e.code)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('RFC 9605 §9.4 MUST NOT use metadata before it is authenticated: a tampered prefix is never handed out', async () => {
    const { tx, rx } = await setup();
    const prot = await protectFrame(tx, 'vp8', vp8KeyFrame());
    const t = prot.slice();
    t[6] = 0x00; // width 640 → 512: what an SFU might try
    const r = await unprotectFrame(rx, 'vp8', t, 0);
    expect(r.status).toBe('dropped');
    expect(frameFromResult(r)).toBeUndefined();
    expect('metadata' in r).toBe(false);
  });

  it('Opus keeps its TOC byte in clear and authenticated', async () => {
    const { tx, rx } = await setup();
    const f = Uint8Array.of(0xfc, 0xff, 0xfe, 1, 2, 3);
    const p = await protectFrame(tx, 'opus', f);
    expect(p[0]).toBe(0xfc);
    const t = p.slice();
    t[0] = 0x78;
    expect(dropReason(await unprotectFrame(rx, 'opus', t, 0))).toBe('auth');
    expect(frameOf(await unprotectFrame(rx, 'opus', p, 0))).toEqual(f);
  });

  it('short or empty frames are refused on send (malformed) and dropped on receive (counted)', async () => {
    const { tx, rx } = await setup();
    for (const [codec, f] of [['vp8', new Uint8Array(0)], ['vp8', vp8KeyFrame().subarray(0, 9)], ['opus', new Uint8Array(0)]] as const) {
      try {
        await protectFrame(tx, codec, f);
        expect.unreachable();
      } catch (e) {
        expect(isE2eeError(e, 'malformed')).toBe(true);
      }
    }
    expect(dropReason(await unprotectFrame(rx, 'vp8', new Uint8Array(0), 0))).toBe('malformed');
    expect(dropReason(await unprotectFrame(rx, 'vp8', vp8KeyFrame().subarray(0, 10), 0))).toBe('malformed');
    expect(rx.stats.dropped.malformed).toBe(2);
  });

  it('a frame buffered for its key is returned whole (prefix included) on release', async () => {
    const { tx, rx } = await setup();
    const a = tx.rekey(new Uint8Array(32).fill(7), 0);
    const plain = vp8KeyFrame(50);
    expect((await unprotectFrame(rx, 'vp8', await protectFrame(tx, 'vp8', plain), 0)).status).toBe('buffered');
    const [r] = await rx.addKey(a.kid, a.baseKey, 10);
    expect(r && frameOf(r)).toEqual(plain);
  });
});
