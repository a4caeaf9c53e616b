/**
 * Firefox ESR (Debian firefox-esr, puppeteer-core over WebDriver BiDi) in encrypted calls with Chromium, each
 * way round, on the default local setup: the server listens on 127.0.0.1 and, with LOCAL_LAN_MEDIA (on by
 * default), on the machine's first non-loopback IPv4. Firefox pairs no loopback candidates and no pref here
 * changes that, so these calls connect only through the LAN address (checked on the server: Firefox's
 * transports' selected ICE tuples).
 *
 * 1. Firefox creates the meeting, Chromium joins: camera + audio decode both ways, every frame sealed and
 *    opened with the frame ledger exact on both sides, the room code the same in both UIs, and Chromium's
 *    screen share decoded in Firefox. (Firefox's own getDisplayMedia: headless Firefox has no screen to
 *    capture and answers NotFoundError even with fake media, so Firefox shares no screen here.)
 * 2. Chromium creates, Firefox joins, a second Chromium joins and leaves: Firefox moves to a fresh send key
 *    and receives Chromium's fresh key (a new generation), and keeps opening and decoding its frames.
 *
 * Firefox's `getVideoPlaybackQuality()` stays 0 for camera streams; decoding is judged by RTCStats
 * `framesDecoded` (the harness helpers do so for both browsers).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { splitKid } from '../../client/src/e2ee/kid.ts';
import { createAndJoin, exportKeys, expectEncryptedFlow, hooked, joinHooked } from './e2ee-helpers.ts';
import { ffClick, ffCreateAndJoin, ffJoinByLink, ffRoomCode, type FirefoxParticipant } from './firefox.ts';
import { Harness, dumpLogs, expectMediaFlowing, refresh, snapshot, waitUntil, type AnyParticipant, type Participant } from './harness.ts';

const API = 'script' as const;

describe('Firefox ↔ Chromium (WebDriver BiDi, RTCRtpScriptTransform)', () => {
  let h: Harness;
  let ff: FirefoxParticipant;
  let ch: Participant;
  let lanIp = '';
  /** Every WebRTC transport the server created, with the peer it belongs to (appData.peerId). */
  const transports: ms.WebRtcTransport[] = [];

  beforeAll(async () => {
    // The default LOCAL_LAN_MEDIA (the harness keeps Chromium-only suites on loopback).
    h = await Harness.start({}, { localLanMedia: true });
    lanIp = h.server.config.localLanIp ?? '';
    h.server.sfu.on('roomCreated', (room) => {
      room.router.observer.on('newtransport', (t) => {
        if (t.type === 'webrtc') transports.push(t as ms.WebRtcTransport);
      });
    });
    // Both browsers start together (Firefox takes 3–5 s).
    [ff, ch] = await Promise.all([h.firefox('Fiona'), h.participant('Chris')]);
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  const peerIdOf = async (p: AnyParticipant): Promise<string> => (await snapshot(p)).peerId!;
  const chRoomCode = async (): Promise<string> => (await ch.page.getByTestId('room-code').getAttribute('data-digits')) ?? '';

  /** Firefox's send + recv transports are connected, over the LAN address (no loopback pair exists for it). */
  async function expectFirefoxOverLan(ffId: string): Promise<void> {
    await waitUntil(
      () => transports.filter((t) => !t.closed && (t.appData as { peerId?: string }).peerId === ffId && t.iceSelectedTuple).length === 2,
      20_000,
      'Firefox send + recv transports connected',
    );
    for (const t of transports.filter((x) => !x.closed && (x.appData as { peerId?: string }).peerId === ffId)) {
      expect(t.iceState).toMatch(/^(connected|completed)$/);
      expect(t.iceSelectedTuple).toMatchObject({ protocol: 'udp', localAddress: lanIp, remoteIp: lanIp });
    }
  }

  /** Both UIs show the same, drawn room code. */
  async function expectSameRoomCode(): Promise<void> {
    await waitUntil(async () => (await ffRoomCode(ff)) !== '' && (await ffRoomCode(ff)) === (await chRoomCode()), 30_000, 'room code drawn, the same on both');
    expect((await snapshot(ff)).e2ee.roomCode).toEqual((await snapshot(ch)).e2ee.roomCode);
  }

  async function leave(p: AnyParticipant): Promise<void> {
    if (p === ff) await ffClick(ff, 'leave');
    else await ch.page.getByTestId('leave').click();
    await waitUntil(async () => (await snapshot(p)).status !== 'joined', 10_000, `${p.name} left`);
  }

  it('Firefox creates, Chromium joins: audio + camera both ways, sealed and opened, same room code, Chromium screen share in Firefox', async () => {
    expect(lanIp, 'the harness server announces a non-loopback address').not.toBe('');
    try {
      const link = await ffCreateAndJoin(ff, hooked(`${h.url}/`, API));
      await joinHooked(ch, link, API);
      const [ffId, chId] = [await peerIdOf(ff), await peerIdOf(ch)];
      expect((await snapshot(ff)).transformApi).toBe('script');
      await Promise.all([expectMediaFlowing(ff, [chId], 60_000), expectMediaFlowing(ch, [ffId], 60_000)]);
      await expectFirefoxOverLan(ffId);
      await Promise.all([expectEncryptedFlow(ff, 2), expectEncryptedFlow(ch, 2)]);
      await expectSameRoomCode();

      await ch.page.getByTestId('toggle-screen').click();
      let opened = 0;
      await waitUntil(
        async () => {
          const c = (await refresh(ff)).consumers.find((x) => x.peerId === chId && x.source === 'screen');
          const st = c && (await ff.page.evaluate((id) => window.__meet!.stats(id), c.id));
          opened = c?.opened ?? 0;
          return !!c && c.opened > 5 && (st?.framesDecoded ?? 0) > 5;
        },
        40_000,
        'Firefox opens and decodes Chromium screen frames',
      );
      expect(opened).toBeGreaterThan(5);
      await expectEncryptedFlow(ff, 3);
      await Promise.all([leave(ff), leave(ch)]);
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 150_000);

  it('Chromium creates, Firefox joins; a third participant leaves and Firefox moves to fresh keys', async () => {
    try {
      const link = await createAndJoin(ch, h.url, API);
      await ffJoinByLink(ff, hooked(link, API));
      const carol = await h.participant('Carol');
      await joinHooked(carol, link, API);
      const [ffId, chId, carolId] = [await peerIdOf(ff), await peerIdOf(ch), await peerIdOf(carol)];
      await Promise.all([expectMediaFlowing(ff, [chId, carolId], 60_000), expectMediaFlowing(ch, [ffId, carolId], 60_000)]);
      await expectFirefoxOverLan(ffId);
      await expectSameRoomCode();
      const codeWithCarol = await ffRoomCode(ff);

      // Key state before Carol leaves: Firefox's own send KID, and Chromium's as Firefox received it.
      const [ffKeys, chKeys] = [await exportKeys(ff), await exportKeys(ch)];
      const chSender = chKeys.senderIndex!;
      const gen = (kid: string | bigint): number => splitKid(BigInt(kid)).generation;
      const ffGen = gen(ffKeys.send!.kid);
      const chGen = gen(chKeys.send!.kid);
      // Firefox holds Chromium's current key generation (Chromium may have ratcheted within it since).
      const ffHoldsCh = (keys: typeof ffKeys, g: number): boolean => keys.receive.some((r) => r.peerId === chId && r.senderIndex === chSender && gen(r.kid) === g);
      expect(ffHoldsCh(ffKeys, chGen)).toBe(true);

      await carol.page.getByTestId('leave').click();
      await carol.close();
      await waitUntil(
        async () => {
          const [f, c] = [await exportKeys(ff), await exportKeys(ch)];
          // Firefox sends under a new generation, holds Chromium's new one, and Chromium sends under it.
          return gen(f.send!.kid) !== ffGen && gen(c.send!.kid) !== chGen && ffHoldsCh(f, gen(c.send!.kid));
        },
        30_000,
        'Firefox and Chromium rotated to fresh keys after Carol left',
      );
      // Firefox's producers report the new KID too (its transform worker switched).
      const fresh = (await exportKeys(ff)).send!.kid;
      await waitUntil(async () => (await refresh(ff)).producers.every((x) => x.sendKid === fresh), 10_000, 'Firefox seals under the fresh KID');
      await Promise.all([expectMediaFlowing(ff, [chId], 30_000), expectMediaFlowing(ch, [ffId], 30_000)]);
      await Promise.all([expectEncryptedFlow(ff, 2), expectEncryptedFlow(ch, 2)]);
      // A new roster draws a new room code, again the same on both.
      await waitUntil(async () => (await ffRoomCode(ff)) !== codeWithCarol, 30_000, 'room code redrawn');
      await expectSameRoomCode();
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 150_000);
});
