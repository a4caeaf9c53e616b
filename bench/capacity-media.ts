/**
 * Media for the capacity bench (bench/capacity.ts): encoded-frame stand-ins, sealed as the client seals them, and
 * their RTP packetization — no browser, no codec.
 *
 * - A "frame" is random bytes shaped like a VP8 or Opus frame where anything on the path reads it: a VP8 key frame
 *   starts with a frame tag whose bit 0 is 0 and the start code `9d 01 2a` + dimensions (RFC 6386 §9.1), a delta
 *   frame with bit 0 = 1; an Opus frame starts with a TOC byte (RFC 6716 §3.1).
 * - `plain` = that frame as the encoder emits it; `sframe` = the same frame through the client's own
 *   `protectFrame` (clear prefix + SFrame header + AES-GCM ciphertext + 16-byte tag, docs/protocol.md §2) with a
 *   sender index ≥ 256 and CTR ≥ 256, i.e. the 23-byte overhead of a typical sender some seconds into a call.
 * - VP8 RTP (RFC 7741 §4.2): a 4-byte payload descriptor as libwebrtc writes it (X=1, S on the first packet of a
 *   frame, PID 0, I=1 with a 15-bit PictureID), payload split so no packet carries more than `MAX_RTP_PAYLOAD`
 *   bytes, marker on the last packet, timestamp + 90000/fps per frame. Opus (RFC 7587): one frame per packet every
 *   20 ms, timestamp + 960.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { protectFrame } from '../client/src/e2ee/frame-codec.ts';
import { makeKid } from '../client/src/e2ee/kid.ts';
import { SendKey } from '../client/src/e2ee/send-key.ts';

export type Variant = 'sframe' | 'plain';
export const VARIANTS: readonly Variant[] = ['sframe', 'plain'];

/** What one sender (a member with camera and mic) sends: one simulcast layer's worth of VP8 and Opus. */
export interface MediaProfile {
  /** Video bitrate in bit/s (the client's camera simulcast layers: 150 k / 500 k / 1.2 M). */
  videoBitrate: number;
  fps: number;
  /** A key frame is this many times the mean delta frame. */
  keyFrameFactor: number;
  /** Opus frame (TOC included) every 20 ms: 80 bytes = 32 kbit/s, what a speaking mic sends. */
  audioBytes: number;
}

export const DEFAULT_PROFILE: MediaProfile = { videoBitrate: 500_000, fps: 30, keyFrameFactor: 4, audioBytes: 80 };

/** Payload bytes per RTP packet at most (libwebrtc keeps RTP packets near 1200 bytes for a 1280-byte path MTU). */
export const MAX_RTP_PAYLOAD = 1188;
export const VP8_PT = 101;
export const OPUS_PT = 100;
export const VP8_CLOCK = 90_000;
export const OPUS_FRAME_MS = 20;
const VP8_DESCRIPTOR_BYTES = 4;

export interface FramePool {
  key: Uint8Array[];
  delta: Uint8Array[];
  audio: Uint8Array[];
}

function vp8Frame(size: number, key: boolean): Uint8Array {
  const f = new Uint8Array(randomBytes(size));
  if (key) {
    f[0] = (f[0] as number) & 0xfe; // key frame: bit 0 of the frame tag is 0
    f.set([0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01], 3); // start code, 640 × 360
  } else {
    f[0] = (f[0] as number) | 0x01;
  }
  return f;
}

/** The same frames in clear and sealed (`count` delta frames, a few key frames, `count` audio frames). */
export async function makeFramePools(profile: MediaProfile, count = 60): Promise<Record<Variant, FramePool>> {
  const meanDelta = Math.round(profile.videoBitrate / 8 / profile.fps);
  const spread = Math.round(0.3 * meanDelta);
  const plain: FramePool = {
    key: Array.from({ length: 4 }, () => vp8Frame(meanDelta * profile.keyFrameFactor, true)),
    // ±30 % around the mean, as an encoder's delta frames vary
    delta: Array.from({ length: count }, () => vp8Frame(Math.max(16, meanDelta + randomInt(-spread, spread + 1)), false)),
    audio: Array.from({ length: count }, () => {
      const a = new Uint8Array(randomBytes(profile.audioBytes));
      a[0] = 0x78; // TOC: config 15 (hybrid FB, 20 ms), mono, one frame
      return a;
    }),
  };
  const base = new Uint8Array(randomBytes(32));
  const video = new SendKey({ kid: makeKid(0x1234, 1) }, base); // two senders' keys: no (key, nonce) pair twice
  const audio = new SendKey({ kid: makeKid(0x1235, 1) }, base);
  base.fill(0);
  for (let i = 0; i < 300; i++) {
    video.allocate(); // skip to CTR ≥ 256: the header a sender has after its first ten seconds
    audio.allocate();
  }
  const sframe: FramePool = {
    key: await Promise.all(plain.key.map((f) => protectFrame(video, 'vp8', f))),
    delta: await Promise.all(plain.delta.map((f) => protectFrame(video, 'vp8', f))),
    audio: await Promise.all(plain.audio.map((f) => protectFrame(audio, 'opus', f))),
  };
  video.destroy();
  audio.destroy();
  return { plain, sframe };
}

/** Mean bytes per frame: [video, audio]. */
export function meanFrameBytes(pool: FramePool): [number, number] {
  const mean = (xs: Uint8Array[]): number => xs.reduce((s, x) => s + x.length, 0) / xs.length;
  return [mean(pool.delta), mean(pool.audio)];
}

function rtpHeader(pt: number, marker: boolean, seq: number, ts: number, ssrc: number): Buffer {
  const h = Buffer.allocUnsafe(12);
  h[0] = 0x80; // V=2, no padding, no extension, no CSRC
  h[1] = (marker ? 0x80 : 0) | pt;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(ssrc >>> 0, 8);
  return h;
}

/** One outgoing RTP stream: its SSRC, sequence numbers, timestamps and (VP8) PictureIDs. */
export class RtpStream {
  readonly ssrc: number;
  readonly kind: 'audio' | 'video';
  #seq = randomInt(0, 0x10000);
  #ts = randomInt(0, 2 ** 32);
  #pictureId = randomInt(0, 0x8000);
  readonly #tsStep: number;

  constructor(kind: 'audio' | 'video', profile: MediaProfile) {
    this.kind = kind;
    this.ssrc = randomInt(1, 2 ** 32 - 1);
    this.#tsStep = kind === 'video' ? VP8_CLOCK / profile.fps : (48_000 * OPUS_FRAME_MS) / 1000;
  }

  /** The RTP packets of one frame. */
  packetize(frame: Uint8Array): Buffer[] {
    const ts = this.#ts;
    this.#ts = (this.#ts + this.#tsStep) >>> 0;
    if (this.kind === 'audio') return [Buffer.concat([rtpHeader(OPUS_PT, false, this.#seq++, ts, this.ssrc), frame])];
    const pid = this.#pictureId;
    this.#pictureId = (pid + 1) & 0x7fff;
    const room = MAX_RTP_PAYLOAD - VP8_DESCRIPTOR_BYTES;
    const n = Math.ceil(frame.length / room);
    const chunk = Math.ceil(frame.length / n); // equal-sized packets, as libwebrtc's packetizer makes them
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const body = frame.subarray(i * chunk, Math.min(frame.length, (i + 1) * chunk));
      const descriptor = Buffer.from([i === 0 ? 0x90 : 0x80, 0x80, 0x80 | (pid >> 8), pid & 0xff]);
      out.push(Buffer.concat([rtpHeader(VP8_PT, i === n - 1, this.#seq++, ts, this.ssrc), descriptor, body]));
    }
    return out;
  }
}

/**
 * Media SSRCs whose sender asked for a key frame in an RTCP compound packet (RFC 5761 demultiplexed): PLI
 * (RFC 4585 §6.3.1, PT 206 FMT 1: media source SSRC at octet 8) and FIR (RFC 5104 §4.3.1, PT 206 FMT 4: an FCI
 * entry's SSRC at octet 12). Empty for anything else.
 */
export function keyFrameRequests(buf: Buffer): number[] {
  const out: number[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const b0 = buf[off] as number;
    if (b0 >> 6 !== 2) break;
    const pt = buf[off + 1] as number;
    const len = (buf.readUInt16BE(off + 2) + 1) * 4;
    if (off + len > buf.length) break;
    const fmt = b0 & 0x1f;
    if (pt === 206 && fmt === 1 && len >= 12) out.push(buf.readUInt32BE(off + 8));
    if (pt === 206 && fmt === 4 && len >= 20) out.push(buf.readUInt32BE(off + 12));
    off += len;
  }
  return out;
}

/** RTP vs RTCP on one port (RFC 5761 §4: RTCP packet types 192–223 in the second octet). */
export const isRtcp = (msg: Buffer): boolean => msg.length >= 2 && (msg[1] as number) >= 192 && (msg[1] as number) <= 223;
