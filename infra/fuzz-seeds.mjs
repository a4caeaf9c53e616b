// infra/fuzz-seeds.mjs — writes the seed corpus for infra/fuzz-sfu.sh: well-formed packets of every kind
// the SFU parses off the network, so libFuzzer starts from deep inside each parser instead of from
// random bytes (mediasoup's own corpora, deps/webrtc-fuzzer-corpora, are not in the npm tarball).
//
//   node infra/fuzz-seeds.mjs <dir>
//
// RTP (RFC 3550; one- and two-byte header extensions RFC 8285; RTX RFC 4588) with Opus, VP8 (RFC 7741),
// VP9 (RFC 9628), H.264 (RFC 6184), AV1 payloads and dependency descriptors; RTCP SR/RR/SDES/BYE/APP,
// RTPFB NACK/TMMBR/transport-cc, PSFB PLI/SLI/RPSI/FIR/REMB, XR (RFC 3611); STUN (RFC 5389/8445) with a
// real FINGERPRINT; an SCTP INIT (RFC 9260) and a DTLS 1.2 ClientHello (RFC 6347). Deterministic.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node infra/fuzz-seeds.mjs <dir>');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });

const seeds = new Map();
const add = (name, bytes) => seeds.set(name, Buffer.from(bytes));
const u16 = (n) => [(n >> 8) & 0xff, n & 0xff];
const u24 = (n) => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const u32 = (n) => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const bytes = (n, seed = 7) => Array.from({ length: n }, (_, i) => (i * 31 + seed * 17) & 0xff);
const pad4 = (a) => [...a, ...Array((4 - (a.length % 4)) % 4).fill(0)];

// --- RTP ---------------------------------------------------------------------------------------------
/** RTP header; `ext` = { profile, data } (data padded to 32-bit words), `csrcs`, `marker`, `padding`. */
function rtp({ pt, seq = 1, ts = 960, ssrc = 0x11223344, marker = false, csrcs = [], ext, padding = 0 }, payload) {
  const b0 = 0x80 | (padding ? 0x20 : 0) | (ext ? 0x10 : 0) | csrcs.length;
  const out = [b0, (marker ? 0x80 : 0) | pt, ...u16(seq), ...u32(ts), ...u32(ssrc), ...csrcs.flatMap(u32)];
  if (ext) {
    const data = pad4(ext.data);
    out.push(...u16(ext.profile), ...u16(data.length / 4), ...data);
  }
  out.push(...payload);
  if (padding) out.push(...Array(padding - 1).fill(0), padding);
  return out;
}
// One-byte extensions (0xBEDE): mid=1 "0", abs-send-time=4, audio level=10, transport-cc=5.
const oneByte = { profile: 0xbede, data: [0x10, 0x30, 0x42, 0x12, 0x34, 0x56, 0xa0, 0x80 | 0x2a, 0x51, 0x00, 0x07] };
// Two-byte extensions (0x100x): id 1 len 1 "1", id 3 len 3.
const twoByte = { profile: 0x1000, data: [0x01, 0x01, 0x31, 0x03, 0x03, 0xaa, 0xbb, 0xcc] };

add('rtp-opus', rtp({ pt: 111, ext: oneByte }, bytes(80, 1)));
add('rtp-opus-two-byte-ext', rtp({ pt: 111, ext: twoByte, csrcs: [0xdeadbeef, 0x01020304] }, bytes(60, 2)));
add('rtp-opus-padding', rtp({ pt: 111, padding: 8 }, bytes(40, 3)));
add('rtp-rtx', rtp({ pt: 97, seq: 7, ssrc: 0x55667788 }, [...u16(1234), ...bytes(100, 4)]));

// VP8 payload descriptor: X=1,S=1,PID=0 | I=1,L=1,T=1,K=1 | M=1 15-bit picture id | TL0PICIDX | TID/Y/KEYIDX.
const vp8Key = [0x90, 0xf0, 0x80 | 0x12, 0x34, 0x05, 0x20, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
add('rtp-vp8-keyframe', rtp({ pt: 96, marker: true, ext: oneByte }, [...vp8Key, ...bytes(200, 5)]));
add('rtp-vp8-delta-7bit-pid', rtp({ pt: 96, seq: 2 }, [0x80, 0x80, 0x33, 0x31, ...bytes(120, 6)]));
add('codec-vp8', vp8Key);
// VP9 flexible mode, I=1 (15-bit PID), P=1, L=1, F=1, B=1, E=1, V=1 + scalability structure.
const vp9 = [0xfe, 0x80 | 0x01, 0x02, 0x41, 0x01, 0x28, 0x01, 0x40, 0x00, 0xf0, 0x01, 0x04, 0x01];
add('rtp-vp9', rtp({ pt: 98, marker: true }, [...vp9, ...bytes(150, 7)]));
add('codec-vp9', vp9);
add('codec-vp9-non-flexible', [0xac, 0x80, 0x05, 0x00, 0x0a, ...bytes(30, 8)]);
// H.264: IDR single NAL, STAP-A with SPS + PPS, FU-A start of an IDR.
const sps = [0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40];
const pps = [0x68, 0xce, 0x3c, 0x80];
add('codec-h264-idr', [0x65, 0x88, 0x84, ...bytes(40, 9)]);
add('codec-h264-stap-a', [0x18, ...u16(sps.length), ...sps, ...u16(pps.length), ...pps]);
add('codec-h264-fu-a', [0x7c, 0x85, 0x88, 0x84, ...bytes(60, 10)]);
add('rtp-h264-stap-a', rtp({ pt: 102 }, [0x18, ...u16(sps.length), ...sps, ...u16(pps.length), ...pps]));
// AV1 aggregation header (Z=0,Y=0,W=2,N=1) + sequence header OBU + frame OBU.
add('codec-av1', [0x28, 0x0b, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x24, 0xc4, 0xff, 0xdf, 0x00, 0x68, 0x32, ...bytes(30, 11)]);
// Dependency descriptor (mandatory fields + template dependency structure) and a short one.
add('codec-dd', [0xc1, 0x00, 0x01, 0x80, 0x01, 0x2c, 0x40, 0x44, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
add('codec-dd-short', [0x40, 0x01, 0x02]);
add('codec-opus', [0x78, ...bytes(50, 12)]);

// --- RTCP --------------------------------------------------------------------------------------------
/** One RTCP packet: V=2, count/fmt, packet type, length in 32-bit words minus one. */
const rtcp = (count, pt, body) => {
  const b = pad4(body);
  return [0x80 | count, pt, ...u16(b.length / 4), ...b];
};
const reportBlock = [...u32(0xaabbccdd), 0x02, ...u24(17), ...u32(0x00010203), ...u32(21), ...u32(0x12345678), ...u32(655)];
const sr = rtcp(1, 200, [...u32(0x11223344), ...u32(0xe1234567), ...u32(0x89abcdef), ...u32(96000), ...u32(1000), ...u32(160000), ...reportBlock]);
const rr = rtcp(1, 201, [...u32(0x55667788), ...reportBlock]);
const sdes = rtcp(1, 202, [...u32(0x11223344), 1, 10, ...Buffer.from('user@host1'), 0]);
const bye = rtcp(1, 203, [...u32(0x11223344), 6, ...Buffer.from('leave!')]);
const app = rtcp(0, 204, [...u32(0x11223344), ...Buffer.from('NAME'), ...bytes(8, 13)]);
const fb = (fmt, pt, fci) => rtcp(fmt, pt, [...u32(0x55667788), ...u32(0x11223344), ...fci]);
const nack = fb(1, 205, [...u16(100), ...u16(0b1010000000000101), ...u16(300), ...u16(0)]);
const tmmbr = fb(3, 205, [...u32(0x11223344), 0x08, 0x3d, 0x09, 0x28]);
const tcc = fb(15, 205, [...u16(1000), ...u16(10), 0x01, 0x02, 0x03, 0x04, 0x20, 0x0a, 0xd6, 0x40, 0x04, 0x08, 0x00, 0x10, 0x00, 0x00]);
const pli = fb(1, 206, []);
const sli = fb(2, 206, [...u32(0x00401003)]);
const rpsi = fb(3, 206, [0x00, 96, 0x80, 0x01, ...u32(0)]);
const fir = fb(4, 206, [...u32(0x11223344), 0x05, 0x00, 0x00, 0x00]);
const remb = fb(15, 206, [...Buffer.from('REMB'), 0x01, 0x0b, 0xd0, 0x90, ...u32(0x11223344)]);
const xr = rtcp(0, 207, [...u32(0x55667788), 4, 0, ...u16(2), ...u32(0xe1234567), ...u32(0x89abcdef), 5, 0, ...u16(3), ...u32(0x11223344), ...u32(0x45678901), ...u32(1000)]);
for (const [name, p] of Object.entries({ sr, rr, sdes, bye, app, nack, tmmbr, tcc, pli, sli, rpsi, fir, remb, xr })) add(`rtcp-${name}`, p);
add('rtcp-compound-sr-sdes-remb', [...sr, ...sdes, ...remb]);
add('rtcp-compound-rr-nack-pli-tcc', [...rr, ...nack, ...pli, ...tcc]);

// --- STUN --------------------------------------------------------------------------------------------
const attr = (type, value) => [...u16(type), ...u16(value.length), ...pad4(value)];
function stun(type, attrs, { fingerprint = true } = {}) {
  const txId = bytes(12, type & 0xff);
  const body = attrs.flat();
  const head = (len) => [...u16(type), ...u16(len), ...u32(0x2112a442), ...txId];
  if (!fingerprint) return [...head(body.length), ...body];
  const withLen = [...head(body.length + 8), ...body];
  const crc = (crc32(Buffer.from(withLen)) ^ 0x5354554e) >>> 0;
  return [...withLen, ...attr(0x8028, u32(crc))];
}
const integrity = attr(0x0008, bytes(20, 14));
add('stun-binding-request', stun(0x0001, [
  attr(0x0006, [...Buffer.from('remoteufrag:localufrag')]),
  attr(0x0024, u32(1853824767)),
  attr(0x802a, bytes(8, 15)),
  attr(0x0025, []),
  integrity,
]));
add('stun-binding-success', stun(0x0101, [attr(0x0020, [0x00, 0x01, ...u16(0x2112 ^ 50000), ...u32((0x7f000001 ^ 0x2112a442) >>> 0)]), integrity]));
add('stun-binding-error-487', stun(0x0111, [attr(0x0009, [0, 0, 4, 87, ...Buffer.from('Role Conflict')]), integrity]));
add('stun-binding-indication', stun(0x0011, [], { fingerprint: false }));

// --- SCTP (as carried in DTLS application data) and DTLS -------------------------------------------------------
const init = [1, 0, ...u16(20 + 8), ...u32(0x01020304), ...u32(131072), ...u16(1024), ...u16(1024), ...u32(0x0a0b0c0d), ...u16(0x8008), ...u16(8), 0x82, 0xc0, 0, 0];
add('sctp-init', [...u16(5000), ...u16(5000), ...u32(0), ...u32(0), ...init]);
const data = [0, 0x03, ...u16(16 + 5), ...u32(1), ...u16(0), ...u16(0), ...u32(51), ...Buffer.from('hello'), 0, 0, 0];
add('sctp-data', [...u16(5000), ...u16(5000), ...u32(0x01020304), ...u32(0), ...data]);
const hello = [0xfe, 0xfd, ...bytes(32, 16), 0, 0, ...u16(4), 0xc0, 0x2b, 0xc0, 0x2f, 1, 0, ...u16(8), ...u16(0x000e), ...u16(4), ...u16(2), ...u16(0x0001)];
const handshake = [1, ...u24(hello.length), ...u16(0), ...u24(0), ...u24(hello.length), ...hello];
add('dtls-client-hello', [22, 0xfe, 0xff, ...u16(0), ...u16(0), ...u32(0), ...u16(handshake.length), ...handshake]);

for (const [name, content] of seeds) writeFileSync(path.join(dir, name), content);
console.log(`[fuzz-seeds] ${seeds.size} seeds in ${dir}`);
