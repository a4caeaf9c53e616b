/** Shared helpers for the server tests: real server in-process, real socket.io-client, hand-made RTP. */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { createSocket } from 'node:dgram';
import { createServer as createTcpServer } from 'node:net';
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client';
import { vi } from 'vitest';
import type { ConfigInput } from '../../sfu/src/config.ts';
import { startServer, type StartedServer, type StartOptions } from '../../signaling/src/main.ts';
import type {
  AckResult,
  ClientToServerEvents,
  Requests,
  Responses,
  ServerToClientEvents,
} from '../../signaling/src/protocol.ts';

export type TestSocket = ClientSocket<ServerToClientEvents, ClientToServerEvents>;

/** Captured log lines of a test server (to assert nothing sensitive gets logged). */
export interface TestServer extends StartedServer {
  logs: string[];
}

/**
 * Every test connects from 127.0.0.1, often with dozens of sockets in dozens of rooms per file: the per-address
 * quotas are lifted unless a test sets them (test/server/limits.test.ts tests them with small values).
 */
const UNLIMITED_ADDRESS: ConfigInput = { maxSocketsPerAddress: 1_000_000, maxRoomsPerAddress: 1_000_000 };

export async function startTestServer(overrides: ConfigInput = {}, opts: StartOptions = {}): Promise<TestServer> {
  const logs: string[] = [];
  const server = await startServer(
    // rtcPort 0: each worker's WebRtcServer takes any free port of the range (test files run in parallel).
    { port: 0, workers: 1, logLevel: 'debug', rtcPort: 0, rtcMinPort: 40000, rtcMaxPort: 49999, ...UNLIMITED_ADDRESS, ...overrides },
    { logSink: (line) => logs.push(line), ...opts },
  );
  return Object.assign(server, { logs });
}

/** A bare socket.io server on a random loopback port, no SFU behind it (pipeline and client-edge tests). */
export async function startSocketServer(): Promise<{ io: Server; url: string; close(): Promise<void> }> {
  const httpServer = createServer();
  const io = new Server(httpServer, { serveClient: false });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  return { io, url: `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`, close: () => io.close() };
}

export const newRoomId = (): string => randomBytes(16).toString('base64url');
export const newToken = (): string => randomBytes(32).toString('base64url');

/** Resolves once `socket` is connected; rejects with its connect_error. */
export function connected(socket: ClientSocket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
}

export async function connect(url: string): Promise<TestSocket> {
  const socket: TestSocket = ioClient(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  await connected(socket);
  return socket;
}

/** Emits an event with an ack; resolves with the ack result. */
export function request<K extends keyof Requests>(socket: TestSocket, event: K, payload: Requests[K]): Promise<AckResult<Responses[K]>>;
export function request(socket: TestSocket, event: string, payload: unknown): Promise<AckResult<unknown>>;
export function request(socket: TestSocket, event: string, payload: unknown): Promise<AckResult<unknown>> {
  return rawRequest(socket, event, [payload]);
}

type LooseAckEmitter = { emitWithAck(ev: string, ...args: unknown[]): Promise<AckResult<unknown>> };

/** Emits an arbitrary argument list plus an ack (for malformed-request tests); rejects if no ack comes in time. */
export function rawRequest(socket: TestSocket, event: string, args: unknown[], timeoutMs = 10_000): Promise<AckResult<unknown>> {
  return (socket.timeout(timeoutMs) as unknown as LooseAckEmitter).emitWithAck(event, ...args);
}

/** The error code of an ack result; null when it is ok. */
export const code = (res: { ok: boolean; error?: { code: string } }): string | null => (res.ok ? null : (res.error?.code ?? null));

/** Like `request`, but throws unless ok. */
export async function ok<K extends keyof Requests>(socket: TestSocket, event: K, payload: Requests[K]): Promise<Responses[K]> {
  const res = await request(socket, event, payload);
  if (!res.ok) throw new Error(`${event} failed: ${res.error.code} ${res.error.message}`);
  return res.data;
}

/** Resolves with the next `event` the socket receives. */
export function next<K extends keyof ServerToClientEvents>(
  socket: TestSocket,
  event: K,
  timeoutMs = 10_000,
): Promise<Parameters<ServerToClientEvents[K]>[0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event`)), timeoutMs);
    const on = socket.once as (ev: string, fn: (p: unknown) => void) => void;
    on.call(socket, event, (p: unknown) => {
      clearTimeout(timer);
      resolve(p as Parameters<ServerToClientEvents[K]>[0]);
    });
  });
}

/** Records every server→client event of a socket. */
export function recorder(socket: TestSocket): { events: { event: string; payload: unknown }[] } {
  const rec = { events: [] as { event: string; payload: unknown }[] };
  socket.onAny((event: string, payload: unknown) => rec.events.push({ event, payload }));
  return rec;
}

/** Polls `cond` every 20 ms until it holds (vitest's `vi.waitUntil`); a timeout names `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  await vi.waitUntil(cond, { timeout: timeoutMs, interval: 20 }).catch((error: unknown) => {
    // vitest's own timeout error (a throwing `cond` rejects with its error, kept as is)
    throw error instanceof Error && error.message === 'Timed out in waitUntil!' ? new Error(`timed out waiting for ${what}`) : error;
  });
}

export { setTimeout as sleep } from 'node:timers/promises';

/** Plausible client DTLS parameters (mediasoup accepts connect() without a real handshake). */
export function fakeDtlsParameters(): Record<string, unknown> {
  const value = Array.from(randomBytes(32), (b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
  return { role: 'client', fingerprints: [{ algorithm: 'sha-256', value }] };
}

let ssrcBase = 10_000_000 + Math.floor(Math.random() * 1_000_000) * 8;
const nextSsrc = (): number => (ssrcBase += 8);

export function opusRtpParameters(): Record<string, unknown> {
  return {
    mid: '0',
    codecs: [
      {
        mimeType: 'audio/opus',
        payloadType: 111,
        clockRate: 48000,
        channels: 2,
        parameters: { useinbandfec: 1, usedtx: 1 },
        rtcpFeedback: [{ type: 'transport-cc', parameter: '' }],
      },
    ],
    headerExtensions: [
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 1 },
      { uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', id: 4 },
      { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 10 },
    ],
    encodings: [{ ssrc: nextSsrc() }],
    rtcp: { cname: 'test-cname', reducedSize: true },
  };
}

/** VP8 with three simulcast encodings (each with RTX). */
export function vp8SimulcastRtpParameters(): Record<string, unknown> {
  const base = nextSsrc();
  return {
    mid: '1',
    codecs: [
      {
        mimeType: 'video/VP8',
        payloadType: 96,
        clockRate: 90000,
        rtcpFeedback: [
          { type: 'goog-remb', parameter: '' },
          { type: 'transport-cc', parameter: '' },
          { type: 'ccm', parameter: 'fir' },
          { type: 'nack', parameter: '' },
          { type: 'nack', parameter: 'pli' },
        ],
      },
      { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 } },
    ],
    headerExtensions: [
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 1 },
      { uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', id: 4 },
      { uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', id: 5 },
    ],
    encodings: [
      { ssrc: base, rtx: { ssrc: base + 1 }, scalabilityMode: 'S1T3', maxBitrate: 100_000 },
      { ssrc: base + 2, rtx: { ssrc: base + 3 }, scalabilityMode: 'S1T3', maxBitrate: 300_000 },
      { ssrc: base + 4, rtx: { ssrc: base + 5 }, scalabilityMode: 'S1T3', maxBitrate: 900_000 },
    ],
    rtcp: { cname: 'test-cname', reducedSize: true },
  };
}

/** H.264 (the router does not offer it: produce must fail). */
export function h264RtpParameters(): Record<string, unknown> {
  return {
    mid: '2',
    codecs: [
      {
        mimeType: 'video/H264',
        payloadType: 102,
        clockRate: 90000,
        parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
      },
    ],
    headerExtensions: [],
    encodings: [{ ssrc: nextSsrc() }],
    rtcp: { cname: 'test-cname', reducedSize: true },
  };
}

/** Receiver capabilities of a browser-like client (Opus + VP8 + RTX). */
export function clientRtpCapabilities(): Record<string, unknown> {
  return {
    codecs: [
      { kind: 'audio', mimeType: 'audio/opus', preferredPayloadType: 100, clockRate: 48000, channels: 2, rtcpFeedback: [{ type: 'transport-cc', parameter: '' }] },
      {
        kind: 'video',
        mimeType: 'video/VP8',
        preferredPayloadType: 101,
        clockRate: 90000,
        rtcpFeedback: [
          { type: 'goog-remb', parameter: '' },
          { type: 'transport-cc', parameter: '' },
          { type: 'ccm', parameter: 'fir' },
          { type: 'nack', parameter: '' },
          { type: 'nack', parameter: 'pli' },
        ],
      },
      { kind: 'video', mimeType: 'video/rtx', preferredPayloadType: 102, clockRate: 90000, parameters: { apt: 101 }, rtcpFeedback: [] },
    ],
    headerExtensions: [
      { kind: 'audio', uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', preferredId: 1, preferredEncrypt: false, direction: 'sendrecv' },
      { kind: 'video', uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', preferredId: 1, preferredEncrypt: false, direction: 'sendrecv' },
      { kind: 'audio', uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', preferredId: 4, preferredEncrypt: false, direction: 'sendrecv' },
      { kind: 'video', uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', preferredId: 4, preferredEncrypt: false, direction: 'sendrecv' },
      { kind: 'video', uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', preferredId: 5, preferredEncrypt: false, direction: 'sendrecv' },
      { kind: 'audio', uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', preferredId: 10, preferredEncrypt: false, direction: 'sendrecv' },
    ],
  };
}

/** A joined client with a send and a recv transport, both connected. */
export interface JoinedClient {
  socket: TestSocket;
  peerId: string;
  sendTransportId: string;
  recvTransportId: string;
  join: Responses['join'];
}

export async function joinWithTransports(url: string, roomId: string, accessToken: string): Promise<JoinedClient> {
  const socket = await connect(url);
  const join = await ok(socket, 'join', { roomId, accessToken });
  const send = await ok(socket, 'createTransport', { direction: 'send' });
  const recv = await ok(socket, 'createTransport', { direction: 'recv' });
  await ok(socket, 'connectTransport', { transportId: send.id, dtlsParameters: fakeDtlsParameters() });
  await ok(socket, 'connectTransport', { transportId: recv.id, dtlsParameters: fakeDtlsParameters() });
  return { socket, peerId: join.peerId, sendTransportId: send.id, recvTransportId: recv.id, join };
}

/** Counts from worker.dump()/router.dump() of every live worker. */
export async function dumpCounts(server: StartedServer): Promise<{ routers: number; transports: number; producers: number; consumers: number }> {
  let routers = 0;
  let transports = 0;
  let producers = 0;
  let consumers = 0;
  const dumps = await server.sfu.dumpWorkers();
  for (const d of dumps) routers += d.routerIds.length;
  for (const room of server.sfu.rooms()) {
    const r = await room.router.dump();
    transports += r.transportIds.length;
    producers += r.mapProducerIdConsumerIds.length;
    consumers += r.mapConsumerIdProducerId.length;
  }
  return { routers, transports, producers, consumers };
}

/** Whether `port` can be bound for both UDP and TCP on 127.0.0.1 right now. */
async function portFree(port: number): Promise<boolean> {
  const udp = createSocket('udp4');
  const udpOk = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind(port, '127.0.0.1', () => resolve(true));
  });
  udp.close();
  if (!udpOk) return false;
  const tcp = createTcpServer();
  const tcpOk = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen(port, '127.0.0.1', () => resolve(true));
  });
  await new Promise<void>((resolve) => (tcpOk ? tcp.close(() => resolve()) : resolve()));
  return tcpOk;
}

/** A base port such that base..base+n-1 are free for UDP and TCP (for a fixed RTC_PORT with n workers). */
export async function freeConsecutivePorts(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 50000 + Math.floor(Math.random() * 9000);
    let free = true;
    for (let i = 0; i < n && free; i++) free = await portFree(base + i);
    if (free) return base;
  }
  throw new Error('no free consecutive ports found');
}
