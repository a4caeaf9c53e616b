/**
 * Worker death: two rooms on two different workers (WORKERS=2); SIGKILL one worker process. That
 * room's peers get `rejoin` and lose their server state, the other room keeps working, and the pool
 * is back to two workers. The peers of the lost room can join again (on a live worker).
 */
import { describe, expect } from 'vitest';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  joinWithTransports,
  newRoomId,
  newToken,
  next,
  ok,
  opusRtpParameters,
  recorder,
  request,
  sleep,
  vp8SimulcastRtpParameters,
  waitFor,
} from './helpers.ts';

const it = serverTest({ workers: 2 });

describe('worker death', () => {
  it('only the rooms of the killed worker are told to rejoin; the pool recovers to 2 workers', async ({ server }) => {
    const tokenX = newToken();
    const tokenY = newToken();
    const roomX = newRoomId();
    const roomY = newRoomId();

    const x1 = await joinWithTransports(server.url, roomX, tokenX);
    const x2 = await joinWithTransports(server.url, roomX, tokenX);
    const y1 = await joinWithTransports(server.url, roomY, tokenY);
    const y2 = await joinWithTransports(server.url, roomY, tokenY);

    const pidX = server.sfu.getRoom(roomX)!.workerPid;
    const pidY = server.sfu.getRoom(roomY)!.workerPid;
    expect(pidX).not.toBe(pidY);
    expect(server.sfu.pool.workers.map((w) => w.pid).sort()).toEqual([pidX, pidY].sort());

    // Media in both rooms.
    const px = await ok(x1.socket, 'produce', { transportId: x1.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    await ok(x2.socket, 'consume', { transportId: x2.recvTransportId, producerId: px.producerId, rtpCapabilities: clientRtpCapabilities() });
    const py = await ok(y1.socket, 'produce', { transportId: y1.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const cy = await ok(y2.socket, 'consume', { transportId: y2.recvTransportId, producerId: py.producerId, rtpCapabilities: clientRtpCapabilities() });

    const yRec1 = recorder(y1.socket);
    const yRec2 = recorder(y2.socket);
    const x1Rejoin = next(x1.socket, 'rejoin');
    const x2Rejoin = next(x2.socket, 'rejoin');

    process.kill(pidX, 'SIGKILL');

    expect(await x1Rejoin).toEqual({ reason: 'worker-died' });
    expect(await x2Rejoin).toEqual({ reason: 'worker-died' });
    expect(server.sfu.getRoom(roomX)).toBeUndefined();

    // The lost peers' server state is gone: requests say UNAVAILABLE until they rejoin.
    const stale = await request(x1.socket, 'createTransport', { direction: 'send' });
    expect(stale.ok ? null : stale.error.code).toBe('UNAVAILABLE');

    // The pool replaces the dead worker.
    await waitFor(() => server.sfu.stats().workers === 2, 10_000, 'replacement worker');
    const pids = server.sfu.pool.workers.map((w) => w.pid);
    expect(pids).toContain(pidY);
    expect(pids).not.toContain(pidX);

    // Room Y is untouched and still works.
    await sleep(200);
    expect(yRec1.events.filter((e) => e.event === 'rejoin')).toEqual([]);
    expect(yRec2.events.filter((e) => e.event === 'rejoin')).toEqual([]);
    expect(server.sfu.getRoom(roomY)?.peerCount).toBe(2);
    await ok(y2.socket, 'resumeConsumer', { consumerId: cy.consumerId });
    const yv = await ok(y1.socket, 'produce', { transportId: y1.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    await ok(y2.socket, 'consume', { transportId: y2.recvTransportId, producerId: yv.producerId, rtpCapabilities: clientRtpCapabilities() });
    expect(server.sfu.stats()).toEqual({ workers: 2, routers: 1, transports: 4, producers: 2, consumers: 2, rooms: 1, peers: 2 });

    // The lost room's peers rejoin as new peers, on a live worker.
    const again1 = await ok(x1.socket, 'join', { roomId: roomX, accessToken: tokenX });
    const again2 = await ok(x2.socket, 'join', { roomId: roomX, accessToken: tokenX });
    expect(again1.peerId).not.toBe(x1.peerId);
    expect(again2.peers).toEqual([{ peerId: again1.peerId }]);
    expect(server.sfu.pool.workers.map((w) => w.pid)).toContain(server.sfu.getRoom(roomX)!.workerPid);
    await ok(x1.socket, 'createTransport', { direction: 'send' });

    for (const c of [x1, x2, y1, y2]) c.socket.disconnect();
    await waitFor(() => server.sfu.stats().rooms === 0, 5000, 'rooms closed');
    expect(server.sfu.stats()).toEqual({ workers: 2, routers: 0, transports: 0, producers: 0, consumers: 0, rooms: 0, peers: 0 });
  });
});
