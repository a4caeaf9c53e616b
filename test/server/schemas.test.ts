/**
 * Every client→server event rejects wrong shapes, extra keys, extra arguments and oversized payloads
 * with BAD_REQUEST / TOO_LARGE — and such a request changes nothing on the server and notifies nobody.
 */
import { describe, expect } from 'vitest';
import { MAX_PAYLOAD_BYTES, schemas, type Requests } from '../../signaling/src/protocol.ts';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  connect,
  fakeDtlsParameters,
  joinWithTransports,
  newRoomId,
  newToken,
  ok,
  opusRtpParameters,
  rawRequest,
  recorder,
  request,
  sleep,
  vp8SimulcastRtpParameters,
  waitFor,
  type JoinedClient,
  type TestServer,
} from './helpers.ts';

/** The room every test of the file works in: A (producing video and consuming it) and B. */
interface Room {
  roomId: string;
  a: JoinedClient;
  b: JoinedClient;
  producerId: string;
  consumerId: string;
}

const it = serverTest({ workers: 1, rateLimitPerSec: 10_000, rateLimitBurst: 10_000 }).extend(
  'room',
  { scope: 'file' },
  async ({ server }, { onCleanup }): Promise<Room> => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    onCleanup(() => {
      a.socket.disconnect();
      b.socket.disconnect();
    });
    const producerId = (await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' })).producerId;
    const consumerId = (await ok(a.socket, 'consume', { transportId: a.recvTransportId, producerId, rtpCapabilities: clientRtpCapabilities() })).consumerId;
    return { roomId, a, b, producerId, consumerId };
  },
);

type Valid = { [K in keyof Requests]: (r: Room) => Requests[K] };
const valid: Valid = {
  join: () => ({ roomId: newRoomId(), accessToken: newToken() }),
  leave: () => ({}),
  createTransport: () => ({ direction: 'send' }),
  connectTransport: ({ a }) => ({ transportId: a.sendTransportId, dtlsParameters: fakeDtlsParameters() }),
  restartIce: ({ a }) => ({ transportId: a.sendTransportId }),
  produce: ({ a }) => ({ transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' }),
  closeProducer: ({ producerId }) => ({ producerId }),
  pauseProducer: ({ producerId }) => ({ producerId }),
  resumeProducer: ({ producerId }) => ({ producerId }),
  consume: ({ a, producerId }) => ({ transportId: a.recvTransportId, producerId, rtpCapabilities: clientRtpCapabilities() }),
  resumeConsumer: ({ consumerId }) => ({ consumerId }),
  pauseConsumer: ({ consumerId }) => ({ consumerId }),
  setPreferredLayers: ({ consumerId }) => ({ consumerId, spatialLayer: 1, temporalLayer: 1 }),
  requestKeyFrame: ({ consumerId }) => ({ consumerId }),
  closeConsumer: ({ consumerId }) => ({ consumerId }),
  requestProducerKeyFrame: ({ producerId }) => ({ producerId }),
  relay: ({ b }) => ({ to: b.peerId, blob: 'aGVsbG8' }),
};

const badIds = ['', 'has space', 'semi;colon', '../etc', 'x'.repeat(65), 42, null, true, {}, []];
/** Per event: field → wrong values (besides removal of required fields). */
const badFields: { [K in keyof Requests]: Partial<Record<keyof Requests[K], unknown[]>> } = {
  join: {
    roomId: ['short', 'a'.repeat(21), 'a'.repeat(23), `${'a'.repeat(21)}+`, 22, null],
    accessToken: ['x', 'a'.repeat(42), 'a'.repeat(44), `${'a'.repeat(42)}/`, 1, null],
  },
  leave: {},
  createTransport: { direction: ['both', 'SEND', '', 1, null] },
  connectTransport: { transportId: badIds, dtlsParameters: ['x', 1, null, [], [1, 2]] },
  restartIce: { transportId: badIds },
  produce: {
    transportId: badIds,
    kind: ['data', 'AUDIO', 1, null],
    rtpParameters: ['x', 1, null, []],
    source: ['speaker', 'Mic', '', 1, null],
  },
  closeProducer: { producerId: badIds },
  pauseProducer: { producerId: badIds },
  resumeProducer: { producerId: badIds },
  consume: { transportId: badIds, producerId: badIds, rtpCapabilities: ['x', 1, null, []] },
  resumeConsumer: { consumerId: badIds },
  pauseConsumer: { consumerId: badIds },
  setPreferredLayers: {
    consumerId: badIds,
    spatialLayer: [3, -1, 1.5, '1', null, Number.NaN],
    temporalLayer: [3, -1, 0.5, '0', null],
  },
  requestKeyFrame: { consumerId: badIds },
  closeConsumer: { consumerId: badIds },
  requestProducerKeyFrame: { producerId: badIds },
  relay: { to: badIds, blob: ['has+plus', 'has/slash', 'pad==', 'x'.repeat(65_537), 1, null] },
};
const optional = new Set(['temporalLayer', 'to']);

function snapshot(server: TestServer, roomId: string): unknown {
  const room = server.sfu.getRoom(roomId)!;
  return {
    stats: server.sfu.stats(),
    peers: room.peers().map((p) => ({ id: p.id, producers: p.producerInfos() })),
  };
}

const events = Object.keys(schemas) as (keyof Requests)[];

describe('schema validation', () => {
  it('covers every event of the protocol', () => {
    expect(Object.keys(valid).sort()).toEqual([...events].sort());
    expect(Object.keys(badFields).sort()).toEqual([...events].sort());
  });

  for (const event of events) {
    it(`${event}: rejects malformed payloads with BAD_REQUEST/TOO_LARGE and changes nothing`, async ({ server, room }) => {
      const { a, b, roomId } = room;
      const before = snapshot(server, roomId);
      const bRec = recorder(b.socket);
      const cases: { label: string; args: unknown[]; code: 'BAD_REQUEST' | 'TOO_LARGE' }[] = [];
      const base = valid[event](room) as Record<string, unknown>;
      for (const wrong of [null, 42, 'str', [], true, [base]]) cases.push({ label: `payload ${JSON.stringify(wrong)}`, args: [wrong], code: 'BAD_REQUEST' });
      cases.push({ label: 'no payload', args: [], code: 'BAD_REQUEST' });
      cases.push({ label: 'two payloads', args: [base, base], code: 'BAD_REQUEST' });
      cases.push({ label: 'extra key', args: [{ ...base, extra: 1 }], code: 'BAD_REQUEST' });
      cases.push({ label: '__proto__ key', args: [JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(base).slice(1, -1) || '"y": 1'}}`)], code: 'BAD_REQUEST' });
      cases.push({ label: 'oversized', args: [{ ...base, pad: 'x'.repeat(MAX_PAYLOAD_BYTES) }], code: 'TOO_LARGE' });
      for (const [field, wrongs] of Object.entries(badFields[event] as Record<string, unknown[]>)) {
        if (!optional.has(field)) {
          const { [field]: _drop, ...rest } = base;
          cases.push({ label: `missing ${field}`, args: [rest], code: 'BAD_REQUEST' });
        }
        for (const w of wrongs) cases.push({ label: `${field}=${JSON.stringify(w)?.slice(0, 30)}`, args: [{ ...base, [field]: w }], code: 'BAD_REQUEST' });
      }
      for (const c of cases) {
        const res = await rawRequest(a.socket, event, c.args);
        expect(res.ok, `${event} ${c.label}`).toBe(false);
        if (!res.ok) {
          expect(res.error.code, `${event} ${c.label}: ${res.error.message}`).toBe(c.code);
          expect(typeof res.error.message).toBe('string');
          expect(res.error.message).not.toMatch(/\n\s+at /);
        }
      }
      await sleep(50);
      expect(snapshot(server, roomId)).toEqual(before);
      expect(bRec.events).toEqual([]);
    });
  }

  it('BAD_REQUEST carries the zod message', async ({ room: { a } }) => {
    const res = await request(a.socket, 'join', { roomId: 'nope', accessToken: newToken() });
    expect(res.ok ? '' : res.error.message).toContain('roomId must be 22 base64url chars');
    const extra = await rawRequest(a.socket, 'leave', [{ sneaky: true }]);
    expect(extra.ok ? '' : extra.error.message).toMatch(/sneaky/);
  });

  it('unknown events get BAD_REQUEST; events without an ack are tolerated', async ({ server, room: { a, roomId, producerId } }) => {
    const res = await rawRequest(a.socket, 'dropDatabase', [{}]);
    expect(res.ok ? null : res.error.code).toBe('BAD_REQUEST');
    const before = snapshot(server, roomId);
    const emit = a.socket.emit as (ev: string, ...args: unknown[]) => void;
    emit.call(a.socket, 'pauseProducer', { producerId });
    emit.call(a.socket, 'leave');
    emit.call(a.socket, 'relay', { blob: 'bad+blob' });
    emit.call(a.socket, 'whatever', 1, 2, 3);
    await sleep(100);
    // The valid ack-less pause did happen; nothing else changed, and the socket still works.
    expect(server.sfu.getRoom(roomId)!.getPeer(a.peerId)!.producerInfos()[0]?.paused).toBe(true);
    await ok(a.socket, 'resumeProducer', { producerId });
    expect(snapshot(server, roomId)).toEqual(before);
  });

  it('a message far beyond the limit drops only that connection', async ({ server, room: { a, roomId } }) => {
    const c = await connect(server.url);
    const closed = new Promise<void>((resolve) => c.once('disconnect', () => resolve()));
    const emit = c.emit as (ev: string, ...args: unknown[]) => void;
    emit.call(c, 'relay', { blob: 'x'.repeat(4 * MAX_PAYLOAD_BYTES) }, () => undefined);
    await closed;
    await ok(a.socket, 'restartIce', { transportId: a.sendTransportId });
    await waitFor(() => server.sfu.getRoom(roomId)?.peerCount === 2, 1000, 'room intact');
  });
});
