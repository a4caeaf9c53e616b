/**
 * Active speaker: RTP with the ssrc-audio-level header extension is fed into the room's router through
 * a plain (unencrypted, comedia) transport — the same path a browser's audio takes after SRTP — and
 * the room's AudioLevelObserver turns it into `activeSpeaker` events for every member, then `null` on
 * silence.
 */
import * as dgram from 'node:dgram';
import { describe, expect } from 'vitest';
import { serverTest } from './fixtures.ts';
import { joinWithTransports, newRoomId, newToken, next } from './helpers.ts';

const it = serverTest({ workers: 1 });

const SSRC = 0x1234abcd;
const AUDIO_LEVEL_ID = 10;

/** RTP packet (PT 111) with a one-byte-header audio level extension: level = -dBov (0 loud … 127 silent). */
function rtpWithAudioLevel(seq: number, timestamp: number, level: number): Buffer {
  const b = Buffer.alloc(12 + 8 + 3);
  b[0] = 0x90; // V=2, X=1
  b[1] = 111;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(timestamp >>> 0, 4);
  b.writeUInt32BE(SSRC, 8);
  b.writeUInt16BE(0xbede, 12);
  b.writeUInt16BE(1, 14); // one 32-bit word of extensions
  b[16] = (AUDIO_LEVEL_ID << 4) | 0; // id, len-1
  b[17] = 0x80 | level; // voice activity + level
  b[18] = 0;
  b[19] = 0;
  b[20] = 0xf8; // an Opus TOC byte and two filler bytes
  b[21] = 0xff;
  b[22] = 0xfe;
  return b;
}

describe('active speaker', () => {
  it('emits the loudest peer to the room, then null on silence', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    const room = server.sfu.getRoom(roomId)!;

    const plain = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    await plain.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
        headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: AUDIO_LEVEL_ID }],
        encodings: [{ ssrc: SSRC }],
      },
      appData: { peerId: a.peerId, source: 'mic' },
    });

    const udp = dgram.createSocket('udp4');
    let seq = 1;
    let ts = 0;
    const sendLoud = setInterval(() => {
      udp.send(rtpWithAudioLevel(seq++, (ts += 960), 10), plain.tuple.localPort, '127.0.0.1');
    }, 20);
    try {
      const speakingA = next(a.socket, 'activeSpeaker', 15_000);
      const speakingB = next(b.socket, 'activeSpeaker', 15_000);
      expect(await speakingA).toEqual({ peerId: a.peerId });
      expect(await speakingB).toEqual({ peerId: a.peerId });
      expect(room.activeSpeaker).toBe(a.peerId);
    } finally {
      clearInterval(sendLoud);
    }
    // No more audio (or only silence): the observer reports silence → null.
    const quiet = next(b.socket, 'activeSpeaker', 15_000);
    const sendSilent = setInterval(() => {
      udp.send(rtpWithAudioLevel(seq++, (ts += 960), 127), plain.tuple.localPort, '127.0.0.1');
    }, 20);
    try {
      expect(await quiet).toEqual({ peerId: null });
    } finally {
      clearInterval(sendSilent);
      udp.close();
      plain.close();
    }
    a.socket.disconnect();
    b.socket.disconnect();
  });
});
