/** Authorisation, room cap, access tokens and rate limiting, against the real server. */
import { describe, expect } from 'vitest';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  code,
  connect,
  fakeDtlsParameters,
  joinWithTransports,
  newRoomId,
  newToken,
  ok,
  opusRtpParameters,
  rawRequest,
  request,
  waitFor,
} from './helpers.ts';

const it = serverTest({ workers: 1, roomCap: 2 });

describe('authorisation', () => {
  it("peer B cannot touch peer A's transports, producers or consumers (NOT_FOUND)", async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    const producer = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const consumer = await ok(a.socket, 'consume', { transportId: a.recvTransportId, producerId: producer.producerId, rtpCapabilities: clientRtpCapabilities() });
    const before = server.sfu.stats();

    const attempts = await Promise.all([
      request(b.socket, 'connectTransport', { transportId: a.sendTransportId, dtlsParameters: fakeDtlsParameters() }),
      request(b.socket, 'restartIce', { transportId: a.recvTransportId }),
      request(b.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' }),
      request(b.socket, 'consume', { transportId: a.recvTransportId, producerId: producer.producerId, rtpCapabilities: clientRtpCapabilities() }),
      request(b.socket, 'closeProducer', { producerId: producer.producerId }),
      request(b.socket, 'pauseProducer', { producerId: producer.producerId }),
      request(b.socket, 'resumeProducer', { producerId: producer.producerId }),
      request(b.socket, 'resumeConsumer', { consumerId: consumer.consumerId }),
      request(b.socket, 'pauseConsumer', { consumerId: consumer.consumerId }),
      request(b.socket, 'setPreferredLayers', { consumerId: consumer.consumerId, spatialLayer: 0 }),
      request(b.socket, 'requestKeyFrame', { consumerId: consumer.consumerId }),
      request(b.socket, 'closeConsumer', { consumerId: consumer.consumerId }),
      request(b.socket, 'consume', { transportId: b.recvTransportId, producerId: 'no-such-producer', rtpCapabilities: clientRtpCapabilities() }),
    ]);
    expect(attempts.map(code)).toEqual(Array(attempts.length).fill('NOT_FOUND'));
    expect(server.sfu.stats()).toEqual(before);
    expect(server.sfu.getRoom(roomId)!.getPeer(a.peerId)!.producerInfos()[0]?.paused).toBe(false);
    // A's objects still work.
    await ok(a.socket, 'pauseProducer', { producerId: producer.producerId });
    await ok(a.socket, 'resumeConsumer', { consumerId: consumer.consumerId });

    a.socket.disconnect();
    b.socket.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });

  it('a peer in another room is not reachable by relay or consume', async ({ server }) => {
    const token = newToken();
    const r1 = newRoomId();
    const r2 = newRoomId();
    const a = await joinWithTransports(server.url, r1, token);
    const x = await joinWithTransports(server.url, r2, token);
    const producer = await ok(x.socket, 'produce', { transportId: x.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    expect(code(await request(a.socket, 'relay', { to: x.peerId, blob: 'aGk' }))).toBe('NOT_FOUND');
    expect(
      code(await request(a.socket, 'consume', { transportId: a.recvTransportId, producerId: producer.producerId, rtpCapabilities: clientRtpCapabilities() })),
    ).toBe('NOT_FOUND');
    a.socket.disconnect();
    x.socket.disconnect();
  });

  it('requests before join are NOT_JOINED; a second join is ALREADY_JOINED', async ({ server }) => {
    const s = await connect(server.url);
    expect(code(await request(s, 'createTransport', { direction: 'send' }))).toBe('NOT_JOINED');
    expect(code(await request(s, 'relay', { blob: 'eA' }))).toBe('NOT_JOINED');
    expect(code(await request(s, 'leave', {}))).toBe('NOT_JOINED');
    const roomId = newRoomId();
    await ok(s, 'join', { roomId, accessToken: newToken() });
    expect(code(await request(s, 'join', { roomId, accessToken: newToken() }))).toBe('ALREADY_JOINED');
    expect(server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    s.disconnect();
  });
});

describe('access token', () => {
  it('the first joiner fixes the token; a wrong token is UNAUTHORIZED and the room keeps only a hash', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await connect(server.url);
    await ok(a, 'join', { roomId, accessToken: token });
    const b = await connect(server.url);
    expect(code(await request(b, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
    expect(server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    await ok(b, 'join', { roomId, accessToken: token });
    // Only the hash is kept: the token string appears nowhere in the room object graph we can see.
    const room = server.sfu.getRoom(roomId)!;
    expect(JSON.stringify(Object.getOwnPropertyNames(room))).not.toContain(token);
    expect(server.logs.join('\n')).not.toContain(token);
    a.disconnect();
    b.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });

  it('after the room empties, the next first joiner fixes a new token', async ({ server }) => {
    const roomId = newRoomId();
    const a = await connect(server.url);
    await ok(a, 'join', { roomId, accessToken: newToken() });
    await ok(a, 'leave', {});
    const t2 = newToken();
    await ok(a, 'join', { roomId, accessToken: t2 });
    a.disconnect();
  });
});

describe('room cap', () => {
  it('with ROOM_CAP=2 the third joiner gets ROOM_FULL', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const [s1, s2, s3] = await Promise.all([connect(server.url), connect(server.url), connect(server.url)]);
    await ok(s1, 'join', { roomId, accessToken: token });
    await ok(s2, 'join', { roomId, accessToken: token });
    expect(code(await request(s3, 'join', { roomId, accessToken: token }))).toBe('ROOM_FULL');
    expect(server.sfu.getRoom(roomId)?.peerCount).toBe(2);
    // A slot frees up when someone leaves.
    await ok(s2, 'leave', {});
    await ok(s3, 'join', { roomId, accessToken: token });
    for (const s of [s1, s2, s3]) s.disconnect();
  });
});

describe('rate limit', () => {
  it('a burst over the token bucket gets RATE_LIMITED, then recovers', async ({ startServer }) => {
    // 1 token/s refill, burst 10: timing-tolerant even on a loaded machine.
    const s = await startServer({ workers: 1, rateLimitPerSec: 1, rateLimitBurst: 10 });
    const sock = await connect(s.url);
    const results = await Promise.all(Array.from({ length: 30 }, () => request(sock, 'leave', {})));
    const codes = results.map(code);
    const served = codes.filter((c) => c === 'NOT_JOINED').length;
    expect(served).toBeGreaterThanOrEqual(10);
    expect(served).toBeLessThanOrEqual(12);
    expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBe(30 - served);
    // Unknown events count against the bucket too.
    const bogus = await Promise.all(Array.from({ length: 5 }, () => rawRequest(sock, 'bogusEvent', [{}])));
    expect(bogus.map(code)).toContain('RATE_LIMITED');
    await new Promise((r) => setTimeout(r, 1100));
    expect(code(await request(sock, 'leave', {}))).toBe('NOT_JOINED');
    sock.disconnect();
  });
});

describe('concurrent first joins', () => {
  it('two simultaneous first joiners with different tokens: exactly one wins', async ({ server }) => {
    const roomId = newRoomId();
    const [s1, s2] = await Promise.all([connect(server.url), connect(server.url)]);
    const results = await Promise.all([
      request(s1, 'join', { roomId, accessToken: newToken() }),
      request(s2, 'join', { roomId, accessToken: newToken() }),
    ]);
    expect(results.map(code).sort()).toEqual([null, 'UNAUTHORIZED'].sort());
    expect(server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    expect(server.sfu.stats().rooms).toBeGreaterThanOrEqual(1);
    s1.disconnect();
    s2.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });
});

describe('per-peer limits', () => {
  it('a peer cannot create more than 8 transports', async ({ server }) => {
    const roomId = newRoomId();
    const s = await connect(server.url);
    await ok(s, 'join', { roomId, accessToken: newToken() });
    for (let i = 0; i < 8; i++) await ok(s, 'createTransport', { direction: i % 2 ? 'send' : 'recv' });
    const res = await request(s, 'createTransport', { direction: 'send' });
    expect(code(res)).toBe('BAD_REQUEST');
    expect(server.sfu.getRoom(roomId)!.peers()[0]!.transportCount).toBe(8);
    s.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });
});
