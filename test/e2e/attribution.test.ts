/**
 * Property: what a person sees in a tile is the media of the member named on it (issue 13 §1). A modified server
 * lies in its `consume` answers to one victim (Carol): first it presents Mallory's camera as Bob's, then it swaps
 * Bob's and Mallory's cameras. Carol's receive pipelines are bound to the named member's sender index, so the
 * misrouted frames are dropped as `wrong-sender` and never decoded; the tiles show a warning and a critical alert is
 * raised. Bob, to whom the server does not lie, decodes Mallory's camera normally (the media itself is fine).
 *
 * Saves test-results/attribution-*.png.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsumerInfo } from '../../sfu/src/wire.ts';
import { createMeeting, dumpLogs, Harness, joinByLink, joinFromLobby, refresh, resultsPath, rtpStats, sleep, snapshot, waitUntil, withTransform, type Participant } from './harness.ts';

const API = 'script' as const;

describe('attribution: a server that misroutes consume answers cannot put one member’s media in another’s tile', () => {
  let h: Harness;
  let bob: Participant;
  let mallory: Participant;
  let carol: Participant;
  let bobId = '';
  let malloryId = '';
  /** The lie told to the victim's consume answers. */
  let lie: (info: ConsumerInfo) => ConsumerInfo = (i) => i;
  const victims = new Set<string>();
  let markNextAsVictim = false;

  beforeAll(async () => {
    h = await Harness.start();
    // The modified server: a middleware on the victim's socket rewrites the data of its `consume` acks.
    h.server.io.on('connection', (sock) => {
      if (markNextAsVictim) {
        victims.add(sock.id);
        markNextAsVictim = false;
      }
      sock.use((packet, next) => {
        const ack = packet[2];
        if (packet[0] === 'consume' && victims.has(sock.id) && typeof ack === 'function') {
          packet[2] = (res: { ok: boolean; data?: ConsumerInfo }) => (ack as (r: unknown) => void)(res.ok && res.data ? { ...res, data: lie(res.data) } : res);
        }
        next();
      });
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  const consumerOf = async (p: Participant, peerId: string, source: string) => (await refresh(p)).consumers.find((c) => c.peerId === peerId && c.source === source);
  const tileOf = (p: Participant, peerId: string) => p.page.locator(`[data-testid="tile"][data-peer-id="${peerId}"][data-source="camera"]`);

  /** Over ~3 s: the consumer decodes no frame while its wrong-sender drops rise. */
  async function expectDroppedNotDecoded(p: Participant, consumerId: string): Promise<void> {
    const before = (await refresh(p)).consumers.find((c) => c.id === consumerId)!;
    const statsBefore = await rtpStats(p, consumerId);
    await sleep(3000);
    const after = (await refresh(p)).consumers.find((c) => c.id === consumerId)!;
    const statsAfter = await rtpStats(p, consumerId);
    expect(after.dropped['wrong-sender'] ?? 0, 'wrong-sender drops rise').toBeGreaterThan(before.dropped['wrong-sender'] ?? 0);
    expect(after.opened, 'nothing opens on the misrouted pipeline').toBe(0);
    expect(statsAfter?.packetsReceived ?? 0, 'RTP of the misrouted stream does arrive').toBeGreaterThan(statsBefore?.packetsReceived ?? 0);
    expect(statsAfter?.framesDecoded ?? 0, 'nothing is decoded').toBe(0);
  }

  it('Mallory’s camera presented to Carol as Bob’s is dropped, not decoded, and Bob’s tile warns', async () => {
    try {
      bob = await h.participant('Bob');
      mallory = await h.participant('Mallory');
      carol = await h.participant('Carol');
      const link = await createMeeting(bob, h.url, API);
      await bob.page.goto(withTransform(link, API));
      await bob.page.getByTestId('lobby').waitFor({ timeout: 20_000 });
      await bob.page.getByLabel('Camera on').uncheck();
      await joinFromLobby(bob);
      await joinByLink(mallory, link, API);
      bobId = (await snapshot(bob)).peerId!;
      malloryId = (await snapshot(mallory)).peerId!;
      lie = (i) => (i.peerId === malloryId && i.source === 'camera' ? { ...i, peerId: bobId } : i);
      markNextAsVictim = true;
      await joinByLink(carol, link, API);
      expect(victims.size).toBe(1);

      // Carol's "Bob" camera consumer is Mallory's producer.
      await waitUntil(async () => !!(await consumerOf(carol, bobId, 'camera')), 30_000, 'Carol consumes "Bob’s" camera');
      const fake = (await consumerOf(carol, bobId, 'camera'))!;
      const malloryCamera = (await snapshot(mallory)).producers.find((p) => p.source === 'camera')!;
      expect(fake.producerId).toBe(malloryCamera.id);
      await expectDroppedNotDecoded(carol, fake.id);
      await tileOf(carol, bobId).locator('[data-testid="tile-warning"]').waitFor({ timeout: 10_000 });
      expect(await tileOf(carol, bobId).locator('video').count()).toBe(0);
      await carol.page.locator('[data-testid="alert"][data-kind="misattributed"]').first().waitFor({ timeout: 10_000 });
      await carol.page.screenshot({ path: resultsPath('attribution-misrouted.png') });

      // Control: the server does not lie to Bob, who decodes Mallory's camera.
      await waitUntil(async () => !!(await consumerOf(bob, malloryId, 'camera')), 30_000, 'Bob consumes Mallory’s camera');
      const honest = (await consumerOf(bob, malloryId, 'camera'))!;
      await waitUntil(async () => ((await rtpStats(bob, honest.id))?.framesDecoded ?? 0) > 10, 30_000, 'Bob decodes Mallory’s camera');
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 180_000);

  it('swapping Bob’s and Mallory’s cameras: neither is decoded in the other’s tile, both tiles warn', async () => {
    lie = (i) => (i.source !== 'camera' ? i : i.peerId === malloryId ? { ...i, peerId: bobId } : i.peerId === bobId ? { ...i, peerId: malloryId } : i);
    await bob.page.getByTestId('toggle-camera').click();
    await waitUntil(async () => (await snapshot(bob)).producers.some((p) => p.source === 'camera'), 20_000, 'Bob produces his camera');
    const bobCamera = (await snapshot(bob)).producers.find((p) => p.source === 'camera')!;
    await waitUntil(async () => !!(await consumerOf(carol, malloryId, 'camera')), 30_000, 'Carol consumes "Mallory’s" camera');
    const swapped = (await consumerOf(carol, malloryId, 'camera'))!;
    expect(swapped.producerId).toBe(bobCamera.id);
    await expectDroppedNotDecoded(carol, swapped.id);
    await tileOf(carol, malloryId).locator('[data-testid="tile-warning"]').waitFor({ timeout: 10_000 });
    await tileOf(carol, bobId).locator('[data-testid="tile-warning"]').waitFor({ timeout: 10_000 });
    // Carol's own media are unaffected: Mallory decodes her camera.
    const carolId = (await snapshot(carol)).peerId!;
    await waitUntil(async () => !!(await consumerOf(mallory, carolId, 'camera')), 30_000, 'Mallory consumes Carol’s camera');
    const carolCam = (await consumerOf(mallory, carolId, 'camera'))!;
    await waitUntil(async () => ((await rtpStats(mallory, carolCam.id))?.framesDecoded ?? 0) > 10, 30_000, 'Mallory decodes Carol');
    await carol.page.screenshot({ path: resultsPath('attribution-swapped.png') });
  }, 120_000);
});
