/**
 * A room's routers on several workers (sfu/src/RoomRouters.ts) with real mediasoup workers and REAL RTP: Opus
 * packets we build go over UDP into a PlainTransport producer on one room router, through `reach()` (a
 * pipeToRouter pipe, made once per producer and router), out of a consumer on another worker's router, where we
 * count them. Pause, resume and close follow the source through the pipe. Placement by consumer capacity spreads
 * the peers over the workers. The loudest peer is picked across the routers' AudioLevelObservers. A SIGKILLed
 * worker takes only its router: its pipes close, RTP between the surviving routers keeps flowing, and closing
 * the rest leaves every worker empty.
 */
import * as dgram from 'node:dgram';
import type { types as ms } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '../../sfu/src/Logger.ts';
import { RoomRouters, type RoomRouter } from '../../sfu/src/RoomRouters.ts';
import { WorkerPool } from '../../sfu/src/WorkerPool.ts';
import { newRoomId, sleep, waitFor } from './helpers.ts';

const OPUS_PT = 111;
const LEVEL_EXT = 10;

/** An Opus RTP packet with an ssrc-audio-level extension (`level` = -dBov: 0 loud … 127 silent). */
function opusPacket(ssrc: number, seq: number, level: number): Buffer {
  const b = Buffer.alloc(12 + 8 + 3);
  b[0] = 0x90;
  b[1] = OPUS_PT;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 960) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  b.writeUInt16BE(0xbede, 12);
  b.writeUInt16BE(1, 14);
  b[16] = LEVEL_EXT << 4;
  b[17] = 0x80 | level;
  b[20] = 0xf8;
  b[21] = 0xff;
  b[22] = 0xfe;
  return b;
}

/** A sender: a PlainTransport producer on `entry`'s router fed Opus every 20 ms from a UDP socket. */
async function audioSender(entry: RoomRouter, peerId: string, ssrc: number): Promise<{ producer: ms.Producer; level: number; stop(): void }> {
  const plain = await entry.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
  const producer = await plain.produce({
    kind: 'audio',
    rtpParameters: {
      codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PT, clockRate: 48000, channels: 2 }],
      headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: LEVEL_EXT }],
      encodings: [{ ssrc }],
    },
    appData: { peerId, source: 'mic' },
  });
  const udp = dgram.createSocket('udp4');
  let seq = 1;
  const sender = { producer, level: 127, stop: (): void => undefined };
  const timer = setInterval(() => udp.send(opusPacket(ssrc, seq++, sender.level), plain.tuple.localPort, '127.0.0.1'), 20);
  let stopped = false;
  sender.stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    udp.close();
    plain.close();
  };
  return sender;
}

/** A consumer of `producerId` on `entry`'s router (a DirectTransport), counting the RTP packets it gets. */
async function counter(entry: RoomRouter, producerId: string): Promise<{ consumer: ms.Consumer; packets: () => number }> {
  const direct = await entry.router.createDirectTransport();
  const consumer = await direct.consume({ producerId, rtpCapabilities: entry.router.rtpCapabilities, paused: false });
  let n = 0;
  consumer.on('rtp', () => void n++);
  return { consumer, packets: () => n };
}

/** Packets `c` gets within `ms`. */
async function growth(c: { packets: () => number }, ms = 600): Promise<number> {
  const before = c.packets();
  await sleep(ms);
  return c.packets() - before;
}

async function emptyWorkers(pool: WorkerPool): Promise<boolean> {
  const dumps = await Promise.all(pool.workers.map((w) => w.dump()));
  return dumps.every((d) => d.routerIds.length === 0);
}

describe('room routers across workers (real RTP through pipes)', () => {
  let pool: WorkerPool;
  const senders: { stop(): void }[] = [];

  beforeAll(async () => {
    pool = await WorkerPool.create({ size: 3, listen: { mode: 'range', ip: '127.0.0.1', minPort: 40000, maxPort: 49999 }, logger: new Logger('silent') });
  });
  afterAll(() => {
    for (const s of senders) s.stop();
    pool.close();
  });

  it('places peers on different workers by consumer capacity; RTP crosses the pipe; pause, resume and close follow the source', async () => {
    const routers = await RoomRouters.create({ roomId: newRoomId(), pool, maxConsumers: 1, audioLevel: undefined, logger: new Logger('silent') });
    try {
      const a = await routers.place('a', 0);
      expect(a).toBe(routers.first);
      // b adds 2 × (1 peer in the room + 0 on a's router) = 2 consumers > 1: a router on another worker.
      const b = await routers.place('b', 1);
      const c = await routers.place('c', 2);
      expect(new Set([a.worker, b.worker, c.worker]).size).toBe(3);
      expect(routers.all).toEqual([a, b, c]);
      // Every worker hosts one of the room's routers now: the next peer shares the least-loaded one.
      const d = await routers.place('d', 3);
      expect([a, b, c]).toContain(d);
      expect(routers.all).toHaveLength(3);
      expect(routers.of('d')).toBe(d);

      const sender = await audioSender(a, 'a', 0x11110001);
      senders.push(sender);
      sender.level = 20;
      const pipes: ms.Transport[] = [];
      b.router.observer.on('newtransport', (t: ms.Transport) => void pipes.push(t));
      // One pipe per (producer, router): concurrent and repeated reach() calls share it.
      await Promise.all([routers.reach(sender.producer.id, a, b), routers.reach(sender.producer.id, a, b)]);
      await routers.reach(sender.producer.id, a, b);
      await routers.reach(sender.producer.id, a, a); // same router: nothing to do
      const bDump = (await b.router.dump()) as { transportIds: string[]; mapProducerIdConsumerIds: { key: string }[] };
      expect(bDump.transportIds).toHaveLength(1); // the pipe transport, with NACK/RTX
      expect(pipes.map((t) => t.type)).toEqual(['pipe']);
      expect(((await pipes[0]!.dump()) as { rtx: boolean }).rtx).toBe(true);
      expect(bDump.mapProducerIdConsumerIds.map((e) => e.key)).toEqual([sender.producer.id]); // the pipe producer keeps the id

      const atB = await counter(b, sender.producer.id);
      await waitFor(() => atB.packets() >= 20, 10_000, 'RTP through the pipe');
      // Measured load: the pipe consumer counts on a's router, our consumer on b's.
      expect(pool.routerConsumers(a.router)).toBe(1);
      expect(pool.routerConsumers(b.router)).toBe(1);
      expect(pool.workerLoad(b.worker)).toBeGreaterThanOrEqual(1);
      expect(await growth(atB)).toBeGreaterThan(10);

      // Pause at the source: the consumer on b hears of it and gets nothing; resume: media again.
      const paused = new Promise<void>((resolve) => atB.consumer.once('producerpause', resolve));
      await sender.producer.pause();
      await paused;
      expect(atB.consumer.producerPaused).toBe(true);
      await sleep(200);
      expect(await growth(atB, 500)).toBe(0);
      const resumed = new Promise<void>((resolve) => atB.consumer.once('producerresume', resolve));
      await sender.producer.resume();
      await resumed;
      await waitFor(async () => (await growth(atB, 300)) > 5, 10_000, 'RTP after resume');

      // Close at the source: the pipe producer closes, so does the consumer on b; the pipe can be made again.
      const closed = new Promise<void>((resolve) => atB.consumer.once('producerclose', resolve));
      sender.producer.close();
      await closed;
      await waitFor(async () => ((await b.router.dump()) as { mapProducerIdConsumerIds: unknown[] }).mapProducerIdConsumerIds.length === 0, 5000, 'pipe producer gone');
      await expect(routers.reach(sender.producer.id, a, b)).rejects.toThrow();

      // A peer leaving empties its router: closed, as long as the room keeps another one.
      routers.release('d');
      routers.release('c');
      expect(c.router.closed).toBe(true);
      expect(routers.all).not.toContain(c);
    } finally {
      routers.close();
    }
    await waitFor(() => emptyWorkers(pool), 5000, 'every router closed');
  });

  it('the loudest peer across the routers is the speaker', async () => {
    const routers = await RoomRouters.create({
      roomId: newRoomId(),
      pool,
      maxConsumers: 1,
      audioLevel: { threshold: -70, interval: 300 },
      logger: new Logger('silent'),
    });
    const speakers: (string | null)[] = [];
    routers.on('speaker', (peerId) => void (speakers.at(-1) === peerId || speakers.push(peerId)));
    try {
      const a = await routers.place('a', 0);
      const b = await routers.place('b', 1);
      expect(a.worker).not.toBe(b.worker);
      const sa = await audioSender(a, 'a', 0x22220001);
      const sb = await audioSender(b, 'b', 0x22220002);
      senders.push(sa, sb);
      // Piped both ways, as when a and b consume each other: the pipe producers must not feed the observers.
      await routers.reach(sa.producer.id, a, b);
      await routers.reach(sb.producer.id, b, a);
      sb.level = 30;
      await waitFor(() => speakers.at(-1) === 'b', 10_000, 'b speaking');
      sa.level = 5; // louder (-5 dBov) than b (-30 dBov)
      await waitFor(() => speakers.at(-1) === 'a', 10_000, 'a louder');
      sb.level = 127; // b quiet first: a stays the speaker
      await sleep(1000);
      sa.level = 127;
      await waitFor(() => speakers.at(-1) === null, 10_000, 'silence');
      // (Under load an observer may report a gap as silence, so the exact sequence can have repeats.)
      expect(speakers.find((x) => x !== null)).toBe('b');
      expect(new Set(speakers)).toEqual(new Set([null, 'a', 'b']));
      sa.stop();
      sb.stop();
    } finally {
      routers.close();
    }
  });

  it('measured CPU counts in the load: a busy worker gets no new router while others are idle', async () => {
    const [busy] = pool.workers;
    await pool.sampleLoad();
    // Keep the worker busy answering dumps for 1.5 s.
    const end = Date.now() + 1500;
    const burn = async (): Promise<void> => {
      while (Date.now() < end) await busy!.dump();
    };
    await Promise.all([burn(), burn(), burn(), burn()]);
    await pool.sampleLoad();
    expect(pool.workerCpu(busy!)).toBeGreaterThan(0.05);
    expect(pool.workerLoad(busy!)).toBeGreaterThan(Math.max(...pool.workers.filter((w) => w !== busy).map((w) => pool.workerLoad(w))));
    const created = await Promise.all([0, 1].map(() => pool.createRouter(newRoomId(), [])));
    try {
      expect(created.map((c) => c.worker)).not.toContain(busy);
    } finally {
      for (const c of created) c.router.close();
    }
  });

  it('a SIGKILLed worker takes only its router: its pipes close, RTP between the other routers keeps flowing', async () => {
    const routers = await RoomRouters.create({ roomId: newRoomId(), pool, maxConsumers: 1, audioLevel: undefined, logger: new Logger('silent') });
    const onLost = ({ routerId }: { routerId: string }): void => void routers.lost(routerId);
    pool.on('roomLost', onLost);
    try {
      const a = await routers.place('a', 0);
      const b = await routers.place('b', 1);
      const c = await routers.place('c', 2);
      const sa = await audioSender(a, 'a', 0x33330001);
      const sc = await audioSender(c, 'c', 0x33330003);
      senders.push(sa, sc);
      await routers.reach(sa.producer.id, a, b);
      await routers.reach(sa.producer.id, a, c);
      await routers.reach(sc.producer.id, c, b);
      await routers.reach(sc.producer.id, c, a);
      const aAtB = await counter(b, sa.producer.id);
      const cAtB = await counter(b, sc.producer.id);
      const cAtA = await counter(a, sc.producer.id);
      await waitFor(() => aAtB.packets() > 10 && cAtB.packets() > 10 && cAtA.packets() > 10, 10_000, 'RTP on every pipe');

      const cGoneAtB = new Promise<void>((resolve) => cAtB.consumer.once('producerclose', resolve));
      const cGoneAtA = new Promise<void>((resolve) => cAtA.consumer.once('producerclose', resolve));
      const aTransports = ((await a.router.dump()) as { transportIds: string[] }).transportIds.length;
      const deadPid = c.worker.pid;
      process.kill(deadPid, 'SIGKILL');
      await cGoneAtB;
      await cGoneAtA;
      expect(routers.all).toEqual([a, b]);
      expect(routers.of('c')).toBeUndefined();
      expect(routers.of('a')).toBe(a);
      // a's media still reaches b, packets growing well after the kill.
      await sleep(300);
      expect(await growth(aAtB)).toBeGreaterThan(10);
      expect(aAtB.consumer.closed).toBe(false);
      // a's pipe transport to the dead router is closed; the one to b stays.
      await waitFor(async () => ((await a.router.dump()) as { transportIds: string[] }).transportIds.length === aTransports - 1, 5000, 'pipe to c closed');
      sc.stop();
      await waitFor(() => pool.size === 3 && !pool.workers.some((w) => w.pid === deadPid), 15_000, 'replacement worker');
    } finally {
      pool.off('roomLost', onLost);
      routers.close();
    }
    await waitFor(() => emptyWorkers(pool), 5000, 'every router closed');
  });
});
