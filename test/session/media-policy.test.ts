/**
 * Media decisions (client/src/session/media-policy.ts) and the tile view model (tiles.ts): pure, in Node.
 */
import { describe, expect, it } from 'vitest';
import { layerFor, sendPlan, STALL_REJOIN_CHECKS, STALL_RESTART_CHECKS, StallWatchdog } from '../../client/src/session/media-policy.ts';
import type { RemoteMedia } from '../../client/src/session/media-plane.ts';
import { buildTiles } from '../../client/src/session/tiles.ts';

describe('layerFor', () => {
  it('asks for the smallest simulcast layer that fills the tile (device pixels)', () => {
    expect(layerFor(320, 180)).toBe(0);
    expect(layerFor(640, 360)).toBe(1);
    expect(layerFor(1280, 720)).toBe(2);
    expect(layerFor(320, 180, 2)).toBe(1);
    expect(layerFor(100, 400)).toBe(1);
  });
});

describe('StallWatchdog', () => {
  it('restarts ICE, then rejoins, while live consumers receive no packets; packets reset it', () => {
    const w = new StallWatchdog();
    const seq = [10, 10, 10, 10, 10].map((n) => w.observe(n));
    expect(seq.indexOf('restart-ice')).toBe(STALL_RESTART_CHECKS);
    expect(seq.indexOf('rejoin')).toBe(STALL_REJOIN_CHECKS);
    expect(w.observe(11)).toBe('ok');
    expect(w.observe(11)).toBe('ok');
  });

  it('no live consumer: never a verdict', () => {
    const w = new StallWatchdog();
    for (let i = 0; i < 10; i++) expect(w.observe(null)).toBe('ok');
  });
});

describe('sendPlan', () => {
  it('camera simulcast ×3, screen one layer, mic Opus with DTX and FEC', () => {
    expect(sendPlan('camera').encodings?.map((e) => e.rid)).toEqual(['r0', 'r1', 'r2']);
    expect(sendPlan('screen').encodings).toHaveLength(1);
    expect(sendPlan('mic')).toEqual({ codecOptions: { opusStereo: false, opusDtx: true, opusFec: true } });
  });

  it('hiding voice activity: the mic without DTX at a fixed bitrate; video unchanged', () => {
    const hide = { hideVoiceActivity: true };
    expect(sendPlan('mic', hide)).toEqual({ codecOptions: { opusStereo: false, opusDtx: false, opusFec: true, opusMaxAverageBitrate: 32_000 } });
    expect(sendPlan('camera', hide)).toEqual(sendPlan('camera'));
    expect(sendPlan('screen', hide)).toEqual(sendPlan('screen'));
  });
});

describe('buildTiles', () => {
  const track = (id: string) => ({ id, kind: 'video' }) as unknown as MediaStreamTrack;
  const media = (id: string, paused = false): RemoteMedia =>
    ({ consumer: { id, track: track(id) }, peerId: 'bob', source: 'camera', type: 'simulcast', producerPaused: paused, consumerPaused: false }) as unknown as RemoteMedia;

  it('one local tile, one camera tile per peer, a screen tile only when shared; paused video shows no track', () => {
    const tiles = buildTiles(
      { peerId: 'me', name: 'Me', cameraTrack: track('cam'), screenTrack: null, micOff: false },
      [
        { id: 'bob', name: 'Bob', camera: media('c1'), mic: undefined, screen: media('s1', true) },
        { id: 'carol', name: 'Carol', camera: undefined, mic: undefined, screen: undefined },
      ],
      'bob',
    );
    expect(tiles.map((t) => t.id)).toEqual(['local-camera', 'peer-bob-camera', 'peer-bob-screen', 'peer-carol-camera']);
    expect(tiles[0]).toMatchObject({ local: true, name: 'Me (you)', mirrored: true, speaking: false });
    expect(tiles[1]).toMatchObject({ name: 'Bob', videoConsumerId: 'c1', micOff: true, speaking: true });
    expect(tiles[2]).toMatchObject({ name: "Bob's screen", videoTrack: null, videoConsumerId: 's1' });
    expect(tiles[3]).toMatchObject({ videoTrack: null, videoConsumerId: null });
  });
});
