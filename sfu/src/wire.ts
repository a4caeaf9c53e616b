/**
 * The data shapes the SFU hands out that travel on the wire unchanged: defined once here and
 * re-exported by the signaling contract (`signaling/src/protocol.ts`, which builds its zod schemas
 * from the same tuples, so schema and type cannot drift). Plain TypeScript: no zod, no mediasoup.
 */

/** The closed set of error codes a request can fail with (see protocol.ts for their meaning). */
export const ERROR_CODES = [
  'BAD_REQUEST', // payload failed its schema, or a per-peer limit / rule was hit
  'TOO_LARGE', // payload over the size limit
  'RATE_LIMITED', // per-socket rate limit hit
  'UNAUTHORIZED', // wrong access token for the room
  'ROOM_FULL', // room at its member cap
  'NOT_JOINED', // the socket has not joined a room
  'ALREADY_JOINED', // the socket already joined a room
  'NOT_FOUND', // transport/producer/consumer/peer does not exist or is not yours
  'CANNOT_CONSUME', // router.canConsume() said no
  'SFU_ERROR', // mediasoup threw
  'UNAVAILABLE', // the room's worker died; rejoin
  'DRAINING', // the server is restarting and takes no new joins; join again (with backoff) until it is back
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

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
