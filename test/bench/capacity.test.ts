/**
 * The capacity bench's load generator (bench/capacity-load.ts) really forwards: one sender (a VP8 and an Opus
 * producer on a comedia PlainTransport) and three receivers (each consumes both producers: 2 × 3 = 6 consumers), ~2 s
 * of paced RTP through real mediasoup workers, once on one worker and once with the producers on worker A and the
 * consumers on worker B behind pipeToRouter(). Every consumer's sink gets ≥ 95 % of what its producer was sent;
 * every forwarded RTP payload (VP8 descriptor + sealed SFrame bytes, or the Opus SFrame) is byte for byte one its
 * producer was sent — the SFU does not touch SFrame payloads; afterwards every mediasoup object the room made
 * (workers, routers, transports incl. the pipe's, producers, consumers) is closed.
 */
import { describe, expect, it } from 'vitest';
import { CapacityRoom, type Placement } from '../../bench/capacity-load.ts';

const consumersByProducer = async (room: CapacityRoom, router: number): Promise<number[]> =>
  (await room.routers[router]!.dump()).mapProducerIdConsumerIds.map((e) => e.values.length).sort();

describe('capacity load generator', () => {
  for (const placement of ['one', 'pipe'] as Placement[]) {
    it(`forwards 2 producers × 3 consumers unchanged (${placement})`, async () => {
      const room = await CapacityRoom.create({ placement, senders: 1, srtp: false, verify: true, sinks: 2 });
      try {
        await room.addReceivers(3);
        expect(room.consumers).toBe(6);
        if (placement === 'pipe') {
          expect(room.workers).toHaveLength(2);
          expect(room.workers[0]!.pid).not.toBe(room.workers[1]!.pid);
          // A: each producer has one consumer, the pipe's; B: the pipe producers have the 3 receivers' consumers.
          expect(await consumersByProducer(room, 0)).toEqual([1, 1]);
          expect(await consumersByProducer(room, 1)).toEqual([3, 3]);
        } else {
          expect(await consumersByProducer(room, 0)).toEqual([3, 3]);
        }
        await room.warm();
        for (const [variant, ms] of [['sframe', 2000], ['plain', 1000]] as const) {
          const r = await room.trial(variant, ms);
          // 2 s: 30 VP8 frames/s of ~2 packets + 50 Opus packets/s
          expect(r.sent).toBeGreaterThan((ms / 1000) * (30 + 50) * 0.9);
          expect(r.expected).toBe(3 * r.sent);
          expect(r.worstConsumerLossPct).toBeLessThanOrEqual(5);
          expect(r.received).toBeGreaterThanOrEqual(0.95 * r.expected);
          expect(r.mismatched).toBe(0);
          expect(r.matched).toBe(r.received);
          expect(r.workerCpu).toHaveLength(placement === 'one' ? 1 : 2);
          expect(r.workerCpu.every((c) => c >= 0 && c < 2)).toBe(true);
        }
      } finally {
        await room.close();
      }
      // workers + routers + transports (sender, receivers, pipe pair) + producers (+ pipe producers) + consumers (+ pipe consumers)
      expect(room.objects).toHaveLength(placement === 'one' ? 1 + 1 + (1 + 3) + 2 + 6 : 2 + 2 + (1 + 3 + 2) + (2 + 2) + (6 + 2));
      expect(room.objects.filter((o) => !o.closed)).toEqual([]);
    });
  }

  it('refuses verify with SRTP (the sinks cannot read SRTP payloads)', async () => {
    await expect(CapacityRoom.create({ placement: 'one', senders: 1, verify: true })).rejects.toThrow(/verify needs srtp: false/);
  });
});
