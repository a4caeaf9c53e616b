/**
 * RTP parsing and frame reassembly for the test-only media tap (`MediaTap.ts`).
 *
 * - RTP (RFC 3550): fixed header, CSRCs, header extension (RFC 8285, any profile), padding.
 * - VP8 payload descriptor (RFC 7741 §4.2): X/N/S/PID, then I (7- or 15-bit PictureID), L (TL0PICIDX),
 *   T/K (TID/Y/KEYIDX). A frame = the packets of one RTP timestamp from S=1 && PID=0 to the marker bit.
 * - VP9 payload descriptor (draft-ietf-payload-vp9 / RFC 9628 §4.2): I/P/L/F/B/E/V/Z, PictureID, layer
 *   indices, TL0PICIDX, P_DIFFs, scalability structure. A frame = one (timestamp, spatial layer) from B to E.
 * - Opus (RFC 7587): one frame per packet.
 * - Anything else: packets of one timestamp up to the marker bit, payloads concatenated as they are.
 */

export interface RtpPacketView {
  payloadType: number;
  marker: boolean;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** The payload: after the header, CSRCs and header extension, without padding. */
  payload: Buffer;
}

/** Parses an RTP packet; null if it is not a well-formed RTP packet. */
export function parseRtp(buf: Buffer): RtpPacketView | null {
  const len = buf.length;
  if (len < 12) return null;
  const b0 = buf[0]!;
  if (b0 >> 6 !== 2) return null;
  const padding = (b0 & 0x20) !== 0;
  const extension = (b0 & 0x10) !== 0;
  const csrcCount = b0 & 0x0f;
  let offset = 12 + 4 * csrcCount;
  if (offset > len) return null;
  if (extension) {
    if (offset + 4 > len) return null;
    const words = buf.readUInt16BE(offset + 2);
    offset += 4 + 4 * words;
    if (offset > len) return null;
  }
  let end = len;
  if (padding) {
    const pad = buf[len - 1]!;
    if (pad === 0 || offset + pad > len) return null;
    end -= pad;
  }
  const b1 = buf[1]!;
  return {
    payloadType: b1 & 0x7f,
    marker: (b1 & 0x80) !== 0,
    seq: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    payload: buf.subarray(offset, end),
  };
}

export interface Vp8Descriptor {
  /** Bytes of the payload descriptor (the frame data starts after them). */
  length: number;
  start: boolean;
  partitionIndex: number;
  nonReference: boolean;
  pictureId?: number;
  tl0PicIdx?: number;
  tid?: number;
  keyIdx?: number;
}

/**
 * PictureID as VP8 (RFC 7741 §4.2) and VP9 (RFC 9628 §4.2) encode it: M bit set → 15 bits in two bytes, else
 * 7 bits in one. Null if truncated.
 */
function readPictureId(p: Buffer, off: number): { pictureId: number; next: number } | null {
  if (off >= p.length) return null;
  const m = p[off]!;
  if (!(m & 0x80)) return { pictureId: m & 0x7f, next: off + 1 };
  if (off + 1 >= p.length) return null;
  return { pictureId: ((m & 0x7f) << 8) | p[off + 1]!, next: off + 2 };
}

/** RFC 7741 §4.2. Null if the descriptor is truncated. */
export function parseVp8Descriptor(p: Buffer): Vp8Descriptor | null {
  if (p.length < 1) return null;
  const b0 = p[0]!;
  const d: Vp8Descriptor = {
    length: 1,
    start: (b0 & 0x10) !== 0,
    partitionIndex: b0 & 0x07,
    nonReference: (b0 & 0x20) !== 0,
  };
  let off = 1;
  if (b0 & 0x80) {
    if (off >= p.length) return null;
    const x = p[off++]!;
    const i = (x & 0x80) !== 0;
    const l = (x & 0x40) !== 0;
    const t = (x & 0x20) !== 0;
    const k = (x & 0x10) !== 0;
    if (i) {
      const pid = readPictureId(p, off);
      if (!pid) return null;
      d.pictureId = pid.pictureId;
      off = pid.next;
    }
    if (l) {
      if (off >= p.length) return null;
      d.tl0PicIdx = p[off++]!;
    }
    if (t || k) {
      if (off >= p.length) return null;
      const tk = p[off++]!;
      if (t) d.tid = tk >> 6;
      if (k) d.keyIdx = tk & 0x1f;
    }
  }
  d.length = off;
  return d;
}

export interface Vp9Descriptor {
  length: number;
  /** B: first packet of a (layer) frame. */
  begin: boolean;
  /** E: last packet of a (layer) frame. */
  end: boolean;
  /** P: inter-picture predicted (false on a key frame's base layer). */
  interPredicted: boolean;
  pictureId?: number;
  sid: number;
  tid?: number;
}

/** draft-ietf-payload-vp9 §4.2 (RFC 9628). Null if truncated. */
export function parseVp9Descriptor(p: Buffer): Vp9Descriptor | null {
  if (p.length < 1) return null;
  const b0 = p[0]!;
  const i = (b0 & 0x80) !== 0;
  const pBit = (b0 & 0x40) !== 0;
  const l = (b0 & 0x20) !== 0;
  const f = (b0 & 0x10) !== 0;
  const v = (b0 & 0x02) !== 0;
  const d: Vp9Descriptor = { length: 1, begin: (b0 & 0x08) !== 0, end: (b0 & 0x04) !== 0, interPredicted: pBit, sid: 0 };
  let off = 1;
  const need = (n: number): boolean => off + n <= p.length;
  if (i) {
    const pid = readPictureId(p, off);
    if (!pid) return null;
    d.pictureId = pid.pictureId;
    off = pid.next;
  }
  if (l) {
    if (!need(1)) return null;
    const li = p[off++]!;
    d.tid = li >> 5;
    d.sid = (li >> 1) & 0x07;
    if (!f) {
      if (!need(1)) return null;
      off += 1; // TL0PICIDX
    }
  }
  if (f && pBit) {
    for (let n = 0; n < 3; n++) {
      if (!need(1)) return null;
      const pd = p[off++]!;
      if ((pd & 0x01) === 0) break;
    }
  }
  if (v) {
    if (!need(1)) return null;
    const ss = p[off++]!;
    const ns = ss >> 5;
    const y = (ss & 0x10) !== 0;
    const g = (ss & 0x08) !== 0;
    if (y) {
      if (!need(4 * (ns + 1))) return null;
      off += 4 * (ns + 1);
    }
    if (g) {
      if (!need(1)) return null;
      const ng = p[off++]!;
      for (let n = 0; n < ng; n++) {
        if (!need(1)) return null;
        const r = (p[off++]! >> 2) & 0x03;
        if (!need(r)) return null;
        off += r;
      }
    }
  }
  d.length = off;
  return d;
}

export type TapCodec = 'opus' | 'vp8' | 'vp9' | 'other';

export function tapCodecOf(mimeType: string): TapCodec {
  const m = mimeType.toLowerCase();
  if (m === 'audio/opus') return 'opus';
  if (m === 'video/vp8') return 'vp8';
  if (m === 'video/vp9') return 'vp9';
  return 'other';
}

/** One reassembled frame as the SFU forwarded it. */
export interface AssembledFrame {
  /** Codec payload of the frame: RTP payloads with the VP8/VP9 payload descriptors removed, concatenated in sequence order. */
  data: Buffer;
  rtpTimestamp: number;
  ssrc: number;
  /** Marker bit of the frame's last packet. */
  marker: boolean;
  /** First and last RTP sequence number (as forwarded by the SFU, i.e. rewritten for this consumer). */
  seqFirst: number;
  seqLast: number;
  packets: number;
  /** Every packet from the frame's start to its end arrived (always true for Opus). */
  complete: boolean;
  /** VP8: S=1, PID=0 and bit 0 of the first payload byte clear; VP9: B on a non-inter-predicted base layer. */
  keyFrame: boolean;
  /** VP9 spatial layer id (0 otherwise). */
  spatialLayer: number;
  /** Date.now() when the frame's last packet arrived. */
  arrivalMs: number;
}

interface PendingPacket {
  seq: number;
  data: Buffer;
  begin: boolean;
  end: boolean;
  marker: boolean;
  keyFrame: boolean;
}
interface PendingFrame {
  key: string;
  timestamp: number;
  sid: number;
  packets: Map<number, PendingPacket>;
  firstArrival: number;
  lastArrival: number;
}

const MAX_PENDING = 16;
const MAX_FRAME_PACKETS = 4096;
const RECENT_DONE = 64;

/** Reassembles the frames of one RTP stream (one SSRC). */
export class StreamAssembler {
  readonly #codec: TapCodec;
  readonly #onFrame: (frame: AssembledFrame) => void;
  readonly #pending = new Map<string, PendingFrame>();
  readonly #done: string[] = [];
  readonly #doneSet = new Set<string>();
  /** Packets whose payload descriptor could not be parsed. */
  malformed = 0;

  constructor(codec: TapCodec, onFrame: (frame: AssembledFrame) => void) {
    this.#codec = codec;
    this.#onFrame = onFrame;
  }

  push(pkt: RtpPacketView, arrivalMs = Date.now()): void {
    if (this.#codec === 'opus') {
      this.#onFrame({
        data: Buffer.from(pkt.payload),
        rtpTimestamp: pkt.timestamp,
        ssrc: pkt.ssrc,
        marker: pkt.marker,
        seqFirst: pkt.seq,
        seqLast: pkt.seq,
        packets: 1,
        complete: true,
        keyFrame: false,
        spatialLayer: 0,
        arrivalMs,
      });
      return;
    }
    let data: Buffer;
    let begin: boolean;
    let end: boolean;
    let keyFrame = false;
    let sid = 0;
    if (this.#codec === 'vp8') {
      const d = parseVp8Descriptor(pkt.payload);
      if (!d) {
        this.malformed++;
        return;
      }
      data = pkt.payload.subarray(d.length);
      begin = d.start && d.partitionIndex === 0;
      end = pkt.marker;
      keyFrame = begin && data.length > 0 && (data[0]! & 0x01) === 0;
    } else if (this.#codec === 'vp9') {
      const d = parseVp9Descriptor(pkt.payload);
      if (!d) {
        this.malformed++;
        return;
      }
      data = pkt.payload.subarray(d.length);
      begin = d.begin;
      end = d.end;
      sid = d.sid;
      keyFrame = d.begin && !d.interPredicted && d.sid === 0;
    } else {
      data = pkt.payload;
      begin = false;
      end = pkt.marker;
    }
    const key = `${pkt.timestamp}:${sid}`;
    if (this.#doneSet.has(key)) return; // late duplicate of a finished frame
    let frame = this.#pending.get(key);
    if (!frame) {
      frame = { key, timestamp: pkt.timestamp, sid, packets: new Map(), firstArrival: arrivalMs, lastArrival: arrivalMs };
      this.#pending.set(key, frame);
      if (this.#pending.size > MAX_PENDING) {
        let oldest: PendingFrame | undefined;
        for (const f of this.#pending.values()) if (!oldest || f.firstArrival < oldest.firstArrival) oldest = f;
        if (oldest && oldest !== frame) this.#finish(oldest, pkt.ssrc, false);
      }
    }
    if (frame.packets.has(pkt.seq) || frame.packets.size >= MAX_FRAME_PACKETS) return;
    frame.packets.set(pkt.seq, { seq: pkt.seq, data: Buffer.from(data), begin, end, marker: pkt.marker, keyFrame });
    frame.lastArrival = arrivalMs;
    this.#tryComplete(frame, pkt.ssrc);
  }

  /** Emits every frame still waiting for packets, as incomplete. */
  flush(ssrc: number): void {
    for (const f of [...this.#pending.values()]) this.#finish(f, ssrc, false);
  }

  #tryComplete(frame: PendingFrame, ssrc: number): void {
    const pkts = [...frame.packets.values()];
    const endPkt = pkts.find((p) => p.end);
    if (!endPkt) return;
    if (this.#codec === 'other') {
      // No begin marker: contiguous from the lowest sequence number (relative to the end) to the end.
      const span = Math.max(...pkts.map((p) => (endPkt.seq - p.seq) & 0xffff)) + 1;
      this.#finish(frame, ssrc, span === pkts.length);
      return;
    }
    const beginPkt = pkts.find((p) => p.begin);
    if (!beginPkt) return;
    const span = ((endPkt.seq - beginPkt.seq) & 0xffff) + 1;
    if (span === pkts.length) this.#finish(frame, ssrc, true);
  }

  #finish(frame: PendingFrame, ssrc: number, complete: boolean): void {
    this.#pending.delete(frame.key);
    this.#done.push(frame.key);
    this.#doneSet.add(frame.key);
    while (this.#done.length > RECENT_DONE) this.#doneSet.delete(this.#done.shift()!);
    const pkts = [...frame.packets.values()];
    if (pkts.length === 0) return;
    const ref = (pkts.find((p) => p.begin) ?? pkts[0]!).seq;
    pkts.sort((a, b) => ((a.seq - ref) & 0xffff) - ((b.seq - ref) & 0xffff));
    const first = pkts[0]!;
    const last = pkts[pkts.length - 1]!;
    this.#onFrame({
      data: Buffer.concat(pkts.map((p) => p.data)),
      rtpTimestamp: frame.timestamp,
      ssrc,
      marker: last.marker,
      seqFirst: first.seq,
      seqLast: last.seq,
      packets: pkts.length,
      complete,
      keyFrame: first.keyFrame,
      spatialLayer: frame.sid,
      arrivalMs: frame.lastArrival,
    });
  }
}
