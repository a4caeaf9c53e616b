/**
 * Three-way call over the real server with RTCRtpScriptTransform forced: everyone sees and hears the other
 * two, the transform worker counts frames in step with the encoder/decoder, a screen share arrives as its
 * own tile, and leaving removes the tiles everywhere. Saves test-results/three-way-call.png.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Harness,
  createMeeting,
  dumpLogs,
  expectMediaFlowing,
  joinByLink,
  joinFromLobby,
  refresh,
  remoteVideos,
  resultsPath,
  rtpStats,
  sampleFrames,
  sleep,
  snapshot,
  waitUntil,
  type Participant,
} from './harness.ts';

const API = 'script' as const;

describe('three-way call (RTCRtpScriptTransform)', () => {
  let h: Harness;
  let alice: Participant;
  let bob: Participant;
  let carol: Participant;
  const ids = new Map<Participant, string>();

  beforeAll(async () => {
    h = await Harness.start();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('three participants join by link and each sees and hears the other two', async () => {
    try {
      alice = await h.participant('Alice');
      bob = await h.participant('Bob');
      carol = await h.participant('Carol');
      const link = await createMeeting(alice, h.url, API);
      // The creator goes through the lobby from the home page (secret stays in memory).
      await alice.page.getByTestId('join-created').click();
      expect(new URL(alice.page.url()).hash).toBe('');
      await joinFromLobby(alice);
      await joinByLink(bob, link, API);
      // The fragment is removed from the address bar once read.
      expect(new URL(bob.page.url()).hash).toBe('');
      await joinByLink(carol, link, API);
      for (const p of [alice, bob, carol]) ids.set(p, (await snapshot(p)).peerId!);

      for (const p of [alice, bob, carol]) {
        const others = [alice, bob, carol].filter((o) => o !== p).map((o) => ids.get(o)!);
        await expectMediaFlowing(p, others, 120_000);
        const snap = await snapshot(p);
        expect(snap.transformApi).toBe(API);
        expect(snap.producers.map((x) => x.source).sort()).toEqual(['camera', 'mic']);
      }

      // Display names arrive through sealed relay blobs.
      await waitUntil(
        async () => {
          const names = await alice.page.getByTestId('tile-name').allTextContents();
          return names.includes('Bob') && names.includes('Carol');
        },
        15_000,
        'Alice sees the names Bob and Carol',
      );
      await sleep(1000);
      await alice.page.screenshot({ path: resultsPath('three-way-call.png') });
    } catch (err) {
      console.error(dumpLogs(h));
      for (const p of [alice, bob, carol]) {
        if (!p) continue;
        const snap = await snapshot(p).catch(() => null);
        const stats = snap ? await Promise.all([...snap.producers, ...snap.consumers].map(async (x) => [x.id, x.source, await rtpStats(p, x.id)])) : [];
        console.error(`--- ${p.name} snapshot ---\n${JSON.stringify(snap)}\n${JSON.stringify(stats)}`);
      }
      throw err;
    }
  }, 420_000);

  it('worker frame counts rise in step with framesEncoded / framesDecoded', async () => {
    for (const p of [alice, bob]) {
      const a = await sampleFrames(p);
      await sleep(5000);
      const b = await sampleFrames(p);
      expect(b.size).toBe(a.size);
      for (const x of b.values()) {
        const before = a.get(x.id)!;
        const dWorker = x.workerFrames - before.workerFrames;
        const label = `${p.name} ${x.direction} ${x.kind}/${x.source}`;
        expect(dWorker, `${label}: worker frames`).toBeGreaterThan(0);
        expect(x.workerBytes, `${label}: worker bytes`).toBeGreaterThan(before.workerBytes);
        if (x.kind === 'video') {
          const dRtc = x.rtcFrames - before.rtcFrames;
          expect(dRtc, `${label}: RTC frames`).toBeGreaterThan(0);
          const msg = `${label}: worker ${dWorker}, rtc ${dRtc}, received ${x.rtcReceived - before.rtcReceived}`;
          if (x.direction === 'send') {
            // One transform call per encoded frame of every simulcast layer (framesEncoded sums the layers).
            expect(dWorker, msg).toBeGreaterThanOrEqual(Math.floor(dRtc * 0.6) - 10);
            expect(dWorker, msg).toBeLessThanOrEqual(Math.ceil(dRtc * 1.6) + 10);
          } else {
            // Every decoded frame went through the transform; on a loaded machine the decoder may skip some.
            const dRecv = x.rtcReceived - before.rtcReceived;
            // (The two counters are read a few ms apart on a loaded machine, hence the slack.)
            expect(dWorker, msg).toBeGreaterThanOrEqual(Math.floor(dRtc * 0.75) - 10);
            expect(dWorker, msg).toBeGreaterThanOrEqual(Math.floor(dRecv * 0.6) - 10);
            // Upper bound: frames the jitter buffer later discards (CPU-starved decoder) are still counted.
            expect(dWorker, msg).toBeLessThanOrEqual(Math.ceil(dRecv * 2.5) + 20);
          }
        }
      }
    }
  });

  it('each video consumer’s preferred spatial layer follows its tile size', async () => {
    const layers = async (): Promise<(number | null)[]> =>
      (await snapshot(bob)).consumers.filter((c) => c.kind === 'video' && c.type === 'simulcast').map((c) => c.preferredSpatialLayer);
    expect((await snapshot(bob)).consumers.filter((c) => c.kind === 'video').every((c) => c.type === 'simulcast')).toBe(true);
    try {
      // Narrow window: one column of ~300x170 px tiles → lowest layer.
      await bob.page.setViewportSize({ width: 320, height: 240 });
      await waitUntil(async () => (await layers()).every((l) => l === 0), 30_000, 'small tiles → layer 0');
      // Big window: 2x2 grid of ~950x520 px tiles → full layer.
      await bob.page.setViewportSize({ width: 1920, height: 1080 });
      await waitUntil(async () => (await layers()).every((l) => l === 2), 30_000, 'large tiles → layer 2');
    } finally {
      await bob.page.setViewportSize({ width: 1280, height: 720 });
    }
  }, 120_000);

  it('a screen share reaches the others as its own tile', async () => {
    await alice.page.getByTestId('toggle-screen').click();
    const aliceId = ids.get(alice)!;
    for (const p of [bob, carol]) {
      await waitUntil(
        async () => (await remoteVideos(p)).some((v) => v.peerId === aliceId && v.source === 'screen' && v.videoWidth > 0),
        60_000,
        `${p.name} sees Alice's screen`,
      );
    }
    const snap = await snapshot(bob);
    const screen = snap.consumers.find((c) => c.peerId === aliceId && c.source === 'screen')!;
    const s1 = await rtpStats(bob, screen.id);
    await sleep(1500);
    const s2 = await rtpStats(bob, screen.id);
    expect(s2!.framesDecoded).toBeGreaterThan(s1!.framesDecoded);
    await carol.page.screenshot({ path: resultsPath('screen-share.png') });
    // Stop sharing: the tile goes away everywhere.
    await alice.page.getByTestId('toggle-screen').click();
    for (const p of [bob, carol]) {
      await waitUntil(async () => !(await remoteVideos(p)).some((v) => v.source === 'screen'), 30_000, `${p.name}: screen tile gone`);
    }
  }, 240_000);

  it('leaving removes the tile everywhere', async () => {
    const carolId = ids.get(carol)!;
    await carol.page.getByTestId('leave').click();
    await carol.page.getByTestId('left').waitFor({ timeout: 10_000 });
    for (const p of [alice, bob]) {
      await waitUntil(async () => !(await remoteVideos(p)).some((v) => v.peerId === carolId), 30_000, `${p.name}: Carol's tile gone`);
      expect((await snapshot(p)).peers).not.toContain(carolId);
    }
    await expectMediaFlowing(alice, [ids.get(bob)!], 60_000);
  }, 240_000);
});
