/**
 * Firefox ESR (Debian firefox-esr, puppeteer-core over WebDriver BiDi) in encrypted calls with Chromium, each
 * way round, on the default local setup: the server listens on 127.0.0.1 and, with LOCAL_LAN_MEDIA (on by
 * default), on the machine's first non-loopback IPv4. Firefox pairs no loopback candidates and no pref here
 * changes that, so these calls connect only through the LAN address (checked on the server: Firefox's
 * transports' selected ICE tuples).
 *
 * 1. Firefox creates the meeting, Chromium joins: camera + audio decode both ways, every frame sealed and
 *    opened with the frame ledger holding on both sides (e2ee-helpers; Firefox's receive audio by growth),
 *    what Firefox sent is SFrame at the SFU (media tap) that opens with Firefox's keys to VP8 / Opus, the
 *    room code is the same in both UIs, and each shares its screen with the app's "Share screen" button:
 *    Chromium's screen decodes in Firefox, then Firefox's (its Xvfb screen, firefox.ts) decodes in Chromium as
 *    its own tile, sealed like the rest (ledgers on both sides; SFrame at the tap that opens with Firefox's keys
 *    to VP8, starting with a key frame).
 * 2. Chromium creates, Firefox joins, a second Chromium joins and leaves: Firefox moves to a fresh send key
 *    (key frames under it on every simulcast layer, from generateKeyFrame) and receives Chromium's fresh key
 *    (a new generation), keeps opening and decoding, and both show the new, equal room code.
 *
 * Firefox's `getVideoPlaybackQuality()` stays 0 for camera streams; decoding is judged by RTCStats
 * `framesDecoded` (the harness helpers do so for both browsers).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { splitKid } from '../../client/src/e2ee/kid.ts';
import {
  codecOf,
  createAndJoin,
  exportKeys,
  expectEncryptedFlow,
  fromHex,
  hooked,
  isPlausibleOpus,
  isPlausibleVp8Frame,
  isValidVp8KeyFrame,
  joinHooked,
  parseProtected,
  tryOpen,
} from './e2ee-helpers.ts';
import { ffClick, ffCreateAndJoin, ffJoinByLink, ffRoomCode, type FirefoxParticipant } from './firefox.ts';
import {
  Harness,
  dumpLogs,
  expectMediaFlowing,
  refresh,
  remoteVideos,
  roomIdOf,
  rtpStats,
  snapshot,
  waitUntil,
  type AnyParticipant,
  type Participant,
} from './harness.ts';

const API = 'script' as const;
/** Firefox's audio packetsReceived runs a steady gap below its transform's count: compared by growth (e2ee-helpers). */
const FIREFOX_LEDGER = { recvByGrowth: true } as const;

describe('Firefox ↔ Chromium (WebDriver BiDi, RTCRtpScriptTransform)', () => {
  let h: Harness;
  let ff: FirefoxParticipant;
  let ch: Participant;
  let lanIp = '';
  /** Every WebRTC transport the server created, with the peer it belongs to (appData.peerId). */
  const transports: ms.WebRtcTransport[] = [];

  beforeAll(async () => {
    // The default LOCAL_LAN_MEDIA (the harness keeps Chromium-only suites on loopback).
    h = await Harness.start({ tap: true, capture: true }, { localLanMedia: true });
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
      // UDP as a rule; on a loaded machine Firefox sometimes nominates the (lower-priority) ICE-TCP pair, also on the LAN address.
      expect(t.iceSelectedTuple).toMatchObject({ localAddress: lanIp, remoteIp: lanIp });
    }
  }

  /**
   * What Firefox sent, as the SFU forwarded it (the media tap): every frame is SFrame that opens with one of
   * Firefox's own send keys to a plausible VP8 / Opus frame (the sealed frame is the encoded frame), and every
   * layer of its video (simulcast for the camera) starts with a VP8 key frame.
   */
  async function expectFirefoxFramesSealed(roomId: string, ffId: string, sources: string[]): Promise<void> {
    const tap = h.server.tap!;
    const keys = new Map((await exportKeys(ff)).sendHistory.map((k) => [BigInt(k.kid), fromHex(k.key)]));
    const producers = tap.producers().filter((p) => p.roomId === roomId && p.peerId === ffId && !p.closed);
    expect(producers.map((p) => p.source).sort()).toEqual([...sources].sort());
    for (const prod of producers) {
      const codec = codecOf(prod.codec);
      const frames = tap.frames(prod.producerId);
      expect(frames.length, `Firefox ${prod.source} frames at the tap`).toBeGreaterThan(10);
      for (const f of frames) {
        const data = new Uint8Array(f.data);
        const parsed = parseProtected(codec, data);
        const plain = await tryOpen(codec, data, keys.get(parsed.kid) ?? new Uint8Array(16));
        expect(plain, `Firefox ${prod.source} frame ${f.index} opens with a Firefox send key`).not.toBeNull();
        expect(data.length - plain!.length).toBe(parsed.headerLength + 16);
        expect(codec === 'opus' ? isPlausibleOpus(plain!) : isPlausibleVp8Frame(plain!), `Firefox ${prod.source} frame ${f.index}`).toBe(true);
        if (f.keyFrame) expect(isValidVp8KeyFrame(plain!)).toBe(true);
      }
      if (codec === 'vp8') {
        // Camera simulcast: every layer Firefox sends (it may leave the top one off on a loaded machine) starts with a key frame.
        if (prod.source === 'camera') expect(prod.ssrcs.length, 'Firefox negotiated camera simulcast').toBeGreaterThan(1);
        const first = tap.firstFrames(prod.producerId);
        const sent = [...new Set(first.map((f) => f.layer))].sort();
        expect(sent.length).toBeGreaterThan(0);
        expect([...new Set(first.filter((f) => f.keyFrame).map((f) => f.layer))].sort()).toEqual(sent);
      }
    }
  }

  /**
   * After a key switch Firefox's encoders send a key frame on every simulcast layer they send, under the fresh KID,
   * through RTCRtpScriptTransformer.generateKeyFrame(): the client never fell back to asking the server for one.
   */
  async function expectFirefoxKeyFramesUnder(roomId: string, ffId: string, kid: bigint): Promise<void> {
    const tap = h.server.tap!;
    const camera = tap.producers().find((p) => p.roomId === roomId && p.peerId === ffId && p.source === 'camera' && !p.closed)!;
    /** Layers carrying frames under `kid`, and those of them without a key frame under it yet. */
    const layers = (): { sent: number[]; missing: number[] } => {
      const fresh = tap.frames(camera.producerId).filter((f) => parseProtected('vp8', new Uint8Array(f.data)).kid === kid);
      const sent = [...new Set(fresh.map((f) => f.layer))];
      const keyed = new Set(fresh.filter((f) => f.keyFrame).map((f) => f.layer));
      return { sent, missing: sent.filter((l) => !keyed.has(l)) };
    };
    await waitUntil(
      () => layers().sent.length > 0 && layers().missing.length === 0,
      10_000,
      `Firefox key frames under the fresh KID on every layer it sends (${JSON.stringify(layers())})`,
    );
    const fallbacks = h.server.capture!.parsed().filter((m) => m.dir === 'in' && m.peerId === ffId && m.event === 'requestProducerKeyFrame');
    expect(fallbacks).toEqual([]);
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

  it('Firefox creates, Chromium joins: audio + camera both ways, sealed and opened, same room code, screen shares both ways', async () => {
    expect(lanIp, 'the harness server announces a non-loopback address').not.toBe('');
    try {
      const link = await ffCreateAndJoin(ff, hooked(`${h.url}/`, API));
      await joinHooked(ch, link, API);
      const [ffId, chId] = [await peerIdOf(ff), await peerIdOf(ch)];
      expect((await snapshot(ff)).transformApi).toBe('script');
      await Promise.all([expectMediaFlowing(ff, [chId], 60_000), expectMediaFlowing(ch, [ffId], 60_000)]);
      await expectFirefoxOverLan(ffId);
      await Promise.all([expectEncryptedFlow(ff, 2, FIREFOX_LEDGER), expectEncryptedFlow(ch, 2)]);
      await expectFirefoxFramesSealed(roomIdOf(link), ffId, ['camera', 'mic']);
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
      await expectEncryptedFlow(ff, 3, FIREFOX_LEDGER);

      // Firefox shares its (Xvfb) screen with the app's button, a trusted click, while Chromium's share goes on.
      await ffClick(ff, 'toggle-screen');
      await waitUntil(
        async () => {
          const c = (await refresh(ch)).consumers.find((x) => x.peerId === ffId && x.source === 'screen');
          const tile = (await remoteVideos(ch)).find((v) => v.peerId === ffId && v.source === 'screen');
          return !!c && c.opened > 5 && tile?.consumerId === c.id && tile.videoWidth > 0;
        },
        40_000,
        "Chromium opens Firefox's screen frames and shows them as a screen tile",
      );
      const ffScreen = (await snapshot(ch)).consumers.find((x) => x.peerId === ffId && x.source === 'screen')!;
      const decoded = (await rtpStats(ch, ffScreen.id))?.framesDecoded ?? 0;
      expect(decoded).toBeGreaterThan(0);
      await waitUntil(async () => ((await rtpStats(ch, ffScreen.id))?.framesDecoded ?? 0) > decoded + 5, 10_000, "Chromium's framesDecoded for Firefox's screen advancing");
      await Promise.all([expectEncryptedFlow(ch, 3), expectEncryptedFlow(ff, 3, FIREFOX_LEDGER)]);
      await expectFirefoxFramesSealed(roomIdOf(link), ffId, ['camera', 'mic', 'screen']);
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
      await expectFirefoxKeyFramesUnder(roomIdOf(link), ffId, BigInt(fresh));
      await Promise.all([expectMediaFlowing(ff, [chId], 30_000), expectMediaFlowing(ch, [ffId], 30_000)]);
      await Promise.all([expectEncryptedFlow(ff, 2, FIREFOX_LEDGER), expectEncryptedFlow(ch, 2)]);
      // A new roster draws a new room code, again the same on both.
      await waitUntil(async () => (await ffRoomCode(ff)) !== codeWithCarol, 30_000, 'room code redrawn');
      await expectSameRoomCode();
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 150_000);
});
