/**
 * socket.io signaling on top of the SFU.
 *
 * Every inbound event goes through the same pipeline, in this order:
 *   1. per-socket token-bucket rate limit           → RATE_LIMITED
 *   2. exactly one payload argument                  → BAD_REQUEST
 *   3. payload size (JSON bytes) ≤ maxPayloadBytes   → TOO_LARGE
 *   4. `schemas[event].safeParse`                    → BAD_REQUEST (zod message)
 *   5. the handler, run in order with the socket's other events (a per-socket queue)
 * and the ack is called exactly once with `{ ok: true, data }` or `{ ok: false, error: { code, message } }`.
 * A missing ack is tolerated. Unknown events are answered BAD_REQUEST (if they carry an ack) and dropped.
 * Error messages never contain stacks; mediasoup failures are SFU_ERROR.
 *
 * Relay blobs are forwarded untouched and never parsed or logged. The logger only ever sees event
 * names, room ids, peer ids and error codes.
 */
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { Server, type Socket } from 'socket.io';
import { iceServersOf, type IceServer } from '../../sfu/src/config.ts';
import { errorMessage, Logger } from '../../sfu/src/Logger.ts';
import type { Peer } from '../../sfu/src/Peer.ts';
import type { Room } from '../../sfu/src/Room.ts';
import type { Sfu } from '../../sfu/src/Sfu.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import type { MessageCapture } from './capture.ts';
import {
  MAX_PAYLOAD_BYTES,
  schemas,
  type AckResult,
  type ClientToServerEvents,
  type ErrorCode,
  type InterServerEvents,
  type ProtocolError,
  type Requests,
  type Responses,
  type ServerToClientEvents,
  type SocketData,
} from './protocol.ts';
import { TokenBucket } from './RateLimiter.ts';

export type SignalingIo = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
type SignalingSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
type EventName = keyof typeof schemas;

export interface SignalingOptions {
  /** Max JSON size of one inbound payload (default MAX_PAYLOAD_BYTES). */
  maxPayloadBytes?: number;
  /** Per-socket token bucket (default 50 events/s, burst 100). */
  rateLimit?: { perSec: number; burst: number };
  /** ICE servers handed to clients on join (default: none). */
  iceServers?: IceServer[];
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
}

export interface SignalingServer {
  io: SignalingIo;
  /** Disconnects every socket (freeing their SFU state) and closes socket.io. Does not close the HTTP server. */
  close(): Promise<void>;
}

/** An error with a protocol code, raised by the handlers. */
class Failure extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof Failure || error instanceof SfuError) return { code: error.code, message: error.message };
  return { code: 'SFU_ERROR', message: errorMessage(error) };
}

function jsonBytes(payload: unknown): number {
  try {
    const s = JSON.stringify(payload);
    return s === undefined ? 0 : Buffer.byteLength(s, 'utf8');
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

const EVENTS = Object.keys(schemas) as EventName[];
const roomKey = (roomId: string): string => `room:${roomId}`;

interface SocketState {
  room?: Room;
  peer?: Peer;
  detach?: () => void;
  /** Set when the room's worker died, until the next join: requests get UNAVAILABLE. */
  lost: boolean;
  queue: Promise<unknown>;
}

export function createSignalingServer(
  httpServer: HttpServer | HttpsServer,
  sfu: Sfu,
  opts: SignalingOptions = {},
): SignalingServer {
  const maxPayloadBytes = opts.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  const rate = opts.rateLimit ?? { perSec: 50, burst: 100 };
  const iceServers = opts.iceServers ?? iceServersOf({ turnUrls: [], turnUsername: undefined, turnCredential: undefined });
  const logger = (opts.logger ?? new Logger('info')).child('signaling');
  const allowAnyOrigin = opts.allowedOrigins?.includes('*') ?? false;
  const allowedOrigins = new Set(opts.allowedOrigins ?? []);
  const capture = opts.capture;

  const io: SignalingIo = new Server(httpServer, {
    path: opts.path ?? '/socket.io',
    // Leave room for framing so a slightly oversized payload gets a TOO_LARGE answer; far larger
    // messages make engine.io drop the connection.
    maxHttpBufferSize: maxPayloadBytes + 16 * 1024,
    serveClient: false,
    // Cross-site WebSocket connections are refused unless the origin is the server's own or listed.
    allowRequest: (req, callback) => {
      const origin = req.headers.origin;
      if (origin === undefined || allowAnyOrigin || allowedOrigins.has(origin)) return callback(null, true);
      let same = false;
      try {
        same = new URL(origin).host === req.headers.host;
      } catch {
        same = false;
      }
      if (!same) logger.warn('refused cross-origin connection');
      callback(same ? null : 'origin not allowed', same);
    },
  });

  /** peerId → socket, for targeted relay. */
  const sockets = new Map<string, SignalingSocket>();

  io.on('connection', (socket) => {
    const bucket = new TokenBucket(rate.perSec, rate.burst);
    const state: SocketState = { lost: false, queue: Promise.resolve() };
    logger.debug('connected');
    if (capture) {
      capture.record('connect', socket.id, null, 'connect', []);
      // First middleware: every inbound packet, known or not, as received (without the ack callback).
      socket.use((packet, next) => {
        const [event, ...args] = packet as unknown[];
        capture.record('in', socket.id, socket.data.peerId ?? null, typeof event === 'string' ? event : String(event), args.filter((a) => typeof a !== 'function'));
        next();
      });
      socket.onAnyOutgoing((event: string, ...args: unknown[]) => capture.record('out', socket.id, socket.data.peerId ?? null, event, args));
      socket.on('disconnect', (reason) => capture.record('disconnect', socket.id, socket.data.peerId ?? null, 'disconnect', [reason]));
    }

    const enqueue = <T>(fn: () => Promise<T>): Promise<T> => {
      const run = state.queue.then(fn, fn);
      state.queue = run.catch(() => undefined);
      return run;
    };

    const dropState = (): void => {
      state.detach?.();
      state.detach = undefined;
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
        if (state.lost) throw new Failure('UNAVAILABLE', 'the room was lost; rejoin');
        throw new Failure('NOT_JOINED', 'join a room first');
      }
      return { room, peer };
    };

    const attach = (room: Room, peer: Peer): void => {
      const me = peer.id;
      const others =
        <A extends { peerId: string | null }>(fn: (a: A) => void) =>
        (a: A): void => {
          if (a.peerId !== me) fn(a);
        };
      const onPeerJoined = others<{ peerId: string }>((p) => socket.emit('peerJoined', { peerId: p.peerId }));
      const onPeerLeft = others<{ peerId: string }>((p) => socket.emit('peerLeft', { peerId: p.peerId }));
      const onNewProducer = others<Parameters<ServerToClientEvents['newProducer']>[0]>((p) => socket.emit('newProducer', { ...p }));
      const onProducerClosed = others<{ peerId: string; producerId: string }>((p) =>
        socket.emit('producerClosed', { peerId: p.peerId, producerId: p.producerId }),
      );
      const onProducerPaused = others<{ peerId: string; producerId: string }>((p) =>
        socket.emit('producerPaused', { peerId: p.peerId, producerId: p.producerId }),
      );
      const onProducerResumed = others<{ peerId: string; producerId: string }>((p) =>
        socket.emit('producerResumed', { peerId: p.peerId, producerId: p.producerId }),
      );
      const onActiveSpeaker = (p: { peerId: string | null }): void => {
        socket.emit('activeSpeaker', { peerId: p.peerId });
      };
      const onConsumerClosed = (p: { consumerId: string }): void => {
        socket.emit('consumerClosed', { consumerId: p.consumerId });
      };
      const onConsumerPaused = (p: { consumerId: string }): void => {
        socket.emit('consumerPaused', { consumerId: p.consumerId });
      };
      const onConsumerResumed = (p: { consumerId: string }): void => {
        socket.emit('consumerResumed', { consumerId: p.consumerId });
      };
      const onClosed = (info: { reason: string }): void => {
        if (state.peer !== peer) return;
        dropState();
        if (info.reason === 'worker-died') {
          state.lost = true;
          logger.warn('room lost with its worker; asking peer to rejoin', { roomId: room.id, peerId: me });
          socket.emit('rejoin', { reason: 'worker-died' });
        }
      };
      room.on('peerJoined', onPeerJoined);
      room.on('peerLeft', onPeerLeft);
      room.on('newProducer', onNewProducer);
      room.on('producerClosed', onProducerClosed);
      room.on('producerPaused', onProducerPaused);
      room.on('producerResumed', onProducerResumed);
      room.on('activeSpeaker', onActiveSpeaker);
      room.on('closed', onClosed);
      peer.on('consumerClosed', onConsumerClosed);
      peer.on('consumerPaused', onConsumerPaused);
      peer.on('consumerResumed', onConsumerResumed);
      state.detach = () => {
        room.off('peerJoined', onPeerJoined);
        room.off('peerLeft', onPeerLeft);
        room.off('newProducer', onNewProducer);
        room.off('producerClosed', onProducerClosed);
        room.off('producerPaused', onProducerPaused);
        room.off('producerResumed', onProducerResumed);
        room.off('activeSpeaker', onActiveSpeaker);
        room.off('closed', onClosed);
        peer.off('consumerClosed', onConsumerClosed);
        peer.off('consumerPaused', onConsumerPaused);
        peer.off('consumerResumed', onConsumerResumed);
      };
    };

    const handlers: { [K in EventName]: (req: Requests[K]) => Promise<Responses[K]> } = {
      join: async ({ roomId, accessToken }) => {
        if (state.peer) throw new Failure('ALREADY_JOINED', 'already joined a room; leave first');
        const { room, peer } = await sfu.join(roomId, accessToken);
        if (!socket.connected) {
          sfu.leave(room.id, peer.id);
          throw new Failure('NOT_JOINED', 'disconnected');
        }
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
        return {
          peerId: peer.id,
          routerRtpCapabilities: room.rtpCapabilities,
          peers: room
            .peers()
            .filter((p) => p.id !== peer.id)
            .map((p) => ({ peerId: p.id })),
          producers: room.producerInfos(peer.id),
          iceServers: iceServers.map((s) => ({ ...s })),
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
      restartIce: async ({ transportId }) => requireJoined().peer.restartIce(transportId),
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
        if (to !== undefined) {
          const target = room.getPeer(to);
          const targetSocket = sockets.get(to);
          if (!target || !targetSocket || targetSocket.data.roomId !== room.id) throw new Failure('NOT_FOUND', 'peer not found');
          targetSocket.emit('relay', { from: peer.id, blob });
        } else {
          socket.to(roomKey(room.id)).emit('relay', { from: peer.id, blob });
        }
        return {};
      },
    };

    // Unknown events: count them, answer BAD_REQUEST if they carry an ack, never dispatch them.
    socket.use((packet, next) => {
      const [event] = packet;
      if (typeof event === 'string' && Object.hasOwn(schemas, event)) {
        next();
        return;
      }
      const last = packet[packet.length - 1];
      const ack = typeof last === 'function' ? (last as (r: AckResult<never>) => void) : undefined;
      const code: ErrorCode = bucket.take() ? 'BAD_REQUEST' : 'RATE_LIMITED';
      logger.debug('rejected unknown event', { code });
      const answer: AckResult<never> = { ok: false, error: { code, message: code === 'BAD_REQUEST' ? 'unknown event' : 'rate limited' } };
      if (ack) capture?.record('ack', socket.id, socket.data.peerId ?? null, typeof event === 'string' ? event : String(event), [answer]);
      try {
        ack?.(answer);
      } catch {
        // ignore
      }
    });

    const loose = socket as unknown as { on(event: string, fn: (...args: unknown[]) => void): void };
    for (const event of EVENTS) {
      loose.on(event, (...args: unknown[]) => {
        const last = args[args.length - 1];
        const ack = typeof last === 'function' ? (args.pop() as (r: AckResult<unknown>) => void) : undefined;
        let answered = false;
        const reply = (res: AckResult<unknown>): void => {
          if (answered) return;
          answered = true;
          if (!res.ok) {
            const level = res.error.code === 'SFU_ERROR' ? 'warn' : 'debug';
            logger[level]('request failed', {
              event,
              code: res.error.code,
              roomId: socket.data.roomId ?? null,
              peerId: socket.data.peerId ?? null,
            });
          }
          if (!ack) return;
          capture?.record('ack', socket.id, socket.data.peerId ?? null, event, [res]);
          try {
            ack(res);
          } catch {
            // a throwing ack is the client library's problem
          }
        };
        const fail = (code: ErrorCode, message: string): void => reply({ ok: false, error: { code, message } });

        if (!bucket.take()) return fail('RATE_LIMITED', 'too many events; slow down');
        if (args.length !== 1) return fail('BAD_REQUEST', 'expected exactly one payload object');
        const payload = args[0];
        if (jsonBytes(payload) > maxPayloadBytes) return fail('TOO_LARGE', `payload over ${maxPayloadBytes} bytes`);
        const parsed = schemas[event].safeParse(payload);
        if (!parsed.success) {
          const message = parsed.error.issues
            .slice(0, 5)
            .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
            .join('; ');
          return fail('BAD_REQUEST', message.slice(0, 500));
        }
        logger.debug('event', { event, roomId: socket.data.roomId ?? null, peerId: socket.data.peerId ?? null });
        const handler = handlers[event] as (req: unknown) => Promise<unknown>;
        enqueue(() => handler(parsed.data)).then(
          (data) => reply({ ok: true, data }),
          (error: unknown) => {
            const err = toProtocolError(error);
            // A mediasoup call that failed because the room's worker died meanwhile: tell the client to rejoin.
            if (err.code === 'SFU_ERROR' && state.lost) err.code = 'UNAVAILABLE';
            reply({ ok: false, error: err });
          },
        );
      });
    }

    socket.on('disconnect', () => {
      logger.debug('disconnected', { roomId: socket.data.roomId ?? null, peerId: socket.data.peerId ?? null });
      // After whatever is still queued for this socket (a pending join included).
      void enqueue(async () => leave());
    });
  });

  let closed = false;
  return {
    io,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => {
        // io.close() would also close the HTTP server; only shut the engine and sockets down here.
        io.engine.close();
        resolve();
      });
      io.removeAllListeners();
    },
  };
}
