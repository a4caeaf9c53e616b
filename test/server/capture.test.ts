/**
 * The test-only socket.io capture (`startServer(config, { capture: true })`, signaling/src/capture.ts):
 * every inbound event (as received, unknown and malformed ones included), every outbound emit and
 * broadcast (once per receiving socket) and every ack, in order, as JSON strings.
 */
import { describe, expect } from 'vitest';
import type { CapturedMessage } from '../../signaling/src/capture.ts';
import { test as it } from './fixtures.ts';
import {
  connect,
  joinWithTransports,
  newRoomId,
  newToken,
  next,
  ok,
  opusRtpParameters,
  rawRequest,
  request,
  sleep,
  waitFor,
} from './helpers.ts';

describe('message capture', () => {
  it('records every message in and out, in order, as JSON strings', async ({ startServer }) => {
    const server = await startServer({ workers: 1 }, { capture: true });
    const capture = server.capture!;
    expect(capture).toBeDefined();
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const bJoined = next(a.socket, 'peerJoined');
    const b = await joinWithTransports(server.url, roomId, token);
    await bJoined;
    const c = await joinWithTransports(server.url, roomId, token);
    const aId = a.socket.id!;
    const bId = b.socket.id!;
    const cId = c.socket.id!;

    const produced = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    await waitFor(() => capture.parsed().filter((m) => m.event === 'newProducer').length === 2, 5000, 'newProducer to b and c');

    const text = 'hello Bob, this is Alice';
    const plainBlob = Buffer.from(text).toString('base64url');
    const bRelay = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { to: b.peerId, blob: plainBlob });
    await bRelay;
    const bAll = next(b.socket, 'relay');
    const cAll = next(c.socket, 'relay');
    await ok(a.socket, 'relay', { blob: 'YnJvYWRjYXN0' });
    await Promise.all([bAll, cAll]);
    // Unknown and malformed events, and an event without an ack.
    await rawRequest(a.socket, 'noSuchEvent', [{ x: 1 }, 2]);
    await rawRequest(a.socket, 'relay', [{ blob: 'bad+blob' }]);
    (a.socket.emit as (ev: string, ...args: unknown[]) => void)('pauseProducer', { producerId: produced.producerId });
    await sleep(100);
    b.socket.disconnect();
    await waitFor(() => capture.parsed().some((m) => m.dir === 'disconnect' && m.sid === bId), 5000, 'b disconnect');
    await waitFor(() => capture.parsed().some((m) => m.event === 'peerLeft' && m.sid === aId), 5000, 'peerLeft to a');

    const lines = capture.messages();
    expect(lines.every((l) => typeof l === 'string')).toBe(true);
    const msgs = lines.map((l) => JSON.parse(l) as CapturedMessage);
    expect(msgs.map((m) => m.n)).toEqual(msgs.map((_, i) => i));
    const of = (sid: string): CapturedMessage[] => msgs.filter((m) => m.sid === sid);

    // A's connection, in order: connect, join in, join ack, createTransport in/ack, …
    const aMsgs = of(aId);
    expect(aMsgs[0]).toMatchObject({ dir: 'connect' });
    expect(aMsgs[1]).toMatchObject({ dir: 'in', event: 'join', args: [{ roomId, accessToken: token }] });
    expect(aMsgs[1]!.peerId).toBeNull();
    expect(aMsgs[2]).toMatchObject({ dir: 'ack', event: 'join', peerId: a.peerId, args: [{ ok: true, data: { peerId: a.peerId, peers: [] } }] });
    expect(of(bId).filter((m) => m.dir === 'out' && m.event === 'relay').every((m) => m.peerId === b.peerId)).toBe(true);
    expect(aMsgs[3]).toMatchObject({ dir: 'in', event: 'createTransport', args: [{ direction: 'send' }] });
    expect(aMsgs[4]).toMatchObject({ dir: 'ack', event: 'createTransport' });
    // Every inbound request A made is there, as received (ack callback left out).
    const aIn = aMsgs.filter((m) => m.dir === 'in').map((m) => m.event);
    expect(aIn).toEqual([
      'join',
      'createTransport',
      'createTransport',
      'connectTransport',
      'connectTransport',
      'produce',
      'relay',
      'relay',
      'noSuchEvent',
      'relay',
      'pauseProducer',
    ]);
    expect(aMsgs.find((m) => m.event === 'noSuchEvent' && m.dir === 'in')!.args).toEqual([{ x: 1 }, 2]);
    expect(aMsgs.find((m) => m.event === 'noSuchEvent' && m.dir === 'ack')!.args).toEqual([{ ok: false, error: { code: 'BAD_REQUEST', message: 'unknown event' } }]);
    expect(aMsgs.filter((m) => m.dir === 'ack' && m.event === 'relay').map((m) => (m.args[0] as { ok: boolean }).ok)).toEqual([true, true, false]);
    // The ack-less pauseProducer has no ack entry.
    expect(aMsgs.filter((m) => m.dir === 'ack').length).toBe(aIn.length - 1);
    // Outbound: emits to one socket and broadcasts, once per receiver.
    expect(aMsgs.filter((m) => m.dir === 'out').map((m) => m.event)).toEqual(expect.arrayContaining(['peerJoined', 'peerJoined', 'peerLeft']));
    expect(of(bId).filter((m) => m.dir === 'out' && m.event === 'relay').map((m) => m.args)).toEqual([
      [{ from: a.peerId, blob: plainBlob }],
      [{ from: a.peerId, blob: 'YnJvYWRjYXN0' }],
    ]);
    expect(of(cId).filter((m) => m.dir === 'out' && m.event === 'relay').map((m) => m.args)).toEqual([[{ from: a.peerId, blob: 'YnJvYWRjYXN0' }]]);
    expect(of(cId).filter((m) => m.dir === 'out' && m.event === 'newProducer').map((m) => m.args[0])).toEqual([
      { peerId: a.peerId, producerId: produced.producerId, kind: 'audio', source: 'mic', paused: false },
    ]);
    expect(of(cId).some((m) => m.dir === 'out' && m.event === 'producerPaused')).toBe(true);
    expect(of(bId).at(-1)).toMatchObject({ dir: 'disconnect' });

    // relayBlobs() decodes every relayed blob, in and out, so a test can search the bytes: plaintext
    // sent in a blob is found (positive control), and nowhere in the JSON strings as such.
    const blobs = capture.relayBlobs();
    const inBlobs = blobs.filter((x) => x.dir === 'in').map((x) => x.blob.toString());
    expect(inBlobs).toHaveLength(3); // the malformed one too, as received
    expect(inBlobs.slice(0, 2)).toEqual([text, 'broadcast']);
    expect(blobs.filter((x) => x.dir === 'out').length).toBe(3);
    expect(blobs.some((x) => x.blob.toString().includes('Alice'))).toBe(true);
    expect(lines.join('\n')).not.toContain('Alice');

    capture.clear();
    expect(capture.messages()).toEqual([]);
    a.socket.disconnect();
    c.socket.disconnect();
  });

  it('is off by default and only turned on by the startServer option', async ({ startServer }) => {
    const s = await startServer({ workers: 1 });
    expect(s.capture).toBeUndefined();
    const sock = await connect(s.url);
    expect((await request(sock, 'leave', {})).ok).toBe(false);
    sock.disconnect();
  });
});
