/**
 * What the call's buttons do: mute, camera, screen share and device switching, as one step on the local tracks
 * (`LocalMediaPort`, the lobby's LocalMedia) and one on the current join's media plane (null between joins: the next
 * join sends whatever the local tracks are then).
 *
 * @module
 */
import type { MediaPlane } from './media-plane.ts';

/** The local capture as the controls use it (client/src/lib/media.svelte.ts `LocalMedia`). */
export interface LocalMediaPort {
  readonly micEnabled: boolean;
  readonly cameraEnabled: boolean;
  readonly micTrack: MediaStreamTrack | null;
  readonly cameraTrack: MediaStreamTrack | null;
  readonly screenTrack: MediaStreamTrack | null;
  setMicEnabled(enabled: boolean): void;
  acquire(): Promise<void>;
  stopCamera(): void;
  startCamera(): Promise<MediaStreamTrack | null>;
  startScreen(): Promise<MediaStreamTrack | null>;
  stopScreen(): void;
  selectCamera(deviceId: string): Promise<MediaStreamTrack | null>;
  selectMic(deviceId: string): Promise<MediaStreamTrack | null>;
}

/** Returns a notice for the user when something could not be done, else null. */
export type ControlResult = Promise<string | null>;

export async function toggleMic(media: LocalMediaPort, plane: MediaPlane | null): ControlResult {
  const enable = !media.micEnabled;
  media.setMicEnabled(enable);
  if (plane?.producers.has('mic')) {
    await (enable ? plane.resumeProducer('mic') : plane.pauseProducer('mic'));
    return null;
  }
  if (!enable) return null;
  if (!media.micTrack) await media.acquire();
  const track = media.micTrack;
  if (!track) return 'The microphone could not be started.';
  await plane?.produce('mic', track, false);
  return null;
}

export async function toggleCamera(media: LocalMediaPort, plane: MediaPlane | null): ControlResult {
  if (media.cameraEnabled) {
    media.stopCamera();
    if (plane?.producers.has('camera')) {
      await plane.replaceTrack('camera', null).catch(() => false);
      await plane.pauseProducer('camera');
    }
    return null;
  }
  const track = await media.startCamera();
  if (!track) return 'The camera could not be started.';
  if (plane && (await plane.replaceTrack('camera', track))) await plane.resumeProducer('camera');
  else await plane?.produce('camera', track, false);
  return null;
}

/** Start sharing the screen (`onEnded`: the browser's own "Stop sharing" ended the track). */
export async function startScreen(media: LocalMediaPort, plane: MediaPlane | null, onEnded: () => void): ControlResult {
  let track: MediaStreamTrack | null;
  try {
    track = await media.startScreen();
  } catch (err) {
    return err instanceof DOMException && err.name === 'NotAllowedError' ? 'Screen sharing was cancelled.' : 'Screen sharing failed.';
  }
  if (!track) return null;
  track.addEventListener('ended', onEnded, { once: true });
  await plane?.produce('screen', track, false);
  return null;
}

export async function stopScreen(media: LocalMediaPort, plane: MediaPlane | null): Promise<void> {
  media.stopScreen();
  await plane?.closeProducer('screen');
}

/** Switch a device in the call (the sender, and so its transform, stays the same). */
export async function changeDevice(media: LocalMediaPort, plane: MediaPlane | null, kind: 'camera' | 'mic', deviceId: string): Promise<void> {
  const track = kind === 'camera' ? await media.selectCamera(deviceId) : await media.selectMic(deviceId);
  if (track) await plane?.replaceTrack(kind, track);
}

/** A join completed: send every local track that is live now (the mic paused if muted). */
export function sendCurrentTracks(media: LocalMediaPort, plane: MediaPlane): Promise<void>[] {
  const live = (t: MediaStreamTrack | null): t is MediaStreamTrack => !!t && t.readyState === 'live';
  const jobs: Promise<void>[] = [];
  if (live(media.micTrack)) jobs.push(plane.produce('mic', media.micTrack, !media.micEnabled));
  if (media.cameraEnabled && live(media.cameraTrack)) jobs.push(plane.produce('camera', media.cameraTrack, false));
  if (live(media.screenTrack)) jobs.push(plane.produce('screen', media.screenTrack, false));
  return jobs;
}
