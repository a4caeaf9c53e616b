/**
 * socket.io signaling on top of the SFU: the socket-facing "edge" (origin check, per-address limits, pipeline,
 * drain, capture). The room logic (handler table, member state, events, relay budget) is room-host.ts's: each
 * validated request runs there, on this node, or in cluster mode on the room's home node over the node link
 * (cluster/link.ts), which also carries the home's replies and events back in order.
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
import type { Redis } from 'ioredis';
import { TurnIssuer } from './turn.ts';
import { errorMessage, Logger } from '../../sfu/src/Logger.ts';
import type { Room } from '../../sfu/src/Room.ts';
import type { Sfu } from '../../sfu/src/Sfu.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import type { MessageCapture } from './capture.ts';
import type { SignalingMetrics } from './metrics.ts';
import { NodeLink, type ClusterDirectory } from './cluster/link.ts';
import { RoomHost, type EventName, type MemberRef } from './room-host.ts';
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
  /**
   * Cluster mode (REDIS_URL; off by default: one process, no Redis). `directory`: this node's room directory
   * (cluster/directory.ts RoomDirectory; its `nodeId` names this node). `redis`: a connected client the node link
   * (cluster/link.ts) writes with and duplicates once to read; the caller closes it after `close()`.
   * `requestTimeoutMs`: a request forwarded to another node unanswered this long gets UNAVAILABLE (default 10 s).
   * A socket may connect to any node; its requests run on the room's home node (see room-host.ts).
   */
  cluster?: { directory: ClusterDirectory; redis: Redis; requestTimeoutMs?: number };
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

/** The edge side of one local socket. */
interface EdgeSocket {
  readonly socket: SignalingSocket;
  /** The node hosting this socket's member (set at join; kept after it left, so later requests get that node's answer). */
  home?: string;
  /** Set when the home node was lost, until the next join: requests get UNAVAILABLE. */
  lost: boolean;
  /** Releases this socket's place in its room's count for its client address. */
  leaveAddressRoom?: () => void;
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

  const drainingNow = (): boolean => drainEndsAt !== undefined;
  const cluster = opts.cluster;
  const nodeId = cluster?.directory.nodeId ?? 'local';
  const localSocket = (id: string): SignalingSocket | undefined => io.sockets.sockets.get(id);

  /** The edge side of each local socket: which node hosts its member, and its room place for its address. */
  const edges = new Map<string, EdgeSocket>();
  /**
   * The member of local socket `id` left its room on node `from`: free the room place, clear the room fields. Ignored
   * when the socket's member lives on another node by now (a late word from a former home); no `from`: in any case.
   */
  const leftRoom = (id: string, from?: string): void => {
    const edge = edges.get(id);
    if (!edge || (from !== undefined && edge.home !== from)) return;
    edge.leaveAddressRoom?.();
    edge.leaveAddressRoom = undefined;
    edge.socket.data.peerId = undefined;
    edge.socket.data.roomId = undefined;
  };
  const emitLocal = (id: string, event: string, payload: Record<string, unknown>): void => {
    const socket = localSocket(id);
    if (socket) (socket.emit as (ev: string, p: unknown) => boolean)(event, payload);
  };

  // Cluster mode: requests from other nodes' sockets and what homes send to ours (the receiver runs only once the host exists).
  const link = cluster
    ? new NodeLink({
        redis: cluster.redis,
        nodeId,
        logger,
        ...(cluster.requestTimeoutMs !== undefined ? { timeoutMs: cluster.requestTimeoutMs } : {}),
        receiver: {
          request: (from, socket, event, payload) => host.serve({ node: from, socket }, event, payload),
          events: (ids, event, payload) => {
            for (const id of ids) emitLocal(id, event, payload);
          },
          left: (from, socket) => leftRoom(socket, from),
          gone: (from, socket) => host.gone({ node: from, socket }),
        },
      })
    : undefined;

  const host = new RoomHost({
    sfu,
    turn,
    logger,
    relayBudget,
    hideVoiceActivity,
    metrics,
    draining: drainingNow,
    directory: cluster?.directory,
    out: {
      emit(members, event, payload) {
        const remote = new Map<string, string[]>();
        for (const m of members) {
          if (m.node === nodeId) emitLocal(m.socket, event, payload);
          else remote.set(m.node, [...(remote.get(m.node) ?? []), m.socket]);
        }
        for (const [node, ids] of remote) link?.emit(node, ids, event, payload);
      },
      left: (m) => (m.node === nodeId ? leftRoom(m.socket, nodeId) : link?.left(m.node, m.socket)),
      connected: (m) => (m.node === nodeId ? (localSocket(m.socket)?.connected ?? false) : true),
    },
  });

  const offNodeLost = cluster?.directory.onNodeLost((lost) => {
    if (lost === nodeId) return;
    logger.warn('node lost: members it held leave, members it hosted rejoin');
    link?.failPending(lost);
    host.dropNode(lost);
    for (const edge of edges.values()) {
      if (edge.home !== lost) continue;
      edge.home = undefined;
      edge.lost = true;
      leftRoom(edge.socket.id);
      edge.socket.emit('rejoin', { reason: 'node-lost' });
    }
  });

  io.on('connection', (socket) => {
    const edge: EdgeSocket = { socket, lost: false };
    edges.set(socket.id, edge);
    const member: MemberRef = { node: nodeId, socket: socket.id };
    const address = limits.addressOf(socket.request);
    logger.debug('connected');
    // Before the pipeline's middleware: the capture sees every packet as received.
    capture?.watch(socket);
    if (drainEndsAt !== undefined) socket.emit('draining', drainNotice());

    /** Runs `event` on node `home` for this socket's member. */
    const atHome = async <K extends EventName>(home: string, event: K, req: Requests[K]): Promise<Responses[K]> => {
      if (home === nodeId || !link) return host.handle(member, event, req);
      const res = await link.request(home, socket.id, event, req);
      if (!res.ok) {
        const { code, message } = res.error;
        if (code === 'UNAVAILABLE') {
          // The client rejoins on UNAVAILABLE. Whatever the home still holds for this socket goes (a request that timed
          // out here may yet run there: a late join would otherwise stay behind as a member nobody plays).
          link.gone(home, socket.id);
          if (edge.home === home) {
            leftRoom(socket.id);
            edge.home = undefined;
            edge.lost = true;
          }
        }
        // The home's answer as is: the pipeline answers a plain Error as SFU_ERROR with its message (the home never sends TOO_LARGE).
        throw code === 'SFU_ERROR' || code === 'TOO_LARGE' ? new Error(message) : new SfuError(code, message);
      }
      return res.data as Responses[K];
    };
    const goneAt = (home: string): void => (home === nodeId || !link ? host.gone(member) : link.gone(home, socket.id));
    const locate = async (roomId: string): Promise<string> => {
      if (!cluster || !link) return nodeId;
      if (!(await link.readyWithin())) throw new SfuError('UNAVAILABLE', 'the cluster link is not up; join again in a moment');
      try {
        return (await cluster.directory.locate(roomId)).home;
      } catch (error) {
        logger.warn('room directory unavailable', { error: errorMessage(error) });
        throw new SfuError('UNAVAILABLE', 'room directory unavailable; join again in a moment');
      }
    };
    /** Joins at the room's home; a home that no longer is one answers UNAVAILABLE, and the room is located once more. */
    const joinAtHome = async (req: Requests['join'], retry: boolean): Promise<Responses['join']> => {
      const home = await locate(req.roomId);
      if (edge.home !== undefined && edge.home !== home) goneAt(edge.home);
      edge.home = home;
      edge.lost = false;
      try {
        return await atHome(home, 'join', req);
      } catch (error) {
        if (!retry || !cluster || !(error instanceof SfuError) || error.code !== 'UNAVAILABLE') throw error;
        return joinAtHome(req, false);
      }
    };

    const handlers = Object.fromEntries(
      (Object.keys(schemas) as EventName[]).map((event) => [
        event,
        async (req: Requests[EventName]) => {
          if (edge.lost) throw new SfuError('UNAVAILABLE', 'the room was lost; rejoin');
          return atHome(edge.home ?? nodeId, event, req);
        },
      ]),
    ) as { [K in EventName]: (req: Requests[K]) => Promise<Responses[K]> };
    handlers.join = async (req) => {
      if (socket.data.peerId !== undefined) throw new SfuError('ALREADY_JOINED', 'already joined a room; leave first');
      if (drainEndsAt !== undefined) throw new SfuError('DRAINING', 'the server is restarting; join again in a moment');
      // Reserved before the room can be created, so a refused join creates nothing.
      const leaveAddressRoom = limits.enterRoom(address, req.roomId);
      if (!leaveAddressRoom) throw new SfuError('RATE_LIMITED', 'too many rooms joined from this address');
      let joined: Responses['join'];
      try {
        joined = await joinAtHome(req, true);
      } catch (err) {
        leaveAddressRoom();
        throw err;
      }
      edge.leaveAddressRoom = leaveAddressRoom;
      socket.data.peerId = joined.peerId;
      socket.data.roomId = req.roomId;
      return joined;
    };

    const pipeline = servePipeline(socket, schemas, handlers, {
      maxPayloadBytes,
      rateLimit: rate,
      logger,
      capture,
      ...(metrics ? { onFailure: (code: ErrorCode) => metrics.failed(code) } : {}),
    });

    socket.on('disconnect', () => {
      logger.debug('disconnected', { roomId: socket.data.roomId ?? null, peerId: socket.data.peerId ?? null });
      // After whatever is still queued for this socket (a pending join included).
      void pipeline.enqueue(async () => {
        host.gone(member);
        if (edge.home !== undefined && edge.home !== nodeId) goneAt(edge.home);
        leftRoom(socket.id);
        edges.delete(socket.id);
      });
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
      // `local`: with a cluster adapter a plain io.emit / io.disconnectSockets would reach every node's sockets.
      io.local.emit('draining', drainNotice());
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      offNodeLost?.();
      io.local.disconnectSockets(true);
      link?.close();
      // io.close() would also close the HTTP server; only shut the engine and sockets down here.
      io.engine.close();
      io.removeAllListeners();
    },
  };
}
