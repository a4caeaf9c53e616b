/**
 * The data shapes the SFU hands out that travel on the wire unchanged: defined once here and
 * re-exported by the signaling contract (`signaling/src/protocol.ts`, which builds its zod schemas
 * from the same tuples, so schema and type cannot drift). Plain TypeScript: no zod, no mediasoup.
 */

/** What a track is: microphone, camera or screen share. (Not `MediaSource`: that is the browser's MSE type.) */
export const TRACK_SOURCES = ['mic', 'camera', 'screen'] as const;
export type TrackSource = (typeof TRACK_SOURCES)[number];

export const MEDIA_KINDS = ['audio', 'video'] as const;
export type MediaKind = (typeof MEDIA_KINDS)[number];

/** A WebRTC transport sends (produce) or receives (consume). */
export const DIRECTIONS = ['send', 'recv'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** A producer as announced to the other members (`newProducer`, join snapshot). */
export interface ProducerInfo {
  peerId: string;
  producerId: string;
  kind: MediaKind;
  source: TrackSource;
  paused: boolean;
}

/** The `createTransport` answer: what the client needs to build its side of the transport. */
export interface TransportInfo {
  id: string;
  iceParameters: Record<string, unknown>;
  iceCandidates: Record<string, unknown>[];
  dtlsParameters: Record<string, unknown>;
}

/** The `consume` answer. */
export interface ConsumerInfo {
  consumerId: string;
  producerId: string;
  peerId: string;
  kind: MediaKind;
  source: TrackSource;
  rtpParameters: Record<string, unknown>;
  type: string;
  producerPaused: boolean;
}
