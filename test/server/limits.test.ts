/**
 * Less metadata, bounded work (issue 13 §8), against a real server (socket.io + mediasoup):
 * - relay fan-out per room is a byte token bucket on what the server SENDS (blob × recipients): over it the relay
 *   gets RATE_LIMITED and nothing is delivered; one member flooding a room gets at most burst + rate·t out of it;
 * - open sockets and rooms joined per client address are capped (a refused join creates no room);
 * - behind a proxy (TRUST_PROXY) the right-most X-Forwarded-For entry is the address, and only then;
 * - client addresses never reach the logs;
 * - HIDE_VOICE_ACTIVITY: the join answer says so and hands out Opus parameters for constant-size audio, without the
 *   audio-level extension.
 */
import { io as ioClient } from 'socket.io-client';
import { describe, expect } from 'vitest';
import { addressKey } from '../../signaling/src/limits.ts';
import { test as it } from './fixtures.ts';
import {
  clientRtpCapabilities,
  code,
  connect,
  connected,
  joinWithTransports,
  newRoomId,
  newToken,
  ok,
  opusRtpParameters,
  recorder,
  request,
  sleep,
  waitFor,
  type TestServer,
  type TestSocket,
} from './helpers.ts';

const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/** `n` sockets joined to one new room. */
async function room(server: TestServer, n: number): Promise<{ roomId: string; sockets: TestSocket[]; peerIds: string[] }> {
  const roomId = newRoomId();
  const token = newToken();
  const sockets: TestSocket[] = [];
  const peerIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = await connect(server.url);
    peerIds.push((await ok(s, 'join', { roomId, accessToken: token })).peerId);
    sockets.push(s);
  }
  return { roomId, sockets, peerIds };
}

const relays = (rec: ReturnType<typeof recorder>) => rec.events.filter((e) => e.event === 'relay');
const blob = (chars: number) => 'A'.repeat(chars);

/** A socket.io client that may fail to connect (resolves true/false instead of throwing). */
async function tryConnect(url: string, headers?: Record<string, string>): Promise<{ socket: TestSocket; connected: boolean }> {
  const socket: TestSocket = ioClient(url, { transports: ['websocket'], forceNew: true, reconnection: false, ...(headers ? { extraHeaders: headers } : {}) });
  const ok = await connected(socket).then(
    () => true,
    () => false,
  );
  return { socket, connected: ok };
}

describe('relay fan-out budget per room', () => {
  it('counts blob bytes × recipients; over the budget RATE_LIMITED and nothing is delivered; other rooms unaffected', async ({ startServer }) => {
    // 1 000 bytes/s refill: nothing noticeable refills while the test runs.
    const server = await startServer({ relayBytesPerSec: 1_000, relayBurstBytes: 65_536 });
    const { sockets, peerIds } = await room(server, 3);
    const [a, b, c] = sockets as [TestSocket, TestSocket, TestSocket];
    const recB = recorder(b);
    const recC = recorder(c);
    // 16 000 chars to two recipients = 32 000 bytes each time: two fit into 65 536, the third does not.
    expect((await request(a, 'relay', { blob: blob(16_000) })).ok).toBe(true);
    expect((await request(a, 'relay', { blob: blob(16_000) })).ok).toBe(true);
    const third = await request(a, 'relay', { blob: blob(16_000) });
    expect(code(third)).toBe('RATE_LIMITED');
    // The budget is the room's, not the sender's: another member is refused too.
    expect(code(await request(b, 'relay', { blob: blob(16_000) }))).toBe('RATE_LIMITED');
    // A unicast costs one recipient's worth and still fits (1 536 left).
    expect((await request(a, 'relay', { to: peerIds[1]!, blob: blob(1_000) })).ok).toBe(true);
    await sleep(300);
    expect(relays(recB).length).toBe(3);
    expect(relays(recC).length).toBe(2);

    const other = await room(server, 2);
    expect((await request(other.sockets[0]!, 'relay', { blob: blob(16_000) })).ok).toBe(true);
    for (const s of [...sockets, ...other.sockets]) s.disconnect();
  });

  it('one member flooding a room gets at most burst + rate × t out of the server', async ({ startServer }) => {
    const rate = 200_000;
    const burst = 300_000;
    const server = await startServer({ relayBytesPerSec: rate, relayBurstBytes: burst, rateLimitPerSec: 1000, rateLimitBurst: 1000 });
    const { sockets } = await room(server, 5);
    const [flooder, ...others] = sockets as [TestSocket, ...TestSocket[]];
    const recs = others.map((s) => recorder(s));
    const started = performance.now();
    const answers: (string | null)[] = [];
    // 30 000 chars to 4 recipients = 120 000 bytes per request; unbounded this would be 24 MB in 200 requests.
    while (performance.now() - started < 1500) answers.push(code(await request(flooder, 'relay', { blob: blob(30_000) })));
    const elapsed = (performance.now() - started) / 1000;
    await sleep(300);
    const delivered = recs.reduce((sum, r) => sum + relays(r).reduce((n, e) => n + (e.payload as { blob: string }).blob.length, 0), 0);
    expect(answers.filter((c) => c === null).length * 120_000).toBe(delivered);
    expect(answers.some((c) => c === 'RATE_LIMITED')).toBe(true);
    expect(answers.every((c) => c === null || c === 'RATE_LIMITED')).toBe(true);
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThanOrEqual(burst + rate * elapsed);
    for (const s of sockets) s.disconnect();
  });
});

describe('per client address', () => {
  it('at most MAX_SOCKETS_PER_ADDRESS open sockets; a closed one frees its place', async ({ startServer }) => {
    const server = await startServer({ maxSocketsPerAddress: 3 });
    const open = [await connect(server.url), await connect(server.url), await connect(server.url)];
    const fourth = await tryConnect(server.url);
    expect(fourth.connected).toBe(false);
    fourth.socket.close();
    open[0]!.disconnect();
    // The server counts engine connections: wait until it saw the close, then there is room for one more.
    await waitFor(async () => {
      const t = await tryConnect(server.url);
      if (t.connected) open.push(t.socket);
      else t.socket.close();
      return t.connected;
    }, 5000, 'a place after a disconnect');
    const again = await tryConnect(server.url);
    expect(again.connected).toBe(false);
    again.socket.close();
    for (const s of open) s.disconnect();
  });

  it('at most MAX_ROOMS_PER_ADDRESS rooms at once; a refused join creates no room; one room counts once', async ({ startServer }) => {
    const server = await startServer({ maxRoomsPerAddress: 2 });
    const [r1, r2, r3] = [newRoomId(), newRoomId(), newRoomId()];
    const token = newToken();
    const s = await Promise.all([0, 1, 2, 3].map(() => connect(server.url)));
    await ok(s[0]!, 'join', { roomId: r1, accessToken: token });
    await ok(s[1]!, 'join', { roomId: r2, accessToken: token });
    const refused = await request(s[2]!, 'join', { roomId: r3, accessToken: token });
    expect(code(refused)).toBe('RATE_LIMITED');
    expect(server.sfu.getRoom(r3)).toBeUndefined();
    // The refused socket is not in a room: it can join one this address already holds.
    await ok(s[2]!, 'join', { roomId: r1, accessToken: token });
    await ok(s[3]!, 'join', { roomId: r2, accessToken: token });
    // r1 is still held by s[2] after s[0] leaves; only when both members of r2 are gone is there room for r3.
    await ok(s[0]!, 'leave', {});
    expect(code(await request(s[0]!, 'join', { roomId: r3, accessToken: token }))).toBe('RATE_LIMITED');
    await ok(s[1]!, 'leave', {});
    s[3]!.disconnect();
    await waitFor(async () => (await request(s[0]!, 'join', { roomId: r3, accessToken: token })).ok, 5000, 'join r3 once r2 is released');
    expect(server.sfu.getRoom(r3)).toBeDefined();
    for (const x of s) x.disconnect();
  });

  it('TRUST_PROXY=on: the right-most X-Forwarded-For entry is the address; off: the header is ignored', async ({ startServer }) => {
    const proxied = await startServer({ maxSocketsPerAddress: 1, trustProxy: 'on' });
    const one = await tryConnect(proxied.url, { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' });
    const two = await tryConnect(proxied.url, { 'x-forwarded-for': '198.51.100.2' });
    const sameAsOne = await tryConnect(proxied.url, { 'x-forwarded-for': '203.0.113.77, 198.51.100.1' });
    expect([one.connected, two.connected, sameAsOne.connected]).toEqual([true, true, false]);
    // IPv6 clients count per /64.
    const v6a = await tryConnect(proxied.url, { 'x-forwarded-for': '2001:db8:1:2:aaaa::1' });
    const v6b = await tryConnect(proxied.url, { 'x-forwarded-for': '2001:db8:1:2:bbbb::2' });
    expect([v6a.connected, v6b.connected]).toEqual([true, false]);

    const direct = await startServer({ maxSocketsPerAddress: 1 });
    const d1 = await tryConnect(direct.url, { 'x-forwarded-for': '203.0.113.9' });
    const d2 = await tryConnect(direct.url, { 'x-forwarded-for': '198.51.100.2' });
    expect([d1.connected, d2.connected]).toEqual([true, false]);

    for (const t of [one, two, sameAsOne, v6a, v6b, d1, d2]) t.socket.close();
    // No client address in any log line, only that something was refused.
    for (const logs of [proxied.logs, direct.logs]) {
      const text = logs.join('\n');
      expect(text).toContain('too many from one client address');
      for (const ip of ['127.0.0.1', '::1', '203.0.113', '198.51.100', '2001:db8']) expect(text.includes(ip), ip).toBe(false);
    }
  });

  it('addresses are counted as IPv4, IPv4-mapped IPv6 as IPv4, other IPv6 per /64', () => {
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('::ffff:c000:201')).toBe('192.0.2.1');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(addressKey('2001:db8:1:2::1')).not.toBe(addressKey('2001:db8:1:3::1'));
    expect(addressKey('[2001:db8::1]')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});

describe('HIDE_VOICE_ACTIVITY', () => {
  const opusParams = (join: { routerRtpCapabilities: Record<string, unknown> }) =>
    (join.routerRtpCapabilities['codecs'] as { mimeType: string; parameters?: Record<string, unknown> }[]).find((c) => c.mimeType === 'audio/opus')!.parameters ?? {};
  const extUris = (join: { routerRtpCapabilities: Record<string, unknown> }) => (join.routerRtpCapabilities['headerExtensions'] as { uri: string }[]).map((h) => h.uri);

  it('on: the join answer says so, Opus at constant bitrate without DTX, no audio-level extension offered or forwarded', async ({ startServer }) => {
    const server = await startServer({ hideVoiceActivity: 'on' });
    expect(server.config.audioLevelExt).toBe(false);
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    expect(a.join.hideVoiceActivity).toBe(true);
    expect(opusParams(a.join)).toMatchObject({ cbr: 1, usedtx: 0 });
    expect(extUris(a.join)).not.toContain(AUDIO_LEVEL_URI);
    const b = await joinWithTransports(server.url, roomId, token);
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const consumer = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: clientRtpCapabilities() });
    expect((consumer.rtpParameters['headerExtensions'] as { uri: string }[]).map((h) => h.uri)).not.toContain(AUDIO_LEVEL_URI);
    a.socket.disconnect();
    b.socket.disconnect();
  });

  it('off (default): the join answer says so and the capabilities are the router\'s', async ({ startServer }) => {
    const server = await startServer();
    const a = await joinWithTransports(server.url, newRoomId(), newToken());
    expect(a.join.hideVoiceActivity).toBe(false);
    expect(opusParams(a.join)).not.toHaveProperty('cbr');
    expect(extUris(a.join)).toContain(AUDIO_LEVEL_URI);
    a.socket.disconnect();
  });
});
