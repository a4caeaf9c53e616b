/**
 * A room spread over three workers, through the real server (socket.io clients, real mediasoup): with
 * ROUTER_MAX_CONSUMERS=1 every member lands on its own worker, consumers of another worker's producer work
 * (piped; pause, resume and close reach them), the test-only tap sees every producer on its own router, and
 * SIGKILLing one worker sends `rejoin` only to the member on it: the others keep their peers, producers and
 * consumers, hear peerLeft / producerClosed / consumerClosed as when a member leaves, the room stays open, and
 * the lost member rejoins as a new peer. Everything is freed when all leave.
 * (RTP across the pipes: room-spread-pipes.test.ts; browsers: test/e2e/room-spread.test.ts.)
 */
import { describe, expect } from 'vitest';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  connect,
  dumpCounts,
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
  type JoinedClient,
} from './helpers.ts';

const it = serverTest({ workers: 3, routerMaxConsumers: 1 }, { tap: true });

const consume = (c: JoinedClient, producerId: string) =>
  ok(c.socket, 'consume', { transportId: c.recvTransportId, producerId, rtpCapabilities: clientRtpCapabilities() });
const mic = (c: JoinedClient) => ok(c.socket, 'produce', { transportId: c.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });

describe('a room across workers', () => {
  it('members on different workers consume each other; a worker SIGKILL affects only the member on it', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    const c = await joinWithTransports(server.url, roomId, token);
    const room = server.sfu.getRoom(roomId)!;

    // One router per member, each on its own worker; both transports of a member on its router.
    const where = [a, b, c].map((m) => room.placement(m.peerId)!);
    expect(new Set(where.map((w) => w.workerPid)).size).toBe(3);
    expect(room.routers.map((r) => r.id)).toEqual(where.map((w) => w.routerId));
    expect(room.router.id).toBe(where[0]!.routerId);
    for (const [i, m] of [a, b, c].entries()) {
      const dump = (await room.routers[i]!.dump()) as { transportIds: string[] };
      expect(dump.transportIds).toEqual(expect.arrayContaining([m.sendTransportId, m.recvTransportId]));
      expect(server.sfu.getPeer(roomId, m.peerId)!.routerId).toBe(where[i]!.routerId);
    }
    expect(server.sfu.stats()).toMatchObject({ workers: 3, routers: 3, rooms: 1, peers: 3 });

    // Everyone sends a mic, a also a camera; everyone consumes everyone.
    const pa = await mic(a);
    const pb = await mic(b);
    const pc = await mic(c);
    const va = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    // The tap consumes each producer on its own router (never a pipe producer).
    const tapped = server.tap!.producers().filter((p) => p.roomId === roomId);
    expect(tapped.map((p) => p.producerId).sort()).toEqual([pa.producerId, pb.producerId, pc.producerId, va.producerId].sort());

    const bOfA = await consume(b, pa.producerId);
    const bOfVa = await consume(b, va.producerId);
    await consume(c, pa.producerId);
    const aOfB = await consume(a, pb.producerId);
    await consume(c, pb.producerId);
    const aOfC = await consume(a, pc.producerId);
    const bOfC = await consume(b, pc.producerId);
    expect(bOfA).toMatchObject({ producerId: pa.producerId, peerId: a.peerId, kind: 'audio', source: 'mic', producerPaused: false });
    expect(bOfVa).toMatchObject({ producerId: va.producerId, kind: 'video', type: 'simulcast' });
    // Consumers live on the consumer's router: b's router holds a's producer through a pipe now.
    const bRouter = (await room.routers[1]!.dump()) as { mapProducerIdConsumerIds: { key: string; values: string[] }[] };
    const atB = new Map(bRouter.mapProducerIdConsumerIds.map((e) => [e.key, e.values]));
    expect(atB.get(pa.producerId)).toContain(bOfA.consumerId);
    expect(atB.get(va.producerId)).toContain(bOfVa.consumerId);

    // Pause and resume at a reach b's consumer through the pipe.
    const bPaused = next(b.socket, 'consumerPaused');
    await ok(a.socket, 'pauseProducer', { producerId: pa.producerId });
    expect(await bPaused).toEqual({ consumerId: bOfA.consumerId });
    const bResumed = next(b.socket, 'consumerResumed');
    await ok(a.socket, 'resumeProducer', { producerId: pa.producerId });
    expect(await bResumed).toEqual({ consumerId: bOfA.consumerId });
    // Closing a's camera closes b's consumer of it.
    const bVideoGone = next(b.socket, 'consumerClosed');
    await ok(a.socket, 'closeProducer', { producerId: va.producerId });
    expect(await bVideoGone).toEqual({ consumerId: bOfVa.consumerId });
    // A key-frame request reaches consumers on every router.
    const v2 = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    await consume(b, v2.producerId);
    await consume(c, v2.producerId);
    expect(await ok(b.socket, 'requestProducerKeyFrame', { producerId: v2.producerId })).toEqual({ requested: 2 });

    // SIGKILL c's worker.
    const aRec = recorder(a.socket);
    const bRec = recorder(b.socket);
    const cRejoin = next(c.socket, 'rejoin');
    const aLeft = next(a.socket, 'peerLeft');
    const bLeft = next(b.socket, 'peerLeft');
    const aClosedC = next(a.socket, 'consumerClosed');
    const bClosedC = next(b.socket, 'consumerClosed');
    const deadPid = where[2]!.workerPid;
    process.kill(deadPid, 'SIGKILL');

    expect(await cRejoin).toEqual({ reason: 'worker-died' });
    expect(await aLeft).toEqual({ peerId: c.peerId });
    expect(await bLeft).toEqual({ peerId: c.peerId });
    expect(await aClosedC).toEqual({ consumerId: aOfC.consumerId });
    expect(await bClosedC).toEqual({ consumerId: bOfC.consumerId });
    await sleep(300);
    for (const rec of [aRec, bRec]) {
      expect(rec.events.filter((e) => e.event === 'rejoin')).toEqual([]);
      expect(rec.events.filter((e) => e.event === 'producerClosed')).toEqual([{ event: 'producerClosed', payload: { peerId: c.peerId, producerId: pc.producerId } }]);
    }
    // The room stays, with a and b and their media.
    expect(server.sfu.getRoom(roomId)).toBe(room);
    expect(room.closed).toBe(false);
    expect(room.peers().map((p) => p.id).sort()).toEqual([a.peerId, b.peerId].sort());
    expect(room.routers.map((r) => r.id)).toEqual([where[0]!.routerId, where[1]!.routerId]);
    const peerA = server.sfu.getPeer(roomId, a.peerId)!;
    const peerB = server.sfu.getPeer(roomId, b.peerId)!;
    expect([peerA.transportCount, peerA.producerCount, peerA.consumerCount]).toEqual([2, 2, 1]);
    expect([peerB.transportCount, peerB.producerCount, peerB.consumerCount]).toEqual([2, 1, 2]);
    expect(peerB.consumersOf(pa.producerId).map((x) => x.id)).toEqual([bOfA.consumerId]);
    expect(peerA.consumersOf(pb.producerId).map((x) => x.id)).toEqual([aOfB.consumerId]);
    // Still working across the pipe: pause reaches b; b's requests work; c's stale ones say UNAVAILABLE.
    const bPausedAgain = next(b.socket, 'consumerPaused');
    await ok(a.socket, 'pauseProducer', { producerId: pa.producerId });
    expect(await bPausedAgain).toEqual({ consumerId: bOfA.consumerId });
    await ok(b.socket, 'resumeConsumer', { consumerId: bOfA.consumerId });
    const stale = await request(c.socket, 'createTransport', { direction: 'send' });
    expect(stale.ok ? null : stale.error.code).toBe('UNAVAILABLE');

    // c rejoins as a new peer (on a live worker), sees a and b and their producers, and consumes them.
    await waitFor(() => server.sfu.stats().workers === 3, 15_000, 'replacement worker');
    const aJoined = next(a.socket, 'peerJoined');
    const again = await ok(c.socket, 'join', { roomId, accessToken: token });
    expect(again.peerId).not.toBe(c.peerId);
    expect(again.peers.map((p) => p.peerId).sort()).toEqual([a.peerId, b.peerId].sort());
    expect(again.producers.map((p) => p.producerId).sort()).toEqual([pa.producerId, v2.producerId, pb.producerId].sort());
    expect(await aJoined).toEqual({ peerId: again.peerId });
    const cPid = room.placement(again.peerId)!.workerPid;
    expect(server.sfu.pool.workers.map((w) => w.pid)).toContain(cPid);
    expect(cPid).not.toBe(deadPid);
    const recv = await ok(c.socket, 'createTransport', { direction: 'recv' });
    await ok(c.socket, 'consume', { transportId: recv.id, producerId: pb.producerId, rtpCapabilities: clientRtpCapabilities() });

    for (const m of [a, b, c]) m.socket.disconnect();
    await waitFor(() => server.sfu.stats().rooms === 0, 5000, 'room closed');
    expect(server.sfu.stats()).toEqual({ workers: 3, routers: 0, transports: 0, producers: 0, consumers: 0, rooms: 0, peers: 0 });
    expect(await dumpCounts(server)).toEqual({ routers: 0, transports: 0, producers: 0, consumers: 0 });
  });

  it('a room whose members all lived on the dead worker closes with worker-died; a wrong token adds no router', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const x = await joinWithTransports(server.url, roomId, token);
    const room = server.sfu.getRoom(roomId)!;
    const routersBefore = server.sfu.stats().routers;
    const intruder = await connect(server.url);
    const refused = await request(intruder, 'join', { roomId, accessToken: newToken() });
    expect(refused.ok ? null : refused.error.code).toBe('UNAUTHORIZED');
    expect(room.routers).toHaveLength(1);
    expect(server.sfu.stats().routers).toBe(routersBefore);

    const closed = new Promise<{ reason: string }>((resolve) => room.once('closed', resolve));
    const xRejoin = next(x.socket, 'rejoin');
    process.kill(room.workerPid, 'SIGKILL');
    expect(await xRejoin).toEqual({ reason: 'worker-died' });
    expect((await closed).reason).toBe('worker-died');
    expect(server.sfu.getRoom(roomId)).toBeUndefined();
    for (const s of [x.socket, intruder]) s.disconnect();
    await waitFor(() => server.sfu.stats().workers === 3 && server.sfu.stats().rooms === 0, 15_000, 'recovered');
  });
});
