/**
 * The client's socket edge (client/src/lib/signaling.ts `request`) against a real socket.io server
 * (no SFU): the ack's data, the server's error code, and the two local codes: TIMEOUT (no ack in
 * time, still connected) and DISCONNECTED (not connected, or the connection went away meanwhile).
 */
import { describe, expect, test } from 'vitest';
import { connectSocket, request, RequestError, type MeetSocket } from '../../client/src/lib/signaling.ts';
import { connected, newRoomId, newToken, startSocketServer } from './helpers.ts';

type Server = Awaited<ReturnType<typeof startSocketServer>>;

/** A bare server (`onJoin` answers `join`) and a connected client, both closed after the test. */
const it = test.extend('serve', async ({}, { onCleanup }) => {
  const started: { server: Server; client: MeetSocket }[] = [];
  onCleanup(async () => {
    for (const { server, client } of started) {
      client.disconnect();
      await server.close();
    }
  });
  return async (onJoin: (payload: unknown, ack: (res: unknown) => void) => void): Promise<MeetSocket> => {
    const server = await startSocketServer();
    server.io.on('connection', (socket) => socket.on('join', onJoin));
    const client = connectSocket(server.url);
    started.push({ server, client });
    await connected(client);
    return client;
  };
});

const join = { roomId: newRoomId(), accessToken: newToken() };

async function failure(p: Promise<unknown>): Promise<RequestError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RequestError);
  return error as RequestError;
}

describe('client request()', () => {
  it('resolves with the ack data; the payload arrives as sent', async ({ serve }) => {
    const got: unknown[] = [];
    const client = await serve((payload, ack) => {
      got.push(payload);
      ack({ ok: true, data: { peerId: 'p1' } });
    });
    expect(await request(client, 'join', join)).toEqual({ peerId: 'p1' });
    expect(got).toEqual([join]);
  });

  it("rejects with the server's code and message", async ({ serve }) => {
    const client = await serve((_payload, ack) => ack({ ok: false, error: { code: 'ROOM_FULL', message: 'room is full' } }));
    const error = await failure(request(client, 'join', join));
    expect([error.code, error.request, error.message]).toEqual(['ROOM_FULL', 'join', 'join: ROOM_FULL: room is full']);
  });

  it('TIMEOUT when no ack comes in time on a live connection', async ({ serve }) => {
    const client = await serve(() => undefined);
    const started = Date.now();
    const error = await failure(request(client, 'join', join, 200));
    expect(error.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(client.connected).toBe(true);
  });

  it('DISCONNECTED when the connection drops before the ack, and when it is down from the start', async ({ serve }) => {
    let drop = (): void => undefined;
    const client = await serve(() => drop());
    drop = () => client.io.engine.close();
    const started = Date.now();
    const error = await failure(request(client, 'join', join, 5000));
    expect(error.code).toBe('DISCONNECTED');
    expect(Date.now() - started).toBeLessThan(4000);
    client.disconnect();
    expect((await failure(request(client, 'join', join))).code).toBe('DISCONNECTED');
  });
});
