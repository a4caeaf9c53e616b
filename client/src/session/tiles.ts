/**
 * The tile view model: which tiles the call grid shows and what each one plays. Pure: built from the local
 * tracks, the remote peers and their consumed media.
 *
 * @module
 */
import { isLive, type RemoteMedia } from './media-plane.ts';

export interface TileModel {
  id: string;
  peerId: string | null;
  source: 'camera' | 'screen';
  local: boolean;
  name: string;
  videoTrack: MediaStreamTrack | null;
  audioTrack: MediaStreamTrack | null;
  /** Remote video consumer id (for preferred-layer updates), null for local tiles. */
  videoConsumerId: string | null;
  mirrored: boolean;
  micOff: boolean;
  speaking: boolean;
}

export interface LocalTileInput {
  peerId: string | null;
  name: string;
  cameraTrack: MediaStreamTrack | null;
  screenTrack: MediaStreamTrack | null;
  micOff: boolean;
}

export interface PeerTileInput {
  id: string;
  name: string;
  camera: RemoteMedia | undefined;
  mic: RemoteMedia | undefined;
  screen: RemoteMedia | undefined;
}

const tile = (t: Omit<TileModel, 'mirrored' | 'micOff' | 'speaking' | 'audioTrack' | 'videoConsumerId'> & Partial<TileModel>): TileModel => ({
  mirrored: false,
  micOff: false,
  speaking: false,
  audioTrack: null,
  videoConsumerId: null,
  ...t,
});

export function buildTiles(self: LocalTileInput, peers: readonly PeerTileInput[], activeSpeaker: string | null): TileModel[] {
  const tiles: TileModel[] = [
    tile({
      id: 'local-camera',
      peerId: self.peerId,
      source: 'camera',
      local: true,
      name: `${self.name || 'You'} (you)`,
      videoTrack: self.cameraTrack,
      mirrored: true,
      micOff: self.micOff,
      speaking: self.peerId !== null && activeSpeaker === self.peerId,
    }),
  ];
  if (self.screenTrack) tiles.push(tile({ id: 'local-screen', peerId: self.peerId, source: 'screen', local: true, name: 'Your screen', videoTrack: self.screenTrack }));
  for (const p of peers) {
    const { camera, mic, screen } = p;
    tiles.push(
      tile({
        id: `peer-${p.id}-camera`,
        peerId: p.id,
        source: 'camera',
        local: false,
        name: p.name,
        videoTrack: camera && isLive(camera) ? camera.consumer.track : null,
        audioTrack: mic ? mic.consumer.track : null,
        videoConsumerId: camera ? camera.consumer.id : null,
        micOff: !mic || !isLive(mic),
        speaking: activeSpeaker === p.id,
      }),
    );
    if (screen) {
      tiles.push(
        tile({
          id: `peer-${p.id}-screen`,
          peerId: p.id,
          source: 'screen',
          local: false,
          name: `${p.name}'s screen`,
          videoTrack: isLive(screen) ? screen.consumer.track : null,
          videoConsumerId: screen.consumer.id,
        }),
      );
    }
  }
  return tiles;
}
