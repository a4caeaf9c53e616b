/**
 * The createEncodedStreams path (forced with ?transform=streams): media flows both ways through the worker,
 * and the worker counts frames. Also the lobby's error pages for broken links.
 */
import { generateInvite } from '../../client/src/e2ee/invite.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, createMeeting, dumpLogs, expectMediaFlowing, joinFromLobby, resultsPath, sampleFrames, sleep, snapshot, waitUntil, withTransform, type Participant } from './harness.ts';

describe('encoded streams transform API', () => {
  let h: Harness;
  let alice: Participant;
  let bob: Participant;
  let link: string;

  beforeAll(async () => {
    h = await Harness.start();
    alice = await h.participant('Alice');
    bob = await h.participant('Bob');
  });
  afterAll(async () => {
    await h?.close();
  });

  it('two participants exchange media through createEncodedStreams transforms', async () => {
    try {
      link = await createMeeting(alice, h.url, 'streams');
      await alice.page.getByTestId('join-created').click();
      await joinFromLobby(alice);
      await bob.page.goto(withTransform(link, 'streams'));
      await bob.page.getByTestId('lobby').waitFor({ timeout: 20_000 });
      await bob.page.getByTestId('display-name').fill('Bob');
      await waitUntil(() => bob.page.evaluate(() => (document.querySelector('video')?.videoWidth ?? 0) > 0), 20_000, 'lobby preview');
      await bob.page.screenshot({ path: resultsPath('lobby.png') });
      await joinFromLobby(bob);
      const [a, b] = await Promise.all([snapshot(alice), snapshot(bob)]);
      expect(a.transformApi).toBe('streams');
      expect(b.transformApi).toBe('streams');
      await expectMediaFlowing(alice, [b.peerId!]);
      await expectMediaFlowing(bob, [a.peerId!]);
      const s1 = await sampleFrames(bob);
      await sleep(2000);
      const s2 = await sampleFrames(bob);
      for (const x of s2.values()) {
        const y = s1.get(x.id)!;
        expect(x.workerFrames, `${x.direction} ${x.source}`).toBeGreaterThan(y.workerFrames);
        if (x.kind === 'video') expect(x.rtcFrames).toBeGreaterThan(y.rtcFrames);
      }
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 240_000);

  it('a malformed or missing invite fragment shows a clear error page', async () => {
    const page = bob.page;
    const base = link.slice(0, link.indexOf('#'));
    await page.goto(`${base}#v1.not-a-secret`);
    await page.getByTestId('bad-link').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('bad-link').textContent()).toMatch(/secret/i);
    expect(new URL(page.url()).hash).toBe('');
    await page.goto(base);
    await page.getByTestId('bad-link').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('bad-link').textContent()).toMatch(/no meeting key/i);
  });

  it('a browser with neither transform API is refused at the lobby (no plaintext fallback)', async () => {
    const page = await bob.context.newPage();
    try {
      await page.addInitScript(() => {
        delete (globalThis as Record<string, unknown>)['RTCRtpScriptTransform'];
        delete (RTCRtpSender.prototype as unknown as Record<string, unknown>)['createEncodedStreams'];
        delete (RTCRtpReceiver.prototype as unknown as Record<string, unknown>)['createEncodedStreams'];
      });
      await page.goto(link.replace('?transform=streams', ''));
      await page.getByTestId('unsupported').waitFor({ timeout: 10_000 });
      expect(await page.getByTestId('unsupported').textContent()).toMatch(/cannot encrypt media end to end/);
      expect(await page.getByTestId('join').count()).toBe(0);
    } finally {
      await page.close();
    }
  });

  it('a well-formed link whose secret is not the room’s is recognised as damaged in the browser (the room id commits to it)', async () => {
    const base = link.slice(0, link.indexOf('#'));
    await bob.page.goto(`${base}?transform=streams#${generateInvite().fragment}`);
    const page = bob.page.getByTestId('bad-link');
    await page.waitFor({ timeout: 10_000 });
    expect(await page.textContent()).toMatch(/do not belong together/);
    expect(await bob.page.getByTestId('lobby').count()).toBe(0);
    expect((await snapshot(bob)).status).toBeNull();
  });

  it('joining with the camera off (audio only) works: others get a tile with an avatar and hear the audio', async () => {
    await bob.page.goto('about:blank');
    await bob.page.goto(withTransform(link, 'streams'));
    await bob.page.getByTestId('lobby').waitFor({ timeout: 20_000 });
    await bob.page.getByLabel('Camera on').uncheck();
    await joinFromLobby(bob);
    const bobId = (await snapshot(bob)).peerId!;
    await waitUntil(async () => (await snapshot(bob)).producers.length > 0, 20_000, 'Bob produces');
    await sleep(500);
    expect((await snapshot(bob)).producers.map((p) => p.source)).toEqual(['mic']);
    await waitUntil(
      async () => {
        const s = await snapshot(alice);
        return s.consumers.some((c) => c.peerId === bobId && c.kind === 'audio');
      },
      30_000,
      'Alice consumes Bob’s audio',
    );
    const tile = alice.page.locator(`[data-testid="tile"][data-peer-id="${bobId}"]`);
    await tile.waitFor({ timeout: 10_000 });
    expect(await tile.locator('video').count()).toBe(0);
    expect(await tile.locator('audio').count()).toBe(1);
    const audio = (await snapshot(alice)).consumers.find((c) => c.peerId === bobId && c.kind === 'audio')!;
    await waitUntil(
      async () => {
        const s1 = await alice.page.evaluate((id) => window.__meet!.stats(id), audio.id);
        await sleep(1000);
        const s2 = await alice.page.evaluate((id) => window.__meet!.stats(id), audio.id);
        return !!s1 && !!s2 && s2.packetsReceived > s1.packetsReceived && s2.bytesReceived > s1.bytesReceived;
      },
      30_000,
      'Bob’s audio reaches Alice',
    );
  }, 180_000);
});
