/**
 * (g) The same end-to-end encrypted three-way call with the older Insertable Streams API
 * (`createEncodedStreams`, forced with `?transform=streams`): media flows, every frame sealed/opened in the
 * worker with the frame ledger holding, and everything the SFU forwards parses as SFrame and opens with the senders' keys.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, dumpLogs, expectMediaFlowing, roomIdOf, snapshot, type Participant } from './harness.ts';
import { codecOf, createAndJoin, expectEncryptedFlow, exportKeys, fromHex, joinHooked, parseProtected, tryOpen } from './e2ee-helpers.ts';

const API = 'streams' as const;

describe('E2EE media (createEncodedStreams, tap on)', () => {
  let h: Harness;
  const ps: Participant[] = [];

  beforeAll(async () => {
    h = await Harness.start({ tap: true });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('(g) three participants, streams API: encrypted both ways, SFrame at the SFU', async () => {
    try {
      for (const n of ['Alice', 'Bob', 'Carol']) ps.push(await h.participant(n));
      const [alice, bob, carol] = ps as [Participant, Participant, Participant];
      const link = await createAndJoin(alice, h.url, API);
      await joinHooked(bob, link, API);
      await joinHooked(carol, link, API);
      const ids = await Promise.all(ps.map(async (p) => (await snapshot(p)).peerId!));
      for (const [i, p] of ps.entries()) {
        expect((await snapshot(p)).transformApi).toBe(API);
        await expectMediaFlowing(p, ids.filter((_, j) => j !== i), 150_000);
      }
      for (const p of ps) await expectEncryptedFlow(p, 4);
      const keys = new Map<bigint, Uint8Array>();
      for (const p of ps) for (const k of (await exportKeys(p)).sendHistory) keys.set(BigInt(k.kid), fromHex(k.key));
      const producers = h.server.tap!.producers().filter((x) => x.roomId === roomIdOf(link));
      expect(producers.length).toBe(6);
      for (const prod of producers) {
        const codec = codecOf(prod.codec);
        const frames = [...h.server.tap!.firstFrames(prod.producerId), ...h.server.tap!.frames(prod.producerId)];
        expect(frames.length).toBeGreaterThan(10);
        for (const f of frames) {
          const data = new Uint8Array(f.data);
          const { kid } = parseProtected(codec, data);
          expect(await tryOpen(codec, data, keys.get(kid) ?? new Uint8Array(16)), `${prod.source} frame ${f.index}`).not.toBeNull();
        }
      }
    } catch (err) {
      console.error(dumpLogs(h));
      for (const p of ps) console.error(`--- ${p.name} ---\n${JSON.stringify(await snapshot(p).catch(() => null))}`);
      throw err;
    }
  }, 420_000);
});
