/**
 * The signaling wire contract, shared by the server (signaling/src) and the browser client (client/src).
 *
 * Every client->server event carries one payload object and an ack callback. The server validates the
 * payload with the schema of the same name below before it touches it, and answers through the ack with
 * either `{ ok: true, data }` or `{ ok: false, error: { code, message } }` where `code` is one of
 * `ERROR_CODES`. Nothing here carries a key, the invite secret or a display name: profile data and key
 * material travel only inside opaque `relay` blobs that the clients encrypt.
 */
import { z } from 'zod';
import {
  DIRECTIONS,
  MEDIA_KINDS,
  TRACK_SOURCES,
  type ConsumerInfo,
  type ErrorCode,
  type ProducerInfo,
  type TransportInfo,
} from '../../sfu/src/wire.ts';

// The DTOs the SFU hands out, their enums and the closed set of error codes (with their meanings) are
// defined once in sfu/src/wire.ts (SfuError uses the codes too); the schemas below use the same tuples.
export type { ConsumerInfo, Direction, MediaKind, ProducerInfo, TrackSource, TransportInfo } from '../../sfu/src/wire.ts';
export { ERROR_CODES, type ErrorCode } from '../../sfu/src/wire.ts';

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

export interface ProtocolError {
  code: ErrorCode;
  message: string;
}
export type AckResult<T> = { ok: true; data: T } | { ok: false; error: ProtocolError };
export type Ack<T> = (res: AckResult<T>) => void;

// ---------------------------------------------------------------------------------------------
// Schemas for inbound payloads.
// ---------------------------------------------------------------------------------------------
/** Room ids: 22 chars base64url (128 random bits), made by the client that creates the meeting. */
export const RoomId = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'roomId must be 22 base64url chars');
/** Server access token: 32 bytes base64url (43 chars), HKDF-derived from the invite secret. */
export const AccessToken = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'accessToken must be 43 base64url chars');
export const Id = z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/);

/** mediasoup parameter objects are passed through to mediasoup, which validates them itself; we bound their shape and size. */
const Json = z.record(z.string(), z.unknown());

export const schemas = {
  join: z.strictObject({ roomId: RoomId, accessToken: AccessToken }),
  leave: z.strictObject({}),
  createTransport: z.strictObject({ direction: z.enum(DIRECTIONS) }),
  connectTransport: z.strictObject({ transportId: Id, dtlsParameters: Json }),
  restartIce: z.strictObject({ transportId: Id }),
  produce: z.strictObject({
    transportId: Id,
    kind: z.enum(MEDIA_KINDS),
    rtpParameters: Json,
    source: z.enum(TRACK_SOURCES),
  }),
  closeProducer: z.strictObject({ producerId: Id }),
  pauseProducer: z.strictObject({ producerId: Id }),
  resumeProducer: z.strictObject({ producerId: Id }),
  consume: z.strictObject({ transportId: Id, producerId: Id, rtpCapabilities: Json }),
  resumeConsumer: z.strictObject({ consumerId: Id }),
  pauseConsumer: z.strictObject({ consumerId: Id }),
  setPreferredLayers: z.strictObject({
    consumerId: Id,
    spatialLayer: z.number().int().min(0).max(2),
    temporalLayer: z.number().int().min(0).max(2).optional(),
  }),
  requestKeyFrame: z.strictObject({ consumerId: Id }),
  /** Added (server engineer): drop one of your consumers you no longer need (e.g. client-side setup failed). */
  closeConsumer: z.strictObject({ consumerId: Id }),
  /**
   * Added (server engineer): ask the sender of `producerId` (a producer of any member of your room, yours
   * included) for a key frame: the server calls requestKeyFrame() on every consumer of that producer, so
   * the sender's encoder emits one (used by the E2EE layer after a key switch).
   */
  requestProducerKeyFrame: z.strictObject({ producerId: Id }),
  /** Opaque, client-encrypted blob for one member (`to`) or every other member (`to` omitted). */
  relay: z.strictObject({ to: Id.optional(), blob: z.string().max(65536).regex(/^[A-Za-z0-9_-]*$/) }),
} as const;

export type Requests = { [K in keyof typeof schemas]: z.infer<(typeof schemas)[K]> };

// ---------------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------------
export interface PeerInfo {
  peerId: string;
}
export interface JoinResponse {
  peerId: string;
  routerRtpCapabilities: Record<string, unknown>;
  peers: PeerInfo[];
  producers: ProducerInfo[];
  /**
   * ICE servers (TURN) the client should use, if configured. With TURN_SECRET the credentials are this join's own
   * (username `<expiry unix s>:<random>`, valid TURN_TTL seconds for new allocations); a new join gets new ones.
   */
  iceServers: { urls: string | string[]; username?: string; credential?: string }[];
  /** RTCPeerConnection `iceTransportPolicy` for both transports: `relay` = media only through the TURN server (ICE_TRANSPORT_POLICY). */
  iceTransportPolicy: 'all' | 'relay';
  /**
   * HIDE_VOICE_ACTIVITY=on: send the mic without DTX at a constant bitrate and pad every Opus frame to a fixed size
   * inside SFrame (docs/protocol.md A §2.1), and strip that padding from every Opus frame received in this room.
   */
  hideVoiceActivity: boolean;
}

export interface Responses {
  join: JoinResponse;
  leave: Record<string, never>;
  createTransport: TransportInfo;
  connectTransport: Record<string, never>;
  /** `iceServers`: fresh TURN credentials (those of the join may have expired; coturn checks expiry when allocating). */
  restartIce: { iceParameters: Record<string, unknown>; iceServers: JoinResponse['iceServers'] };
  produce: { producerId: string };
  closeProducer: Record<string, never>;
  pauseProducer: Record<string, never>;
  resumeProducer: Record<string, never>;
  consume: ConsumerInfo;
  resumeConsumer: Record<string, never>;
  pauseConsumer: Record<string, never>;
  setPreferredLayers: Record<string, never>;
  requestKeyFrame: Record<string, never>;
  closeConsumer: Record<string, never>;
  /** `requested`: how many consumers were asked (0 for audio or when nobody consumes it yet). */
  requestProducerKeyFrame: { requested: number };
  relay: Record<string, never>;
}

// ---------------------------------------------------------------------------------------------
// socket.io event maps.
// ---------------------------------------------------------------------------------------------
export type ClientToServerEvents = {
  [K in keyof typeof schemas]: (payload: Requests[K], ack: Ack<Responses[K]>) => void;
};

export interface ServerToClientEvents {
  peerJoined: (p: { peerId: string }) => void;
  peerLeft: (p: { peerId: string }) => void;
  newProducer: (p: ProducerInfo) => void;
  producerClosed: (p: { peerId: string; producerId: string }) => void;
  producerPaused: (p: { peerId: string; producerId: string }) => void;
  producerResumed: (p: { peerId: string; producerId: string }) => void;
  consumerClosed: (p: { consumerId: string }) => void;
  consumerPaused: (p: { consumerId: string }) => void;
  consumerResumed: (p: { consumerId: string }) => void;
  activeSpeaker: (p: { peerId: string | null }) => void;
  /**
   * The room's SFU state was lost: drop all media objects and join again. `worker-died`: its mediasoup worker died;
   * `node-lost` (cluster mode): the node hosting the room is gone (the join then goes to a live node).
   */
  rejoin: (p: { reason: 'worker-died' | 'node-lost' }) => void;
  /**
   * The server is draining for a restart (SIGTERM): the call goes on, new joins get DRAINING, and the server stops at
   * the latest `deadlineMs` from now. Clients say so and, once it is gone, reconnect and rejoin by themselves.
   */
  draining: (p: { deadlineMs: number }) => void;
  relay: (p: { from: string; blob: string }) => void;
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface InterServerEvents {}

export interface SocketData {
  peerId?: string;
  roomId?: string;
}

/** Payload size limit for any single inbound event, in bytes of its JSON. */
export const MAX_PAYLOAD_BYTES = 96 * 1024;
