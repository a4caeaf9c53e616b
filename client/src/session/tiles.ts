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
  /** The media the server routed here is not this member's (its frames are dropped): shown instead of the video. */
  warning: string | null;
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

/** One entry per member (in the people list's order) with the media we consume from it, by source. */
export function peersWithMedia(members: readonly { peerId: string; name?: string | undefined }[], consumers: Iterable<RemoteMedia>): PeerTileInput[] {
  const byPeer = new Map<string, Partial<Record<RemoteMedia['source'], RemoteMedia>>>();
  for (const m of consumers) byPeer.set(m.peerId, { ...byPeer.get(m.peerId), [m.source]: m });
  return members.map(({ peerId: id, name }) => ({ id, name: name ?? 'Participant', camera: byPeer.get(id)?.camera, mic: byPeer.get(id)?.mic, screen: byPeer.get(id)?.screen }));
}

const tile = (t: Omit<TileModel, 'mirrored' | 'micOff' | 'speaking' | 'audioTrack' | 'videoConsumerId' | 'warning'> & Partial<TileModel>): TileModel => ({
  warning: null,
  mirrored: false,
  micOff: false,
  speaking: false,
  audioTrack: null,
  videoConsumerId: null,
  ...t,
});

/** What a tile shows when the server routed another member's media into it. */
export const misattributedText = (name: string): string => `This is not ${name}'s media: the server sent someone else's here. It is not shown.`;

/**
 * `misattributed`: consumer ids whose pipeline receives only another member's frames (trust-monitor `attribution`):
 * their tracks are not played and the tile says why.
 */
export function buildTiles(self: LocalTileInput, peers: readonly PeerTileInput[], activeSpeaker: string | null, misattributed: ReadonlySet<string> = new Set()): TileModel[] {
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
  const bad = (m: RemoteMedia | undefined): boolean => !!m && misattributed.has(m.consumer.id);
  const playable = (m: RemoteMedia | undefined): RemoteMedia | undefined => (m && isLive(m) && !bad(m) ? m : undefined);
  for (const p of peers) {
    const { camera, mic, screen } = p;
    tiles.push(
      tile({
        id: `peer-${p.id}-camera`,
        peerId: p.id,
        source: 'camera',
        local: false,
        name: p.name,
        videoTrack: playable(camera)?.consumer.track ?? null,
        audioTrack: mic && !bad(mic) ? mic.consumer.track : null,
        videoConsumerId: camera ? camera.consumer.id : null,
        micOff: !mic || !isLive(mic),
        speaking: activeSpeaker === p.id,
        warning: bad(camera) || bad(mic) ? misattributedText(p.name) : null,
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
          videoTrack: playable(screen)?.consumer.track ?? null,
          videoConsumerId: screen.consumer.id,
          warning: bad(screen) ? misattributedText(p.name) : null,
        }),
      );
    }
  }
  return tiles;
}
