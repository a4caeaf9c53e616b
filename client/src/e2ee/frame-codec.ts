/**
 * Media frame codec: codec-aware clear prefix, authenticated as SFrame metadata.
 *
 * Protected frame on the wire (the payload WebRTC packetizes in place of the encoded frame):
 *
 *     clearPrefix || SFrame header || AEAD ciphertext (+ tag)
 *     AAD = SFrame header || clearPrefix            (RFC 9605 §4.4.3: aad = header + metadata, metadata = clearPrefix)
 *
 * The prefix stays readable so the SFU (mediasoup reads the VP8 key-frame bit) and the receiving browser's RTP
 * depacketizer (VP8 key-frame bit and dimensions) keep working, and it cannot be altered without the frame failing
 * authentication. Prefix lengths: VP8 10 bytes on key frames / 3 on delta frames (RFC 6386 §9.1: frame tag, plus
 * start code and dimensions on key frames), Opus 1 (TOC byte, RFC 6716 §3.1), VP9 0.
 *
 * The receiver computes the prefix length from the received bytes before decryption (VP8: byte 0, bit 0). That is
 * the one permitted use of not-yet-authenticated metadata (RFC 9605 §9.4: "to prepare an SFrame ciphertext for
 * SFrame decryption"); a tampered key-frame bit changes the AAD and the frame fails authentication.
 *
 * H.264 and AV1 are refused (`assertProtectableCodec`): see REFUSED_CODECS.
 *
 * Audio padding (HIDE_VOICE_ACTIVITY, docs/protocol.md A §2.1): in a room whose join answer says `hideVoiceActivity`,
 * every Opus frame's SFrame plaintext is `body || 0x80 || 0x00*` up to the next multiple of AUDIO_PADDING_BLOCK
 * bytes — inside the encryption, so it is authenticated and the SFU sees constant-size frames; receivers in such a
 * room strip it (`{ padAudio: true }` on both sides) and drop a frame whose padding is not exactly that.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import type { OpenResult, ReceiveKeyRing, ReceiveKeyRings } from './receive-rings.ts';
import type { FrameSealer } from './send-key.ts';

export type MediaCodec = 'vp8' | 'vp9' | 'opus';

/** Codecs we protect, by RTP/WebRTC mime type (compared case-insensitively). */
export const SUPPORTED_CODECS: Readonly<Record<string, MediaCodec>> = {
  'video/vp8': 'vp8',
  'video/vp9': 'vp9',
  'audio/opus': 'opus',
};

/** Codecs we refuse, with the reason (shown to the user / logged by the caller). */
export const REFUSED_CODECS: Readonly<Record<string, string>> = {
  'video/h264':
    'H.264 is not supported with end-to-end encryption: its frames are Annex B NAL unit streams whose NAL headers ' +
    '(and SPS/PPS) the RTP packetizer and the SFU must parse (RFC 6184 FU-A/STAP-A, key-frame detection), so every ' +
    'NAL unit would need its own clear header and SFrame protection with start-code emulation prevention ' +
    '(codec-specific SFrame packetization), which we do not implement.',
  'video/h265':
    'H.265 is not supported with end-to-end encryption: same NAL unit structure problem as H.264 (RFC 7798).',
  'video/av1':
    'AV1 is not supported with end-to-end encryption: its frames are sequences of OBUs whose headers the RTP ' +
    'packetizer parses to build aggregation headers and the dependency descriptor (AV1 RTP spec); encrypting the ' +
    'frame as one blob breaks packetization, and per-OBU protection would need codec-specific SFrame ' +
    'packetization, which we do not implement.',
};

/** Codec for a mime type, or undefined when not protectable. */
export function codecFromMimeType(mimeType: string): MediaCodec | undefined {
  return SUPPORTED_CODECS[mimeType.toLowerCase()];
}

/** Returns the codec for `mimeType` or throws `E2eeError('unsupported-codec')` with the reason (fail closed). */
export function assertProtectableCodec(mimeType: string): MediaCodec {
  const c = codecFromMimeType(mimeType);
  if (c !== undefined) return c;
  const why = REFUSED_CODECS[mimeType.toLowerCase()];
  throw new E2eeError('unsupported-codec', why ?? `codec ${JSON.stringify(mimeType)} is not supported with end-to-end encryption (only VP8, VP9, Opus)`);
}

export const VP8_KEY_FRAME_PREFIX = 10;
export const VP8_DELTA_FRAME_PREFIX = 3;

/** RFC 6386 §9.1: bit 0 of the frame tag is 0 on key frames. */
export function isVp8KeyFrame(frame: Uint8Array): boolean {
  return frame.length > 0 && ((frame[0] as number) & 1) === 0;
}

/**
 * Number of leading bytes left in clear for `codec`, computed from byte 0 only, so the sender (plain frame) and the
 * receiver (protected frame) get the same answer. Does not check that the frame is that long.
 */
export function clearPrefixLength(codec: MediaCodec, frame: Uint8Array): number {
  switch (codec) {
    case 'vp8':
      if (frame.length === 0) return 0;
      return isVp8KeyFrame(frame) ? VP8_KEY_FRAME_PREFIX : VP8_DELTA_FRAME_PREFIX;
    case 'opus':
      return 1;
    case 'vp9':
      return 0;
  }
}

function splitPlain(codec: MediaCodec, frame: Uint8Array): { prefix: Uint8Array; body: Uint8Array } {
  if (!(frame instanceof Uint8Array) || frame.length === 0) throw new E2eeError('malformed', 'empty frame');
  const n = clearPrefixLength(codec, frame);
  if (frame.length < n) throw new E2eeError('malformed', `${codec} frame shorter than its ${n}-byte clear prefix`);
  return { prefix: frame.subarray(0, n), body: frame.subarray(n) };
}

/** Split a received protected frame into (clear prefix, SFrame). Throws `malformed` if too short. */
export function splitProtected(codec: MediaCodec, data: Uint8Array): { prefix: Uint8Array; sframe: Uint8Array } {
  if (!(data instanceof Uint8Array) || data.length === 0) throw new E2eeError('malformed', 'empty frame');
  const n = clearPrefixLength(codec, data);
  if (data.length < n + 1) throw new E2eeError('malformed', 'protected frame shorter than prefix + SFrame header');
  return { prefix: data.subarray(0, n), sframe: data.subarray(n) };
}

/**
 * Audio frames (Opus) in a room that hides voice activity are padded to a multiple of this many SFrame plaintext
 * bytes (the TOC byte in the clear prefix not counted). Opus at the constant 32 kbit/s we ask for in that mode makes
 * 80-byte packets (79 after the TOC), so every frame is exactly one block.
 */
export const AUDIO_PADDING_BLOCK = 128;
/** The byte that ends the body of a padded frame; only zeros follow it (ISO/IEC 7816-4 style). */
const PAD_MARK = 0x80;

/** Per-frame options of a room: `padAudio` = pad (send) / strip (receive) Opus frames (A §2.1). */
export interface FrameOptions {
  padAudio?: boolean;
}

/**
 * `body || 0x80 || 0x00 * k`, k ≥ 0 the least such that the length is a multiple of `AUDIO_PADDING_BLOCK` (a body of
 * 127 bytes → 128, of 128 → 256). A new buffer; `body` is not changed.
 */
export function padAudioPlaintext(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((body.length + 1) / AUDIO_PADDING_BLOCK) * AUDIO_PADDING_BLOCK);
  out.set(body, 0);
  out[body.length] = PAD_MARK;
  return out;
}

/**
 * Inverse of `padAudioPlaintext`, strict: the length is a non-zero multiple of the block, the last non-zero byte is
 * 0x80 and fewer than a block of zeros follow it; anything else throws `E2eeError('malformed')`. A view into `padded`.
 */
export function unpadAudioPlaintext(padded: Uint8Array): Uint8Array {
  if (padded.length === 0 || padded.length % AUDIO_PADDING_BLOCK !== 0) throw new E2eeError('malformed', 'padded audio frame is not a whole number of blocks');
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== PAD_MARK) throw new E2eeError('malformed', 'padded audio frame has no padding mark');
  if (padded.length - end > AUDIO_PADDING_BLOCK) throw new E2eeError('malformed', 'padded audio frame has more than one block of padding');
  return padded.subarray(0, end);
}

const pads = (codec: MediaCodec, opts: FrameOptions | undefined): boolean => opts?.padAudio === true && codec === 'opus';

/** Protect one encoded frame with the sender's key (fresh CTR). Output: `prefix || header || ciphertext`. */
export async function protectFrame(sender: FrameSealer, codec: MediaCodec, frame: Uint8Array, opts?: FrameOptions): Promise<Uint8Array> {
  const { prefix, body } = splitPlain(codec, frame);
  return sender.seal(prefix, pads(codec, opts) ? padAudioPlaintext(body) : body, { leading: prefix });
}

/** `prefix || plaintext` in one new buffer (the original encoded frame). */
export function joinFrame(prefix: Uint8Array, plaintext: Uint8Array): Uint8Array {
  if (prefix.length === 0) return plaintext;
  const out = new Uint8Array(prefix.length + plaintext.length);
  out.set(prefix, 0);
  out.set(plaintext, prefix.length);
  return out;
}

/**
 * The original frame for an `ok` result of a key ring (released buffered frames included), else undefined. With
 * `padAudio` an Opus frame's padding is stripped first; a frame that is not padded exactly as A §2.1 says throws
 * `E2eeError('malformed')` (the caller drops it).
 */
export function frameFromResult<T>(r: OpenResult<T>, codec?: MediaCodec, opts?: FrameOptions): Uint8Array | undefined {
  if (r.status !== 'ok') return undefined;
  return joinFrame(r.metadata, codec !== undefined && pads(codec, opts) ? unpadAudioPlaintext(r.plaintext) : r.plaintext);
}

/**
 * Receive side through a key ring (or the per-room set of rings): never throws for bad input; a frame that cannot
 * be split is a counted `malformed` drop. On `ok`, use `frameFromResult(r)` to get the original frame.
 */
export async function unprotectFrame<T>(
  rings: ReceiveKeyRing<T> | ReceiveKeyRings<T>,
  codec: MediaCodec,
  data: Uint8Array,
  now: number,
  token?: T,
): Promise<OpenResult<T>> {
  let parts: { prefix: Uint8Array; sframe: Uint8Array };
  try {
    parts = splitProtected(codec, data);
  } catch {
    // let the ring count it: an empty SFrame is malformed for it too
    return rings.open(new Uint8Array(0), new Uint8Array(0), now, token);
  }
  return rings.open(parts.sframe, parts.prefix, now, token);
}
