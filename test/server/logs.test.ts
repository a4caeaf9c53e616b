/**
 * What the server keeps and writes down: a whole session (join, transports, produce, consume, key frames,
 * relay, errors, leave, disconnect, shutdown) logged at debug level through `logSink`, then:
 * - no log line contains the relayed text, the relay blob, the access token or any encoding of its hash;
 * - no log line contains the room id (it is in the invite link) or a peer id: only their per-process pseudonyms;
 * - no state we can reach (Sfu/Room/Peer snapshots, mediasoup dumps of workers, routers, transports,
 *   producers, consumers) contains the token or the relayed text; the room holds exactly sha256(token).
 * The token is the real one: HKDF-derived from a fresh invite secret by the client's own invite code.
 */
import { createHash } from 'node:crypto';
import { describe, expect } from 'vitest';
import { deriveInviteKeysSync, generateInvite } from '../../client/src/e2ee/invite.ts';
import { pseudonym } from '../../sfu/src/Logger.ts';
import { test as it } from './fixtures.ts';
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
  rawRequest,
  request,
  vp8SimulcastRtpParameters,
  waitFor,
} from './helpers.ts';

const MARKER_TEXT = 'Display name: Zebulon Quixotic-Marker 7f3a';
const CHAT_TEXT = 'chat: the vault code is 4711-marker';

function forms(bytesOrText: Buffer): string[] {
  return [bytesOrText.toString('hex'), bytesOrText.toString('base64'), bytesOrText.toString('base64url')];
}

describe.each([
  { label: 'production options', opts: {} },
  { label: 'with the test-only tap and capture on', opts: { tap: true, capture: true } },
])('logs and server state hold no secrets ($label)', ({ opts }) => {
  it('a whole session: no log line and no reachable structure contains the relay text, the blob, the token or its hash', async ({ startServer }) => {
    const lines: string[] = [];
    const server = await startServer({ workers: 1, logLevel: 'debug' }, { logSink: (l) => lines.push(l), ...opts });
    const roomId = newRoomId();
    const { secret } = generateInvite();
    const { accessToken: token } = deriveInviteKeysSync(secret, roomId);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const tokenHash = createHash('sha256').update(token, 'utf8').digest();
    const blob = Buffer.from(MARKER_TEXT, 'utf8').toString('base64url');
    const chatBlob = Buffer.from(CHAT_TEXT, 'utf8').toString('base64url');
    let stateTexts: string[] = [];
    // Only a 43-char base64url token is accepted at all.
    const s0 = await connect(server.url);
    expect(code(await request(s0, 'join', { roomId, accessToken: token.slice(0, 42) }))).toBe('BAD_REQUEST');
    expect(code(await request(s0, 'join', { roomId, accessToken: `${token}A` }))).toBe('BAD_REQUEST');
    s0.disconnect();

    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    // A wrong (well-formed) token is refused.
    const intruder = await connect(server.url);
    expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');

    const video = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const cv = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: video.producerId, rtpCapabilities: clientRtpCapabilities() });
    await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: clientRtpCapabilities() });
    await ok(b.socket, 'resumeConsumer', { consumerId: cv.consumerId });
    await ok(b.socket, 'requestKeyFrame', { consumerId: cv.consumerId });
    await ok(a.socket, 'requestProducerKeyFrame', { producerId: video.producerId });

    // Relay: targeted and broadcast; also rejected relays that carry the text.
    const got = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { to: b.peerId, blob });
    expect(await got).toEqual({ from: a.peerId, blob });
    const got2 = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { blob: chatBlob });
    expect((await got2).blob).toBe(chatBlob);
    expect(code(await request(a.socket, 'relay', { to: 'nobody', blob }))).toBe('NOT_FOUND');
    expect(code(await request(a.socket, 'relay', { blob: `${blob}+${token}` }))).toBe('BAD_REQUEST');
    expect(code(await rawRequest(a.socket, 'relay', [{ blob, extra: MARKER_TEXT }]))).toBe('BAD_REQUEST');
    expect(code(await rawRequest(a.socket, `evil-${token}`, [{ blob }]))).toBe('BAD_REQUEST');
    expect(code(await rawRequest(a.socket, 'join', [{ roomId, accessToken: token }]))).toBe('ALREADY_JOINED');

    // Everything we can reach of the server's state while the session is live.
    const room = server.sfu.getRoom(roomId)!;
    expect((room.toJSON() as { tokenSha256: string }).tokenSha256).toBe(tokenHash.toString('hex'));
    stateTexts = [
      JSON.stringify(server.sfu),
      JSON.stringify(server.sfu.rooms()),
      JSON.stringify(room.peers()),
      JSON.stringify(room.peers().map((p) => p.producerInfos())),
      JSON.stringify(server.sfu.stats()),
      JSON.stringify(room.rtpCapabilities),
      JSON.stringify(await server.sfu.dumpWorkers()),
      JSON.stringify(await server.sfu.dumpRooms()),
      JSON.stringify(await room.router.dump()),
      JSON.stringify(server.config),
      JSON.stringify(Object.getOwnPropertyNames(room)),
      JSON.stringify([...server.io.sockets.sockets.values()].map((s) => ({ data: s.data, rooms: [...s.rooms] }))),
    ];
    // The snapshots are real: they do show the peers, producers and consumers.
    const sfuJson = stateTexts[0]!;
    for (const id of [a.peerId, b.peerId, video.producerId, audio.producerId, cv.consumerId]) expect(sfuJson).toContain(id);
    expect(JSON.stringify(await server.sfu.dumpRooms())).toContain(cv.consumerId);

    const left = next(b.socket, 'peerLeft');
    await ok(a.socket, 'leave', {});
    await left;
    a.socket.disconnect();
    b.socket.disconnect();
    intruder.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 10_000, 'room closed');
    await server.close();

    // The whole session is in the collected lines, from start to shutdown.
    const logs = lines.map((l) => JSON.parse(l) as { msg: string; level: string });
    const msgs = logs.map((l) => l.msg);
    for (const m of ['listening', 'room created', 'joined', 'request failed', 'left', 'room closed', 'stopped']) expect(msgs).toContain(m);
    expect(logs.some((l) => l.level === 'debug')).toBe(true);

    const secrets = [
      MARKER_TEXT,
      'Zebulon',
      CHAT_TEXT,
      'vault code',
      blob,
      chatBlob,
      token,
      token.slice(0, 16),
      ...forms(tokenHash),
      ...forms(Buffer.from(MARKER_TEXT)),
      Buffer.from(secret).toString('base64url'),
    ];
    const logText = lines.join('\n');
    for (const s of secrets) expect(logText, `log contains ${s}`).not.toContain(s);
    // Nothing in the log names the room (its id is in the invite link) or a member: ids appear only as
    // this process's keyed pseudonyms, which the log does carry (so lines of one session correlate).
    const ids = [roomId, a.peerId, b.peerId];
    for (const id of ids) {
      expect(logText, `log contains id ${id}`).not.toContain(id);
      for (const f of forms(Buffer.from(id, 'base64url'))) expect(logText, `log contains ${f} (${id})`).not.toContain(f);
    }
    const byMsg = (m: string) => logs.filter((l) => l.msg === m) as unknown as Record<string, unknown>[];
    expect(byMsg('room created').map((l) => l.room)).toEqual([pseudonym('roomId', roomId)]);
    expect(byMsg('joined').map((l) => l.peer)).toEqual([pseudonym('peerId', a.peerId), pseudonym('peerId', b.peerId)]);
    expect(new Set(byMsg('joined').map((l) => l.room))).toEqual(new Set([pseudonym('roomId', roomId)]));
    for (const l of logs as unknown as Record<string, unknown>[]) {
      expect(l).not.toHaveProperty('roomId');
      expect(l).not.toHaveProperty('peerId');
    }
    const state = stateTexts.join('\n');
    for (const s of [MARKER_TEXT, 'Zebulon', CHAT_TEXT, blob, chatBlob, token, token.slice(0, 16), Buffer.from(secret).toString('base64url')]) {
      expect(state, `server state contains ${s}`).not.toContain(s);
    }
    // Of the token, the state has exactly its SHA-256 (hex, in Room.toJSON) and nothing else.
    expect(state).toContain(tokenHash.toString('hex'));
    expect(state).not.toContain(tokenHash.toString('base64url'));
  });
});
