/**
 * socket.io signaling on top of the SFU: the handler table and the per-socket room state.
 *
 * Every inbound event goes through the generic pipeline of `pipeline.ts` (rate limit, one payload,
 * size, schema, per-socket serial queue, exactly-once ack, unknown events). Error messages never
 * contain stacks; mediasoup failures are SFU_ERROR, UNAVAILABLE once the room's worker died.
 *
 * Relay blobs are forwarded untouched and never parsed or logged. The logger only ever sees event
 * names, room ids, peer ids (written only as per-process pseudonyms, see Logger.ts) and error codes.
 *
 * Quotas (limits.ts): open sockets and rooms joined per client address (a refused handshake gets
 * "too many connections", a refused join RATE_LIMITED), and relay fan-out bytes per room (RATE_LIMITED, nothing
 * sent). Client addresses are only counted in memory: never logged.
 */
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { Server, type Socket } from 'socket.io';
import { hideVoiceActivityCapabilities } from '../../sfu/src/codecs.ts';
import { TurnIssuer } from './turn.ts';
import { Logger } from '../../sfu/src/Logger.ts';
import type { Peer } from '../../sfu/src/Peer.ts';
import type { Room } from '../../sfu/src/Room.ts';
import type { Sfu } from '../../sfu/src/Sfu.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import type { MessageCapture } from './capture.ts';
import type { SignalingMetrics } from './metrics.ts';
import { forward, PEER_EVENTS, ROOM_EVENTS } from './forward.ts';
import { AddressLimits, RelayBudget, type AddressLimitOptions, type RelayBudgetOptions } from './limits.ts';
import { servePipeline } from './pipeline.ts';
import {
  MAX_PAYLOAD_BYTES,
  schemas,
  type ClientToServerEvents,
  type ErrorCode,
  type InterServerEvents,
  type Requests,
  type Responses,
  type ServerToClientEvents,
  type SocketData,
} from './protocol.ts';

export type SignalingIo = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
type SignalingSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
type EventName = keyof typeof schemas;

export interface SignalingOptions {
  /** Max JSON size of one inbound payload (default MAX_PAYLOAD_BYTES). */
  maxPayloadBytes?: number;
  /** Per-socket token bucket (default 50 events/s, burst 100). */
  rateLimit?: { perSec: number; burst: number };
  /** ICE servers and transport policy of each join answer (per-join TURN credentials with TURN_SECRET; default: none, `all`). */
  turn?: TurnIssuer;
  logger?: Logger;
  /** socket.io path (default /socket.io). */
  path?: string;
  /**
   * Browser origins allowed to connect besides the page's own (same host). `['*']` allows any.
   * Requests without an Origin header (non-browser clients) are allowed.
   */
  allowedOrigins?: string[];
  /** TEST-ONLY: record every inbound and outbound message (capture.ts). Off unless a test passes one. */
  capture?: MessageCapture;
  /** Sockets and rooms per client address (default 64 / 16, no proxy header). */
  addressLimits?: AddressLimitOptions;
  /** Relay fan-out per room (default 4 MB/s, burst 32 MB). */
  relayBudget?: RelayBudgetOptions;
  /** HIDE_VOICE_ACTIVITY: told to clients in the join answer, with Opus send parameters for constant-size audio. */
  hideVoiceActivity?: boolean;
  /** Counting hooks (metrics.ts; METRICS_LISTEN): joins, relays, errors. None by default. */
  metrics?: SignalingMetrics;
}

export interface SignalingServer {
  io: SignalingIo;
  /** Disconnects every socket (freeing their SFU state) and closes socket.io. Does not close the HTTP server. */
  close(): Promise<void>;
  /** Set by `drain()`: joins are refused with DRAINING. */
  readonly draining: boolean;
  /**
   * Start draining for a restart (idempotent): every new join is refused with DRAINING, and every connected socket
   * (and each that connects later) gets `draining { deadlineMs }`. Calls in progress go on.
   */
  drain(deadlineMs: number): void;
}

const roomKey = (roomId: string): string => `room:${roomId}`;

interface SocketState {
  room?: Room;
  peer?: Peer;
  detach?: () => void;
  /** Releases this socket's place in its room's count for its client address. */
  leaveAddressRoom?: () => void;
  /** Set when the room's worker died, until the next join: requests get UNAVAILABLE. */
  lost: boolean;
}

export function createSignalingServer(
  httpServer: HttpServer | HttpsServer,
  sfu: Sfu,
  opts: SignalingOptions = {},
): SignalingServer {
  const maxPayloadBytes = opts.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  const rate = opts.rateLimit ?? { perSec: 50, burst: 100 };
  const turn = opts.turn ?? TurnIssuer.none();
  const logger = (opts.logger ?? new Logger('info')).child('signaling');
  const allowAnyOrigin = opts.allowedOrigins?.includes('*') ?? false;
  const allowedOrigins = new Set(opts.allowedOrigins ?? []);
  const capture = opts.capture;
  const limits = new AddressLimits(opts.addressLimits ?? { maxSockets: 64, maxRooms: 16, trustProxy: false });
  const relayBudget = new RelayBudget<Room>(opts.relayBudget ?? { bytesPerSec: 4_000_000, burstBytes: 32_000_000 });
  const hideVoiceActivity = opts.hideVoiceActivity ?? false;
  const metrics = opts.metrics;
  /** When a drain started, the time by which the server stops (ms since the epoch). */
  let drainEndsAt: number | undefined;
  const drainNotice = (): { deadlineMs: number } => ({ deadlineMs: Math.max(0, (drainEndsAt ?? 0) - Date.now()) });

  const io: SignalingIo = new Server(httpServer, {
    path: opts.path ?? '/socket.io',
    // Leave room for framing so a slightly oversized payload gets a TOO_LARGE answer; far larger
    // messages make engine.io drop the connection.
    maxHttpBufferSize: maxPayloadBytes + 16 * 1024,
    serveClient: false,
    // Cross-site WebSocket connections are refused unless the origin is the server's own or listed.
    allowRequest: (req, callback) => {
      const origin = req.headers.origin;
      let allowed = origin === undefined || allowAnyOrigin || allowedOrigins.has(origin);
      if (!allowed) {
        try {
          allowed = new URL(origin!).host === req.headers.host;
        } catch {
          allowed = false;
        }
        if (!allowed) {
          logger.warn('refused cross-origin connection');
          return callback('origin not allowed', false);
        }
      }
      if (!limits.canConnect(limits.addressOf(req))) {
        logger.warn('refused connection: too many from one client address');
        return callback('too many connections from this address', false);
      }
      callback(null, true);
    },
  });
  // The authoritative count (handshakes checked above may race): one per open engine connection, released on close.
  io.engine.on('connection', (conn: { request: Parameters<AddressLimits['addressOf']>[0]; close(): void; once(ev: 'close', fn: () => void): void }) => {
    const release = limits.connect(limits.addressOf(conn.request));
    if (!release) {
      logger.warn('refused connection: too many from one client address');
      conn.close();
      return;
    }
    conn.once('close', release);
  });

  /** peerId → socket, for targeted relay. */
  const sockets = new Map<string, SignalingSocket>();

  io.on('connection', (socket) => {
    const state: SocketState = { lost: false };
    const address = limits.addressOf(socket.request);
    logger.debug('connected');
    // Before the pipeline's middleware: the capture sees every packet as received.
    capture?.watch(socket);
    if (drainEndsAt !== undefined) socket.emit('draining', drainNotice());

    const dropState = (): void => {
      state.detach?.();
      state.detach = undefined;
      state.leaveAddressRoom?.();
      state.leaveAddressRoom = undefined;
      if (state.peer) {
        if (sockets.get(state.peer.id) === socket) sockets.delete(state.peer.id);
      }
      if (state.room) void socket.leave(roomKey(state.room.id));
      state.peer = undefined;
      state.room = undefined;
      socket.data.peerId = undefined;
      socket.data.roomId = undefined;
    };

    const leave = (): void => {
      const { room, peer } = state;
      if (!room || !peer) return;
      dropState();
      sfu.leave(room.id, peer.id);
      logger.info('left', { roomId: room.id, peerId: peer.id });
    };

    const requireJoined = (): { room: Room; peer: Peer } => {
      const { room, peer } = state;
      if (!room || !peer || peer.closed) {
        if (state.lost) throw new SfuError('UNAVAILABLE', 'the room was lost; rejoin');
        throw new SfuError('NOT_JOINED', 'join a room first');
      }
      return { room, peer };
    };

    const send = (event: keyof ServerToClientEvents, payload: Record<string, unknown>): void => {
      (socket.emit as (ev: string, p: unknown) => boolean)(event, payload);
    };
    const attach = (room: Room, peer: Peer): void => {
      const onClosed = (info: { reason: string }): void => {
        if (state.peer !== peer) return;
        dropState();
        if (info.reason === 'worker-died') {
          state.lost = true;
          logger.warn('room lost with its worker; asking peer to rejoin', { roomId: room.id, peerId: peer.id });
          socket.emit('rejoin', { reason: 'worker-died' });
        }
      };
      room.on('closed', onClosed);
      // A worker that dies takes only its part of a room: its peers close with 'worker-died' while the room stays.
      const onPeerClosed = (info: { reason: string }): void => {
        if (info.reason === 'worker-died') onClosed(info);
      };
      peer.on('closed', onPeerClosed);
      const offs = [forward(room, ROOM_EVENTS, peer.id, send), forward(peer, PEER_EVENTS, peer.id, send), () => void room.off('closed', onClosed), () => void peer.off('closed', onPeerClosed)];
      state.detach = () => {
        for (const off of offs) off();
      };
    };

    const handlers: { [K in EventName]: (req: Requests[K]) => Promise<Responses[K]> } = {
      join: async ({ roomId, accessToken }) => {
        const started = performance.now();
        if (state.peer) throw new SfuError('ALREADY_JOINED', 'already joined a room; leave first');
        if (drainEndsAt !== undefined) throw new SfuError('DRAINING', 'the server is restarting; join again in a moment');
        // Reserved before the room can be created, so a refused join creates nothing.
        const leaveAddressRoom = limits.enterRoom(address, roomId);
        if (!leaveAddressRoom) throw new SfuError('RATE_LIMITED', 'too many rooms joined from this address');
        let joined: { room: Room; peer: Peer };
        try {
          joined = await sfu.join(roomId, accessToken);
        } catch (err) {
          leaveAddressRoom();
          throw err;
        }
        const { room, peer } = joined;
        if (!socket.connected) {
          leaveAddressRoom();
          sfu.leave(room.id, peer.id);
          throw new SfuError('NOT_JOINED', 'disconnected');
        }
        state.leaveAddressRoom = leaveAddressRoom;
        state.room = room;
        state.peer = peer;
        state.lost = false;
        socket.data.peerId = peer.id;
        socket.data.roomId = room.id;
        sockets.set(peer.id, socket);
        // From here to the response everything is synchronous: events emitted before `attach` are
        // reflected in the snapshot below, later ones are forwarded.
        void socket.join(roomKey(room.id));
        attach(room, peer);
        logger.info('joined', { roomId: room.id, peerId: peer.id, peers: room.peerCount });
        metrics?.joined((performance.now() - started) / 1000);
        return {
          peerId: peer.id,
          routerRtpCapabilities: hideVoiceActivity ? hideVoiceActivityCapabilities(room.rtpCapabilities) : room.rtpCapabilities,
          peers: room
            .peers()
            .filter((p) => p.id !== peer.id)
            .map((p) => ({ peerId: p.id })),
          producers: room.producerInfos(peer.id),
          // Only here, after sfu.join checked the access token: no TURN credentials without it.
          ...turn.forJoin(),
          hideVoiceActivity,
        };
      },
      leave: async () => {
        requireJoined();
        leave();
        return {};
      },
      createTransport: async ({ direction }) => requireJoined().peer.createTransport(direction),
      connectTransport: async ({ transportId, dtlsParameters }) => {
        await requireJoined().peer.connectTransport(transportId, dtlsParameters);
        return {};
      },
      restartIce: async ({ transportId }) => {
        const { iceParameters } = await requireJoined().peer.restartIce(transportId);
        // The new ICE session allocates on the TURN server again: the join's credentials may be past TURN_TTL.
        return { iceParameters, iceServers: turn.forJoin().iceServers };
      },
      produce: async ({ transportId, kind, rtpParameters, source }) => {
        const info = await requireJoined().peer.produce({ transportId, kind, rtpParameters, source });
        return { producerId: info.producerId };
      },
      closeProducer: async ({ producerId }) => {
        await requireJoined().peer.closeProducer(producerId);
        return {};
      },
      pauseProducer: async ({ producerId }) => {
        await requireJoined().peer.pauseProducer(producerId);
        return {};
      },
      resumeProducer: async ({ producerId }) => {
        await requireJoined().peer.resumeProducer(producerId);
        return {};
      },
      consume: async ({ transportId, producerId, rtpCapabilities }) =>
        requireJoined().peer.consume({ transportId, producerId, rtpCapabilities }),
      resumeConsumer: async ({ consumerId }) => {
        await requireJoined().peer.resumeConsumer(consumerId);
        return {};
      },
      pauseConsumer: async ({ consumerId }) => {
        await requireJoined().peer.pauseConsumer(consumerId);
        return {};
      },
      setPreferredLayers: async ({ consumerId, spatialLayer, temporalLayer }) => {
        await requireJoined().peer.setPreferredLayers(consumerId, spatialLayer, temporalLayer);
        return {};
      },
      requestKeyFrame: async ({ consumerId }) => {
        await requireJoined().peer.requestKeyFrame(consumerId);
        return {};
      },
      closeConsumer: async ({ consumerId }) => {
        await requireJoined().peer.closeConsumer(consumerId);
        return {};
      },
      requestProducerKeyFrame: async ({ producerId }) => {
        const { room } = requireJoined();
        return { requested: await room.requestProducerKeyFrame(producerId) };
      },
      relay: async ({ to, blob }) => {
        const { room, peer } = requireJoined();
        // Fan-out budget: what the server sends (blob bytes × recipients), checked before anything is sent.
        const overBudget = (recipients: number): boolean => !relayBudget.take(room, blob.length * recipients);
        const limited = (): SfuError => new SfuError('RATE_LIMITED', 'relay budget of this room used up; retry later');
        if (to !== undefined) {
          const target = room.getPeer(to);
          const targetSocket = sockets.get(to);
          if (!target || !targetSocket || targetSocket.data.roomId !== room.id) throw new SfuError('NOT_FOUND', 'peer not found');
          if (overBudget(1)) throw limited();
          targetSocket.emit('relay', { from: peer.id, blob });
          metrics?.relayed('member', blob.length);
        } else {
          if (overBudget(room.peerCount - 1)) throw limited();
          socket.to(roomKey(room.id)).emit('relay', { from: peer.id, blob });
          metrics?.relayed('room', blob.length * (room.peerCount - 1));
        }
        return {};
      },
    };

    const pipeline = servePipeline(socket, schemas, handlers, {
      maxPayloadBytes,
      rateLimit: rate,
      logger,
      capture,
      ...(metrics ? { onFailure: (code: ErrorCode) => metrics.failed(code) } : {}),
      // A mediasoup call that failed because the room's worker died meanwhile: tell the client to rejoin.
      mapError: (err) => (err.code === 'SFU_ERROR' && state.lost ? { ...err, code: 'UNAVAILABLE' } : err),
    });

    socket.on('disconnect', () => {
      logger.debug('disconnected', { roomId: socket.data.roomId ?? null, peerId: socket.data.peerId ?? null });
      // After whatever is still queued for this socket (a pending join included).
      void pipeline.enqueue(async () => leave());
    });
  });

  let closed = false;
  return {
    io,
    get draining() {
      return drainEndsAt !== undefined;
    },
    drain(deadlineMs: number): void {
      if (drainEndsAt !== undefined || closed) return;
      drainEndsAt = Date.now() + deadlineMs;
      logger.info('draining: new joins refused, clients told', { ms: deadlineMs, rooms: sfu.rooms().length });
      io.emit('draining', drainNotice());
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      io.disconnectSockets(true);
      // io.close() would also close the HTTP server; only shut the engine and sockets down here.
      io.engine.close();
      io.removeAllListeners();
    },
  };
}
