/**
 * Full signaling + SFU lifecycle against real mediasoup workers and a real socket.io server:
 * join, transports, produce (Opus + simulcast VP8), consume, resume, layers, key frames, pause/resume
 * propagation, relay, close, leave, disconnect — with server-side object counts checked against both
 * `sfu.stats()` and the workers' own dumps.
 */
import { describe, expect } from 'vitest';
import { serverTest } from './fixtures.ts';
import {
  clientRtpCapabilities,
  connect,
  dumpCounts,
  h264RtpParameters,
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

const it = serverTest({ workers: 1 });

describe('room lifecycle', () => {
  it('join → transports → produce → consume → relay → leave/disconnect frees everything', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();

    const a = await joinWithTransports(server.url, roomId, token);
    expect(a.join.peers).toEqual([]);
    expect(a.join.producers).toEqual([]);
    expect(a.join.iceServers).toEqual([]);
    const codecs = (a.join.routerRtpCapabilities.codecs as { mimeType: string }[]).map((c) => c.mimeType.toLowerCase());
    expect(codecs).toContain('audio/opus');
    expect(codecs).toContain('video/vp8');
    expect(codecs).toContain('video/vp9');
    expect(codecs.filter((c) => c !== 'video/rtx').sort()).toEqual(['audio/opus', 'video/vp8', 'video/vp9']);
    const exts = (a.join.routerRtpCapabilities.headerExtensions as { uri: string }[]).map((h) => h.uri);
    expect(exts).toContain('urn:ietf:params:rtp-hdrext:ssrc-audio-level');

    const aPeerJoined = next(a.socket, 'peerJoined');
    const b = await joinWithTransports(server.url, roomId, token);
    expect((await aPeerJoined).peerId).toBe(b.peerId);
    expect(b.join.peers).toEqual([{ peerId: a.peerId }]);

    // A produces audio + simulcast video; B hears about both.
    const bNew = recorder(b.socket);
    const audio = await ok(a.socket, 'produce', {
      transportId: a.sendTransportId,
      kind: 'audio',
      rtpParameters: opusRtpParameters(),
      source: 'mic',
    });
    const video = await ok(a.socket, 'produce', {
      transportId: a.sendTransportId,
      kind: 'video',
      rtpParameters: vp8SimulcastRtpParameters(),
      source: 'camera',
    });
    await waitFor(() => bNew.events.filter((e) => e.event === 'newProducer').length === 2, 5000, 'newProducer x2');
    expect(bNew.events.filter((e) => e.event === 'newProducer').map((e) => e.payload)).toEqual([
      { peerId: a.peerId, producerId: audio.producerId, kind: 'audio', source: 'mic', paused: false },
      { peerId: a.peerId, producerId: video.producerId, kind: 'video', source: 'camera', paused: false },
    ]);

    // H.264 is not offered by the router.
    const h264 = await request(a.socket, 'produce', {
      transportId: a.sendTransportId,
      kind: 'video',
      rtpParameters: h264RtpParameters(),
      source: 'screen',
    });
    expect(h264.ok).toBe(false);
    if (!h264.ok) expect(h264.error.code).toBe('SFU_ERROR');

    // A third peer joining later sees A's producers in its join response.
    const c = await joinWithTransports(server.url, roomId, token);
    expect(c.join.peers.map((p) => p.peerId).sort()).toEqual([a.peerId, b.peerId].sort());
    expect(c.join.producers.map((p) => p.producerId).sort()).toEqual([audio.producerId, video.producerId].sort());

    // B consumes both.
    const caps = clientRtpCapabilities();
    const ca = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: caps });
    const cv = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: video.producerId, rtpCapabilities: caps });
    expect(ca).toMatchObject({ producerId: audio.producerId, peerId: a.peerId, kind: 'audio', source: 'mic', type: 'simple', producerPaused: false });
    expect(cv).toMatchObject({ producerId: video.producerId, peerId: a.peerId, kind: 'video', source: 'camera', type: 'simulcast', producerPaused: false });

    // Consumers start paused on the server; the client resumes them.
    const room = server.sfu.getRoom(roomId)!;
    const bPeer = room.getPeer(b.peerId)!;
    expect(bPeer.consumerCount).toBe(2);
    const routerDump = await room.router.dump();
    expect(routerDump.mapConsumerIdProducerId).toContainEqual({ key: cv.consumerId, value: video.producerId });
    await ok(b.socket, 'resumeConsumer', { consumerId: ca.consumerId });
    await ok(b.socket, 'resumeConsumer', { consumerId: cv.consumerId });
    await ok(b.socket, 'pauseConsumer', { consumerId: ca.consumerId });
    await ok(b.socket, 'resumeConsumer', { consumerId: ca.consumerId });
    await ok(b.socket, 'setPreferredLayers', { consumerId: cv.consumerId, spatialLayer: 1, temporalLayer: 1 });
    await ok(b.socket, 'setPreferredLayers', { consumerId: cv.consumerId, spatialLayer: 0 });
    await ok(b.socket, 'requestKeyFrame', { consumerId: cv.consumerId });
    await ok(b.socket, 'requestKeyFrame', { consumerId: ca.consumerId });
    await ok(b.socket, 'restartIce', { transportId: b.recvTransportId }).then((r) => {
      expect(typeof r.iceParameters.usernameFragment).toBe('string');
    });

    // A consumer the client no longer wants can be closed (and then consumed again).
    const extra = await ok(c.socket, 'consume', { transportId: c.recvTransportId, producerId: audio.producerId, rtpCapabilities: caps });
    expect(server.sfu.stats().consumers).toBe(3);
    await ok(c.socket, 'closeConsumer', { consumerId: extra.consumerId });
    expect(server.sfu.stats().consumers).toBe(2);
    const closedAgain = await request(c.socket, 'closeConsumer', { consumerId: extra.consumerId });
    expect(closedAgain.ok ? null : closedAgain.error.code).toBe('NOT_FOUND');

    // Counts: 3 peers × 2 transports, 2 producers, 2 consumers.
    expect(server.sfu.stats()).toEqual({ workers: 1, routers: 1, transports: 6, producers: 2, consumers: 2, rooms: 1, peers: 3 });
    expect(await dumpCounts(server)).toEqual({ routers: 1, transports: 6, producers: 2, consumers: 2 });

    // Producer pause/resume propagates: the room hears producerPaused, the consumer owner consumerPaused.
    const bPaused = next(b.socket, 'producerPaused');
    const bConsumerPaused = next(b.socket, 'consumerPaused');
    const cPaused = next(c.socket, 'producerPaused');
    await ok(a.socket, 'pauseProducer', { producerId: video.producerId });
    expect(await bPaused).toEqual({ peerId: a.peerId, producerId: video.producerId });
    expect(await cPaused).toEqual({ peerId: a.peerId, producerId: video.producerId });
    expect(await bConsumerPaused).toEqual({ consumerId: cv.consumerId });
    expect(room.getPeer(a.peerId)!.producerInfos().find((p) => p.producerId === video.producerId)?.paused).toBe(true);
    const bResumed = next(b.socket, 'producerResumed');
    const bConsumerResumed = next(b.socket, 'consumerResumed');
    await ok(a.socket, 'resumeProducer', { producerId: video.producerId });
    expect(await bResumed).toEqual({ peerId: a.peerId, producerId: video.producerId });
    expect(await bConsumerResumed).toEqual({ consumerId: cv.consumerId });

    // Relay to one peer and to everyone else; the sender never gets its own relay.
    const aRec = recorder(a.socket);
    const blobOne = 'b25lLXRvLW9uZQ_SECRET1';
    const blobAll = 'dG8tYWxs-SECRET2';
    const bRelay1 = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { to: b.peerId, blob: blobOne });
    expect(await bRelay1).toEqual({ from: a.peerId, blob: blobOne });
    const bRelay2 = next(b.socket, 'relay');
    const cRelay2 = next(c.socket, 'relay');
    await ok(a.socket, 'relay', { blob: blobAll });
    expect(await bRelay2).toEqual({ from: a.peerId, blob: blobAll });
    expect(await cRelay2).toEqual({ from: a.peerId, blob: blobAll });
    await sleep(100);
    expect(aRec.events.filter((e) => e.event === 'relay')).toEqual([]);
    const unknown = await request(a.socket, 'relay', { to: 'nobody-here', blob: 'eA' });
    expect(unknown.ok ? null : unknown.error.code).toBe('NOT_FOUND');
    // The server never logs blobs, tokens or payloads.
    const logText = server.logs.join('\n');
    expect(logText).not.toContain('SECRET1');
    expect(logText).not.toContain('SECRET2');
    expect(logText).not.toContain(token);
    expect(logText).not.toContain('fingerprints');

    // Closing a producer closes its consumers.
    const bProducerClosed = next(b.socket, 'producerClosed');
    const bConsumerClosed = next(b.socket, 'consumerClosed');
    await ok(a.socket, 'closeProducer', { producerId: audio.producerId });
    expect(await bProducerClosed).toEqual({ peerId: a.peerId, producerId: audio.producerId });
    expect(await bConsumerClosed).toEqual({ consumerId: ca.consumerId });
    await waitFor(() => bPeer.consumerCount === 1, 5000, 'consumer removed');
    const gone = await request(b.socket, 'resumeConsumer', { consumerId: ca.consumerId });
    expect(gone.ok ? null : gone.error.code).toBe('NOT_FOUND');

    // A leaves: B and C hear peerLeft (and producerClosed for A's video); B's video consumer closes.
    const bLeft = next(b.socket, 'peerLeft');
    const bVideoClosed = next(b.socket, 'consumerClosed');
    await ok(a.socket, 'leave', {});
    expect(await bLeft).toEqual({ peerId: a.peerId });
    expect(await bVideoClosed).toEqual({ consumerId: cv.consumerId });
    await waitFor(() => server.sfu.stats().consumers === 0, 5000, 'consumers freed');
    expect(server.sfu.stats()).toEqual({ workers: 1, routers: 1, transports: 4, producers: 0, consumers: 0, rooms: 1, peers: 2 });
    expect(await dumpCounts(server)).toEqual({ routers: 1, transports: 4, producers: 0, consumers: 0 });
    const notJoined = await request(a.socket, 'createTransport', { direction: 'send' });
    expect(notJoined.ok ? null : notJoined.error.code).toBe('NOT_JOINED');

    // A can join again as a new peer.
    const again = await ok(a.socket, 'join', { roomId, accessToken: token });
    expect(again.peerId).not.toBe(a.peerId);
    await ok(a.socket, 'leave', {});

    // B disconnects, then C leaves: the room closes and every object is gone.
    const cLeft = next(c.socket, 'peerLeft');
    b.socket.disconnect();
    expect((await cLeft).peerId).toBe(b.peerId);
    await ok(c.socket, 'leave', {});
    await waitFor(() => server.sfu.stats().rooms === 0, 5000, 'room closed');
    expect(server.sfu.stats()).toEqual({ workers: 1, routers: 0, transports: 0, producers: 0, consumers: 0, rooms: 0, peers: 0 });
    expect(await dumpCounts(server)).toEqual({ routers: 0, transports: 0, producers: 0, consumers: 0 });
    a.socket.disconnect();
    c.socket.disconnect();
  });

  it('disconnect without leave frees the peer and closes the empty room', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    expect(server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    a.socket.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
    await waitFor(() => server.sfu.stats().routers === 0, 5000, 'router closed');
    expect(await dumpCounts(server)).toEqual({ routers: 0, transports: 0, producers: 0, consumers: 0 });
  });

  it('pipelined requests run in order (join then createTransport without waiting)', async ({ server }) => {
    const socket = await connect(server.url);
    const roomId = newRoomId();
    const [join, transport] = await Promise.all([
      request(socket, 'join', { roomId, accessToken: newToken() }),
      request(socket, 'createTransport', { direction: 'recv' }),
    ]);
    expect(join.ok).toBe(true);
    expect(transport.ok).toBe(true);
    socket.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });

  it('consume with capabilities that cannot decode the producer → CANNOT_CONSUME', async ({ server }) => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(server.url, roomId, token);
    const b = await joinWithTransports(server.url, roomId, token);
    const video = await ok(a.socket, 'produce', {
      transportId: a.sendTransportId,
      kind: 'video',
      rtpParameters: vp8SimulcastRtpParameters(),
      source: 'camera',
    });
    const audioOnly = clientRtpCapabilities();
    audioOnly.codecs = (audioOnly.codecs as { kind: string }[]).filter((c) => c.kind === 'audio');
    const res = await request(b.socket, 'consume', { transportId: b.recvTransportId, producerId: video.producerId, rtpCapabilities: audioOnly });
    expect(res.ok ? null : res.error.code).toBe('CANNOT_CONSUME');
    // Consuming on a send transport is not allowed either.
    const wrongDir = await request(b.socket, 'consume', {
      transportId: b.sendTransportId,
      producerId: video.producerId,
      rtpCapabilities: clientRtpCapabilities(),
    });
    expect(wrongDir.ok ? null : wrongDir.error.code).toBe('NOT_FOUND');
    // Producing with a mismatched source/kind is a bad request.
    const bad = await request(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'mic' });
    expect(bad.ok ? null : bad.error.code).toBe('BAD_REQUEST');
    // Garbage RTP parameters are mediasoup's to reject: SFU_ERROR, no stack trace.
    const garbage = await request(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: { codecs: 'nope' }, source: 'mic' });
    expect(garbage.ok ? null : garbage.error.code).toBe('SFU_ERROR');
    if (!garbage.ok) expect(garbage.error.message).not.toMatch(/\n\s+at /);
    a.socket.disconnect();
    b.socket.disconnect();
    await waitFor(() => server.sfu.getRoom(roomId) === undefined, 5000, 'room closed');
  });
});

describe('AUDIO_LEVEL_EXT=off', () => {
  it('does not offer or forward the audio-level header extension', async ({ startServer }) => {
    const s = await startServer({ workers: 1, audioLevelExt: 'off' });
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(s.url, roomId, token);
    const exts = (a.join.routerRtpCapabilities.headerExtensions as { uri: string }[]).map((h) => h.uri);
    expect(exts).not.toContain('urn:ietf:params:rtp-hdrext:ssrc-audio-level');
    const b = await joinWithTransports(s.url, roomId, token);
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const consumer = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: clientRtpCapabilities() });
    const used = (consumer.rtpParameters.headerExtensions as { uri: string }[]).map((h) => h.uri);
    expect(used).not.toContain('urn:ietf:params:rtp-hdrext:ssrc-audio-level');
    a.socket.disconnect();
    b.socket.disconnect();
  });
});

describe('shutdown', () => {
  it('close() disconnects clients, frees every object, kills the workers, and is idempotent', async ({ startServer }) => {
    const s = await startServer({ workers: 2 });
    const pids = s.sfu.pool.workers.map((w) => w.pid);
    const a = await joinWithTransports(s.url, newRoomId(), newToken());
    await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const disconnected = new Promise<void>((resolve) => a.socket.once('disconnect', () => resolve()));
    await s.close();
    await disconnected;
    expect(s.sfu.closed).toBe(true);
    expect(s.sfu.stats()).toEqual({ workers: 0, routers: 0, transports: 0, producers: 0, consumers: 0, rooms: 0, peers: 0 });
    await waitFor(
      () =>
        pids.every((pid) => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        }),
      5000,
      'worker processes gone',
    );
    await s.close();
    expect(s.httpServer.listening).toBe(false);
  });
});
