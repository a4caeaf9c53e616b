/**
 * SRTP through the worker's libsrtp 3 API on Debian's libsrtp2 (infra/mediasoup-build/subprojects/libsrtp3):
 * for every crypto suite mediasoup offers, plain RTP goes in, is SRTP-protected by one PlainTransport,
 * unprotected by a second one on another router, and comes out as plain RTP again, byte for byte. SRTCP
 * works both ways (the sender's round-trip time needs its SR unprotected at the receiver and the
 * receiver's RR unprotected back at the sender). With a wrong key nothing gets through.
 *
 *   node --RTP--> in (plain) -> [router A] -> srtpA ==SRTP/SRTCP==> srtpB -> [router B] -> out (plain) --RTP--> node
 *                                                        (via a UDP relay in the test that records the wire)
 *
 * On the wire every RTP packet is the plain packet plus the suite's tag (RFC 3711 / RFC 7714), with no
 * plaintext payload left in it.
 * The browser calls (test/e2e) cover the DTLS-SRTP path (keys from the DTLS handshake).
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import { resolveWorkerBin } from '../../sfu/src/workerBin.ts';

const SUITES: ms.SrtpCryptoSuite[] = ['AEAD_AES_256_GCM', 'AEAD_AES_128_GCM', 'AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'];
const PACKETS = 50;
const PAYLOAD_BYTES = 160;
/** SRTP authentication tag octets per suite (RFC 3711 section 5.2, RFC 4568, RFC 7714 section 13.2). */
const TAG_BYTES: Record<ms.SrtpCryptoSuite, number> = {
  AEAD_AES_256_GCM: 16,
  AEAD_AES_128_GCM: 16,
  AES_CM_128_HMAC_SHA1_80: 10,
  AES_CM_128_HMAC_SHA1_32: 4,
};
const LOCAL = { protocol: 'udp', ip: '127.0.0.1', portRange: { min: 40000, max: 49999 } } as const;
const mediaCodecs: ms.RouterRtpCodecCapability[] = [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }];

let worker: ms.Worker;
const sockets: Socket[] = [];

beforeAll(async () => {
  worker = await mediasoup.createWorker({ logLevel: 'warn', workerBin: resolveWorkerBin() });
});
afterAll(() => {
  for (const s of sockets) s.close();
  worker?.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function udpSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket;
}

/** A 12-byte RTP header (V=2, PT 100) + a payload that names the packet. */
function rtpPacket(ssrc: number, seq: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(12);
  header[0] = 0x80;
  header[1] = 100;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE((seq * 960) >>> 0, 4);
  header.writeUInt32BE(ssrc, 8);
  return Buffer.concat([header, payload]);
}

/** RTP payload (after the header, its CSRCs and its header extension). */
function rtpPayload(packet: Buffer): Buffer | undefined {
  if (packet.length < 12 || packet[0]! >> 6 !== 2) return undefined;
  let offset = 12 + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) {
    if (packet.length < offset + 4) return undefined;
    offset += 4 + packet.readUInt16BE(offset + 2) * 4;
  }
  return packet.length >= offset ? packet.subarray(offset) : undefined;
}

/** RTP or RTCP (RFC 5761 demultiplexing: RTCP packet types 192..223 in the second octet). */
const isRtcp = (msg: Buffer): boolean => msg.length >= 2 && msg[1]! >= 192 && msg[1]! <= 223;

/** A two-socket UDP relay between srtpA and srtpB that keeps every A→B RTP packet it forwards. */
async function relay(): Promise<{ toA: Socket; toB: Socket; wire: Buffer[]; link(aPort: number, bPort: number): void }> {
  const toA = await udpSocket();
  const toB = await udpSocket();
  const wire: Buffer[] = [];
  return {
    toA,
    toB,
    wire,
    link(aPort, bPort) {
      toA.on('message', (msg) => {
        if (!isRtcp(msg)) wire.push(msg);
        toB.send(msg, bPort, '127.0.0.1');
      });
      toB.on('message', (msg) => toA.send(msg, aPort, '127.0.0.1'));
    },
  };
}

interface Run {
  sent: string[];
  received: string[];
  /** SRTP packets srtpA sent, as seen on the wire. */
  wire: Buffer[];
  /** The sender-side consumer's RTT from RTCP (SR out, RR back), or undefined. */
  roundTripTime: number | undefined;
  srtpA: ms.PlainTransport;
  srtpB: ms.PlainTransport;
}

async function runSuite(suite: ms.SrtpCryptoSuite, opts: { wrongKey?: boolean } = {}): Promise<Run> {
  const routerA = await worker.createRouter({ mediaCodecs });
  const routerB = await worker.createRouter({ mediaCodecs });
  try {
    const input = await routerA.createPlainTransport({ listenInfo: LOCAL, rtcpMux: true, comedia: true });
    const srtpA = await routerA.createPlainTransport({ listenInfo: LOCAL, rtcpMux: true, comedia: false, enableSrtp: true, srtpCryptoSuite: suite });
    const srtpB = await routerB.createPlainTransport({ listenInfo: LOCAL, rtcpMux: true, comedia: false, enableSrtp: true, srtpCryptoSuite: suite });
    const output = await routerB.createPlainTransport({ listenInfo: LOCAL, rtcpMux: true, comedia: false });
    expect(srtpA.srtpParameters?.cryptoSuite).toBe(suite);
    expect(srtpB.srtpParameters?.cryptoSuite).toBe(suite);

    // Each side decrypts with the key the other side encrypts with.
    const keyOfA = srtpA.srtpParameters!;
    const keyForB = opts.wrongKey
      ? { ...keyOfA, keyBase64: Buffer.from(Buffer.from(keyOfA.keyBase64, 'base64').map((b) => b ^ 0x5a)).toString('base64') }
      : keyOfA;
    const middle = await relay();
    middle.link(srtpA.tuple.localPort, srtpB.tuple.localPort);
    await srtpA.connect({ ip: '127.0.0.1', port: middle.toA.address().port, srtpParameters: srtpB.srtpParameters! });
    await srtpB.connect({ ip: '127.0.0.1', port: middle.toB.address().port, srtpParameters: keyForB });

    const sink = await udpSocket();
    const received: string[] = [];
    sink.on('message', (msg) => {
      if (isRtcp(msg)) return;
      const payload = rtpPayload(msg);
      if (payload) received.push(payload.toString('hex'));
    });
    await output.connect({ ip: '127.0.0.1', port: sink.address().port });

    const ssrc = 0x1000_0000 + Math.floor(Math.random() * 0x0fff_ffff);
    const producer = await input.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }],
        encodings: [{ ssrc }],
        rtcp: { cname: 'srtp-test', reducedSize: true },
      },
    });
    const sending = await srtpA.consume({ producerId: producer.id, rtpCapabilities: routerA.rtpCapabilities });
    const relayed = await srtpB.produce({ kind: 'audio', rtpParameters: sending.rtpParameters });
    await output.consume({ producerId: relayed.id, rtpCapabilities: routerB.rtpCapabilities });

    const source = await udpSocket();
    const sent: string[] = [];
    for (let seq = 1; seq <= PACKETS; seq++) {
      const payload = Buffer.from(`${suite} packet ${seq} `.padEnd(PAYLOAD_BYTES, '.'));
      sent.push(payload.toString('hex'));
      source.send(rtpPacket(ssrc, seq, payload), input.tuple.localPort, '127.0.0.1');
      await sleep(20);
    }
    // SRTCP: srtpA sends a sender report within ~1.5 s; srtpB answers with a receiver report.
    let roundTripTime: number | undefined;
    const end = Date.now() + (opts.wrongKey ? 3000 : 8000);
    while (Date.now() < end && (received.length < PACKETS || roundTripTime === undefined)) {
      await sleep(100);
      const rtt = (await sending.getStats()).find((s) => s.type === 'outbound-rtp')?.roundTripTime;
      if (rtt !== undefined && rtt > 0) roundTripTime = rtt;
    }
    return { sent, received, wire: middle.wire, roundTripTime, srtpA, srtpB };
  } finally {
    routerA.close();
    routerB.close();
  }
}

describe('SRTP suites through libsrtp2 (libsrtp 3 API glue)', () => {
  for (const suite of SUITES) {
    it(`${suite}: ${PACKETS}/${PACKETS} RTP packets arrive unchanged; SRTCP both ways`, async () => {
      const run = await runSuite(suite);
      expect(run.received).toEqual(run.sent);
      expect(run.roundTripTime).toBeGreaterThan(0);
      // The wire: every packet A sent is SRTP of this suite, none carries its payload in the clear.
      expect(run.wire).toHaveLength(PACKETS);
      const plain = run.sent.map((hex) => Buffer.from(hex, 'hex'));
      for (const packet of run.wire) {
        const header = 12 + (packet[0]! & 0x0f) * 4 + (packet[0]! & 0x10 ? 4 + packet.readUInt16BE(14 + (packet[0]! & 0x0f) * 4) * 4 : 0);
        expect(packet.length).toBe(header + PAYLOAD_BYTES + TAG_BYTES[suite]);
        expect(plain.some((p) => packet.includes(p.subarray(0, 16)))).toBe(false);
      }
    });
  }

  for (const suite of SUITES) {
    it(`${suite} with a wrong key: 0/${PACKETS} get through`, async () => {
      const run = await runSuite(suite, { wrongKey: true });
      expect(run.sent).toHaveLength(PACKETS);
      expect(run.wire).toHaveLength(PACKETS); // they were sent, and refused at srtpB
      expect(run.received).toEqual([]);
      expect(run.roundTripTime).toBeUndefined();
    });
  }
});
