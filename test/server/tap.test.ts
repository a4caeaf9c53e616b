/**
 * The test-only media tap (`startServer(config, { tap: true })`, sfu/src/MediaTap.ts), with REAL RTP:
 * VP8 and Opus packets we build by hand go over UDP into a PlainTransport producer on a room's router,
 * through the mediasoup worker, out of the tap's DirectTransport pipe consumer, and must come back as
 * exactly the frames we sent (payload descriptors stripped, a key frame split over 3 packets rejoined).
 * Also: the tap asks for a key frame at start (a PLI reaches the sender), it does not change what a
 * client-like consumer gets, producers are announced only once tapped, and it is off by default.
 * Plus the `requestProducerKeyFrame` event.
 */
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import type { types as ms } from 'mediasoup';
import { describe, expect, vi } from 'vitest';
import { KEYFRAME_COALESCE_MS } from '../../sfu/src/Room.ts';
import { parseRtp, parseVp8Descriptor, parseVp9Descriptor, StreamAssembler, type AssembledFrame } from '../../sfu/src/rtp.ts';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  code,
  connect,
  joinWithTransports,
  newRoomId,
  newToken,
  next,
  ok,
  opusRtpParameters,
  request,
  sleep,
  vp8SimulcastRtpParameters,
  waitFor,
} from './helpers.ts';

const it = serverTest({ workers: 1 }, { tap: true });

/** An RTP packet: optional CSRCs, one-byte header extension elements, padding. */
function rtp(o: {
  pt: number;
  seq: number;
  ts: number;
  ssrc: number;
  marker?: boolean;
  payload: Buffer;
  ext?: { id: number; data: Buffer }[];
  csrcs?: number[];
  pad?: number;
}): Buffer {
  const csrcs = o.csrcs ?? [];
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12 + 4 * csrcs.length);
  head[0] = 0x80 | (o.pad ? 0x20 : 0) | (o.ext ? 0x10 : 0) | csrcs.length;
  head[1] = (o.marker ? 0x80 : 0) | o.pt;
  head.writeUInt16BE(o.seq & 0xffff, 2);
  head.writeUInt32BE(o.ts >>> 0, 4);
  head.writeUInt32BE(o.ssrc >>> 0, 8);
  csrcs.forEach((c, i) => head.writeUInt32BE(c, 12 + 4 * i));
  parts.push(head);
  if (o.ext) {
    const elems = Buffer.concat(o.ext.map((e) => Buffer.concat([Buffer.from([(e.id << 4) | (e.data.length - 1)]), e.data])));
    const words = Math.ceil(elems.length / 4);
    const ext = Buffer.alloc(4 + words * 4);
    ext.writeUInt16BE(0xbede, 0);
    ext.writeUInt16BE(words, 2);
    elems.copy(ext, 4);
    parts.push(ext);
  }
  parts.push(o.payload);
  if (o.pad) {
    const pad = Buffer.alloc(o.pad);
    pad[o.pad - 1] = o.pad;
    parts.push(pad);
  }
  return Buffer.concat(parts);
}

/** A VP8 "key frame" that starts like a real one (frame tag with bit 0 clear, start code, 640x480), then random bytes. */
function vp8KeyFrame(size: number): Buffer {
  const f = randomBytes(size);
  f[0] = 0x10; // bit 0 = 0: key frame
  f[3] = 0x9d;
  f[4] = 0x01;
  f[5] = 0x2a;
  f.writeUInt16LE(640, 6);
  f.writeUInt16LE(480, 8);
  return f;
}
function vp8DeltaFrame(size: number): Buffer {
  const f = randomBytes(size);
  f[0] = (f[0]! | 0x01) & 0xff; // bit 0 = 1: inter frame
  return f;
}

/** Any PLI (RTCP PT 206, FMT 1) in a (compound) RTCP packet? */
function hasPli(buf: Buffer): boolean {
  let off = 0;
  while (off + 4 <= buf.length) {
    const fmt = buf[off]! & 0x1f;
    const pt = buf[off + 1]!;
    if (pt === 206 && fmt === 1) return true;
    off += (buf.readUInt16BE(off + 2) + 1) * 4;
  }
  return false;
}

const VP8_PT = 96;
const OPUS_PT = 111;

describe('media tap (real RTP through the worker)', () => {
  it('reassembles exactly the VP8 and Opus frames that were sent; asks for a key frame at start; clients get the same frames', async ({ server }) => {
    const roomId = newRoomId();
    const a = await joinWithTransports(server.url, roomId, newToken());
    const room = server.sfu.getRoom(roomId)!;
    const tap = server.tap!;
    expect(tap).toBeDefined();

    const plain = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const VSSRC = 0x0badcafe;
    const ASSRC = 0x0a0d10;
    const video = await plain.produce({
      kind: 'video',
      rtpParameters: {
        codecs: [
          {
            mimeType: 'video/VP8',
            payloadType: VP8_PT,
            clockRate: 90000,
            rtcpFeedback: [
              { type: 'nack', parameter: 'pli' },
              { type: 'ccm', parameter: 'fir' },
            ],
          },
        ],
        encodings: [{ ssrc: VSSRC }],
      },
      appData: { peerId: a.peerId, source: 'camera' },
    });
    const audio = await plain.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PT, clockRate: 48000, channels: 2 }],
        headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 10 }],
        encodings: [{ ssrc: ASSRC }],
      },
      appData: { peerId: a.peerId, source: 'mic' },
    });
    await tap.ready(video.id);
    await tap.ready(audio.id);
    expect(tap.producers().filter((p) => p.roomId === roomId)).toEqual([
      { producerId: video.id, roomId, peerId: a.peerId, kind: 'video', source: 'camera', codec: 'video/VP8', ssrcs: [expect.any(Number)], closed: false },
      { producerId: audio.id, roomId, peerId: a.peerId, kind: 'audio', source: 'mic', codec: 'audio/opus', ssrcs: [expect.any(Number)], closed: false },
    ]);

    const udp = dgram.createSocket('udp4');
    let plis = 0;
    udp.on('message', (msg) => {
      if (hasPli(msg)) plis++;
    });
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    const send = async (b: Buffer): Promise<void> => {
      await new Promise<void>((resolve, reject) => udp.send(b, plain.tuple.localPort, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
      await sleep(5);
    };

    try {
      // 1. A delta frame first: nobody can start on it (no key frame yet); the sender is asked for one (by
      //    mediasoup for a new stream and by the tap, deduplicated by the producer's key-frame request manager).
      let vseq = 40000;
      let vts = 1000;
      const pid = 0x1234;
      const desc15 = (start: boolean, tl0: number): Buffer => Buffer.from([start ? 0x90 : 0x80, 0xe0, 0x80 | (pid >> 8), pid & 0xff, tl0, 0x40]);
      await send(rtp({ pt: VP8_PT, seq: vseq++, ts: vts, ssrc: VSSRC, marker: true, payload: Buffer.concat([desc15(true, 1), vp8DeltaFrame(300)]) }));
      await waitFor(() => plis > 0, 15_000, 'a PLI');
      expect(tap.frames(video.id, { includeIncomplete: true })).toEqual([]);

      // A client-like consumer next to the tap (a regular, non-pipe consumer, as a browser gets).
      const clientSide = await room.router.createDirectTransport();
      const clientFrames = new Map<string, AssembledFrame[]>([
        [video.id, []],
        [audio.id, []],
      ]);
      for (const [producer, codec] of [
        [video, 'vp8'],
        [audio, 'opus'],
      ] as const) {
        const c = await clientSide.consume({ producerId: producer.id, rtpCapabilities: room.router.rtpCapabilities, paused: false });
        const asm = new StreamAssembler(codec, (f) => clientFrames.get(producer.id)!.push(f));
        c.on('rtp', (packet: Buffer) => {
          const p = parseRtp(packet);
          if (p) asm.push(p);
        });
      }

      // 2. The frames the tap must give back.
      const sentVideo: Buffer[] = [];
      // (a) key frame, 2500 bytes in 3 packets, 15-bit PictureID + TL0PICIDX + TID.
      vts += 3000;
      const key = vp8KeyFrame(2500);
      sentVideo.push(key);
      const chunks = [key.subarray(0, 1000), key.subarray(1000, 2000), key.subarray(2000)];
      for (let i = 0; i < 3; i++) {
        await send(rtp({ pt: VP8_PT, seq: vseq++, ts: vts, ssrc: VSSRC, marker: i === 2, payload: Buffer.concat([desc15(i === 0, 2), chunks[i]!]) }));
      }
      // (b) delta frame, one packet, 7-bit PictureID only.
      vts += 3000;
      const d1 = vp8DeltaFrame(700);
      sentVideo.push(d1);
      await send(rtp({ pt: VP8_PT, seq: vseq++, ts: vts, ssrc: VSSRC, marker: true, payload: Buffer.concat([Buffer.from([0x90, 0x80, 0x05]), d1]) }));
      // (c) delta frame, two packets, N bit, KEYIDX only (K without T).
      vts += 3000;
      const d2 = vp8DeltaFrame(1500);
      sentVideo.push(d2);
      await send(rtp({ pt: VP8_PT, seq: vseq++, ts: vts, ssrc: VSSRC, marker: false, payload: Buffer.concat([Buffer.from([0xb0, 0x10, 0x03]), d2.subarray(0, 800)]) }));
      await send(rtp({ pt: VP8_PT, seq: vseq++, ts: vts, ssrc: VSSRC, marker: true, payload: Buffer.concat([Buffer.from([0xa0, 0x10, 0x03]), d2.subarray(800)]) }));
      // (d) delta frame, 3 packets, with an RTP header extension on each.
      vts += 3000;
      const d3 = vp8DeltaFrame(2100);
      sentVideo.push(d3);
      for (let i = 0; i < 3; i++) {
        await send(
          rtp({
            pt: VP8_PT,
            seq: vseq++,
            ts: vts,
            ssrc: VSSRC,
            marker: i === 2,
            ext: [{ id: 3, data: Buffer.from([1, 2, 3]) }],
            payload: Buffer.concat([desc15(i === 0, 3), d3.subarray(i * 700, (i + 1) * 700)]),
          }),
        );
      }

      // Opus: one frame per packet; with the audio-level extension, a CSRC, padding.
      const sentAudio: Buffer[] = [];
      let aseq = 65533; // wraps
      let ats = 0xfffff000;
      for (let i = 0; i < 6; i++) {
        const payload = Buffer.concat([Buffer.from([0xfc]), randomBytes(40 + i * 17)]);
        sentAudio.push(payload);
        await send(
          rtp({
            pt: OPUS_PT,
            seq: aseq++,
            ts: (ats += 960),
            ssrc: ASSRC,
            marker: i === 0,
            ext: [{ id: 10, data: Buffer.from([0x80 | 30]) }],
            ...(i === 2 ? { csrcs: [0xabcdef] } : {}),
            ...(i === 4 ? { pad: 4 } : {}),
            payload,
          }),
        );
      }

      const vFrames = await tap.waitForFrames(video.id, sentVideo.length, 15_000);
      const aFrames = await tap.waitForFrames(audio.id, sentAudio.length, 15_000);
      // Byte for byte, in order; the leading delta frame never reached anyone.
      expect(vFrames.map((f) => f.data.toString('hex'))).toEqual(sentVideo.map((b) => b.toString('hex')));
      expect(vFrames.map((f) => f.packets)).toEqual([3, 1, 2, 3]);
      expect(vFrames.map((f) => f.keyFrame)).toEqual([true, false, false, false]);
      expect(vFrames.every((f) => f.complete && f.marker && f.layer === 0 && f.producerId === video.id)).toBe(true);
      expect(new Set(vFrames.map((f) => f.rtpTimestamp)).size).toBe(4);
      expect(aFrames.map((f) => f.data.toString('hex'))).toEqual(sentAudio.map((b) => b.toString('hex')));
      expect(aFrames[0]!.marker).toBe(true);
      expect(aFrames.map((f) => f.rtpTimestamp)).toEqual(sentAudio.map((_, i) => (0xfffff000 + 960 * (i + 1)) >>> 0));
      // The first frames ever are kept apart from the ring.
      expect(tap.firstFrames(video.id).map((f) => f.data.toString('hex'))).toEqual(sentVideo.map((b) => b.toString('hex')));
      expect(tap.firstFrames(video.id)[0]!.keyFrame).toBe(true);
      expect(tap.stats(video.id)).toMatchObject({ frames: 4, incompleteFrames: 0, malformed: 0 });
      for (const f of vFrames) {
        expect(f.ssrc).toBe(tap.producers().find((p) => p.producerId === video.id)!.ssrcs[0]);
        expect(typeof f.arrivalMs).toBe('number');
      }

      // The client-like consumer got the very same frames.
      await waitFor(() => clientFrames.get(video.id)!.length >= 4 && clientFrames.get(audio.id)!.length >= 6, 10_000, 'client frames');
      expect(clientFrames.get(video.id)!.map((f) => f.data.toString('hex'))).toEqual(sentVideo.map((b) => b.toString('hex')));
      expect(clientFrames.get(audio.id)!.map((f) => f.data.toString('hex'))).toEqual(sentAudio.map((b) => b.toString('hex')));

      // Closing the producer keeps its frames at the tap.
      video.close();
      await waitFor(() => tap.producers().find((p) => p.producerId === video.id)?.closed === true, 5000, 'closed flag');
      expect(tap.frames(video.id)).toHaveLength(4);
    } finally {
      udp.close();
      plain.close();
      a.socket.disconnect();
    }
  });

  it('a producer is announced only once the tap consumes it (every simulcast stream)', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    const tap = server.tap!;
    let seenAtAnnouncement: unknown;
    const announced = new Promise<void>((resolve) => {
      b.socket.once('newProducer', (p) => {
        seenAtAnnouncement = tap.producers().find((t) => t.producerId === p.producerId);
        resolve();
      });
    });
    const { producerId } = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    await announced;
    expect(seenAtAnnouncement).toMatchObject({ producerId, peerId: a.peerId, kind: 'video', source: 'camera', codec: 'video/VP8' });
    expect((seenAtAnnouncement as { ssrcs: number[] }).ssrcs).toHaveLength(3);
    // The tap's transport is not a peer's: counts seen by clients and stats are unchanged.
    expect(server.sfu.stats()).toMatchObject({ transports: 4, producers: 1, consumers: 0 });
    a.socket.disconnect();
    b.socket.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });

  it('the tap asks for a key frame every second until its first frame arrives, then stops', async ({ server }) => {
    const roomId = newRoomId();
    const a = await joinWithTransports(server.url, roomId, newToken());
    const room = server.sfu.getRoom(roomId)!;
    const tap = server.tap!;
    const plain = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const SSRC = 0x5eed;
    const video = await plain.produce({
      kind: 'video',
      rtpParameters: {
        codecs: [{ mimeType: 'video/VP8', payloadType: VP8_PT, clockRate: 90000, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }] }],
        encodings: [{ ssrc: SSRC }],
      },
      appData: { peerId: a.peerId, source: 'screen' },
    });
    await tap.ready(video.id);
    const consumer = tap.consumerOf(video.id)!;
    expect(consumer.type).toBe('pipe');
    const spy = vi.spyOn(consumer, 'requestKeyFrame');
    await waitFor(() => spy.mock.calls.length >= 2, 10_000, 'two key-frame retries');
    const udp = dgram.createSocket('udp4');
    try {
      const key = vp8KeyFrame(400);
      await new Promise<void>((r) =>
        udp.send(rtp({ pt: VP8_PT, seq: 7, ts: 90, ssrc: SSRC, marker: true, payload: Buffer.concat([Buffer.from([0x90, 0x80, 0x01]), key]) }), plain.tuple.localPort, '127.0.0.1', () => r()),
      );
      const [frame] = await tap.waitForFrames(video.id, 1, 10_000);
      expect(frame!.data.equals(key)).toBe(true);
      expect(frame!.keyFrame).toBe(true);
      const calls = spy.mock.calls.length;
      await sleep(2200);
      expect(spy.mock.calls.length).toBe(calls);
    } finally {
      udp.close();
      plain.close();
      a.socket.disconnect();
    }
  });

  it('is off by default', async ({ startServer }) => {
    const s = await startServer({ workers: 1 });
    expect(s.tap).toBeUndefined();
    expect(s.sfu.tap).toBeUndefined();
    expect(s.capture).toBeUndefined();
    const roomId = newRoomId();
    const a = await joinWithTransports(s.url, roomId, newToken());
    const dump = (await s.sfu.getRoom(roomId)!.router.dump()) as { transportIds: string[] };
    expect(dump.transportIds).toHaveLength(2); // the peer's own two, no tap transport
    a.socket.disconnect();
  });
});

describe('payload descriptor parsers', () => {
  it('VP8 (RFC 7741) and VP9 descriptors', () => {
    expect(parseVp8Descriptor(Buffer.from([0x10, 0xaa]))).toMatchObject({ length: 1, start: true, partitionIndex: 0 });
    expect(parseVp8Descriptor(Buffer.from([0x90, 0xf0, 0x81, 0x02, 0x07, 0x65, 0xaa]))).toMatchObject({
      length: 6,
      pictureId: 0x102,
      tl0PicIdx: 7,
      tid: 1,
      keyIdx: 5,
    });
    expect(parseVp8Descriptor(Buffer.from([0x90, 0x80]))).toBeNull();
    // VP9: I (15-bit), L, not flexible → TL0PICIDX; B; V with Y (1 spatial layer) and G (1 group, R=1).
    const vp9 = Buffer.from([0xaa, 0x80 | 0x01, 0x02, (1 << 5) | (0 << 1), 0x09, 0x18, 0x02, 0x80, 0x01, 0xe0, 0x01, 0x04, 0x01, 0xee]);
    expect(parseVp9Descriptor(vp9)).toMatchObject({ length: 13, begin: true, end: false, interPredicted: false, pictureId: 0x102, sid: 0, tid: 1 });
    expect(parseVp9Descriptor(Buffer.from([0x80]))).toBeNull();
  });

  it('reassembles reordered and duplicated VP8 packets; a frame with a hole is incomplete', () => {
    const frames: AssembledFrame[] = [];
    const asm = new StreamAssembler('vp8', (f) => frames.push(f));
    const f = vp8DeltaFrame(30);
    const pkt = (seq: number, start: boolean, marker: boolean, data: Buffer, ts = 9): Buffer =>
      rtp({ pt: 96, seq, ts, ssrc: 1, marker, payload: Buffer.concat([Buffer.from([start ? 0x90 : 0x80, 0x80, 0x01]), data]) });
    for (const b of [pkt(65535, false, false, f.subarray(10, 20)), pkt(0, false, true, f.subarray(20)), pkt(65535, false, false, f.subarray(10, 20)), pkt(65534, true, false, f.subarray(0, 10))]) {
      asm.push(parseRtp(b)!);
    }
    expect(frames).toHaveLength(1);
    expect(frames[0]!.data.equals(f)).toBe(true);
    expect(frames[0]).toMatchObject({ complete: true, packets: 3, seqFirst: 65534, seqLast: 0 });
    // A hole: start and end but a missing middle packet; flushed as incomplete.
    asm.push(parseRtp(pkt(10, true, false, f.subarray(0, 10), 99))!);
    asm.push(parseRtp(pkt(12, false, true, f.subarray(20), 99))!);
    expect(frames).toHaveLength(1);
    asm.flush(1);
    expect(frames[1]).toMatchObject({ complete: false, packets: 2 });
  });
});

describe('requestProducerKeyFrame', () => {
  it('asks every consumer of a same-room producer for a key frame; NOT_FOUND across rooms; NOT_JOINED before join', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const room = server.sfu.getRoom(roomId)!;
    // Every consumer created on this room's router from now on, as mediasoup objects.
    const consumers: ms.Consumer[] = [];
    room.router.observer.on('newtransport', (t: ms.Transport) => t.observer.on('newconsumer', (c: ms.Consumer) => consumers.push(c)));
    const b = await joinWithTransports(server.url, roomId, token);
    const c = await joinWithTransports(server.url, roomId, token);
    const video = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });

    // Nobody consumes yet (the tap's own consumer is not a member's): nothing to ask.
    expect(await ok(b.socket, 'requestProducerKeyFrame', { producerId: video.producerId })).toEqual({ requested: 0 });

    const caps = clientRtpCapabilities();
    const bv = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: video.producerId, rtpCapabilities: caps });
    const cv = await ok(c.socket, 'consume', { transportId: c.recvTransportId, producerId: video.producerId, rtpCapabilities: caps });
    await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: caps });
    const memberVideoConsumers = consumers.filter((x) => x.id === bv.consumerId || x.id === cv.consumerId);
    expect(memberVideoConsumers).toHaveLength(2);
    const spies = memberVideoConsumers.map((x) => vi.spyOn(x, 'requestKeyFrame'));
    const others = consumers.filter((x) => !memberVideoConsumers.includes(x)).map((x) => vi.spyOn(x, 'requestKeyFrame'));

    // Any member may ask (the sender after a key switch, or a receiver); each member consumer is asked once.
    await sleep(KEYFRAME_COALESCE_MS + 50);
    expect(await ok(b.socket, 'requestProducerKeyFrame', { producerId: video.producerId })).toEqual({ requested: 2 });
    expect(spies.map((s) => s.mock.calls.length)).toEqual([1, 1]);
    // Requests within the coalescing window (e.g. every receiver after one key switch) share that fan-out.
    expect(await ok(c.socket, 'requestProducerKeyFrame', { producerId: video.producerId })).toEqual({ requested: 2 });
    expect(spies.map((s) => s.mock.calls.length)).toEqual([1, 1]);
    await sleep(KEYFRAME_COALESCE_MS + 50);
    expect(await ok(a.socket, 'requestProducerKeyFrame', { producerId: video.producerId })).toEqual({ requested: 2 });
    expect(spies.map((s) => s.mock.calls.length)).toEqual([2, 2]);
    // Audio has no key frames.
    expect(await ok(c.socket, 'requestProducerKeyFrame', { producerId: audio.producerId })).toEqual({ requested: 0 });
    expect(others.every((s) => s.mock.calls.length === 0)).toBe(true);

    // Not in your room / unknown: NOT_FOUND; not joined: NOT_JOINED; malformed: BAD_REQUEST.
    const x = await joinWithTransports(server.url, newRoomId(), token);
    const foreign = await ok(x.socket, 'produce', { transportId: x.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    expect(code(await request(a.socket, 'requestProducerKeyFrame', { producerId: foreign.producerId }))).toBe('NOT_FOUND');
    expect(code(await request(x.socket, 'requestProducerKeyFrame', { producerId: video.producerId }))).toBe('NOT_FOUND');
    expect(code(await request(a.socket, 'requestProducerKeyFrame', { producerId: 'nope' }))).toBe('NOT_FOUND');
    const loner = await connect(server.url);
    expect(code(await request(loner, 'requestProducerKeyFrame', { producerId: video.producerId }))).toBe('NOT_JOINED');
    expect(code(await request(a.socket, 'requestProducerKeyFrame', { producerId: video.producerId, extra: 1 } as never))).toBe('BAD_REQUEST');
    expect(spies.map((s) => s.mock.calls.length)).toEqual([2, 2]);

    // A closed producer is gone.
    const closed = next(b.socket, 'producerClosed');
    await ok(a.socket, 'closeProducer', { producerId: video.producerId });
    await closed;
    expect(code(await request(b.socket, 'requestProducerKeyFrame', { producerId: video.producerId }))).toBe('NOT_FOUND');
    for (const s of [a.socket, b.socket, c.socket, x.socket, loner]) s.disconnect();
  });

  it('is rate-limited like every other event', async ({ startServer }) => {
    const s = await startServer({ workers: 1, rateLimitPerSec: 1, rateLimitBurst: 5 });
    const sock = await connect(s.url);
    const results = await Promise.all(Array.from({ length: 15 }, () => request(sock, 'requestProducerKeyFrame', { producerId: 'abc' })));
    const codes = results.map(code);
    expect(codes.filter((c) => c === 'NOT_JOINED').length).toBeGreaterThanOrEqual(5);
    expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBeGreaterThanOrEqual(8);
    sock.disconnect();
  });
});
