/**
 * The room side of signaling, without sockets: the handler table (join, leave, transports, produce, consume, relay, ...),
 * each member's room state, the relay budget of each room, the room and peer events forwarded to members, the `rejoin`
 * after a worker death, and the join and relay metrics. It runs on the node whose Sfu hosts the room (its "home").
 *
 * A member is named by a `MemberRef` (its socket id on the node holding the socket, its "edge"), and everything for a
 * member goes out through the injected `HostPort`: in one process the port writes to the socket, in a cluster
 * (server.ts, cluster/link.ts) it writes to the edge's ordered link. The socket-facing pipeline (origin, per-address
 * limits, rate limit, schema, serial queue, ack) stays on the edge, so requests of one member come in one at a time.
 *
 * In a cluster (`directory` given), a room is created only on the node the room directory names as its home, with the
 * token hash the directory kept (a room re-created after a node loss still checks the first creator's token); the
 * directory is told when a room is created here and when it closes.
 */
import { hideVoiceActivityCapabilities } from '../../sfu/src/codecs.ts';
import { errorMessage, type Logger } from '../../sfu/src/Logger.ts';
import type { Peer } from '../../sfu/src/Peer.ts';
import type { Room } from '../../sfu/src/Room.ts';
import type { Sfu } from '../../sfu/src/Sfu.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import type { ClusterDirectory } from './cluster/link.ts';
import { forward, PEER_EVENTS, ROOM_EVENTS } from './forward.ts';
import type { RelayBudget } from './limits.ts';
import type { SignalingMetrics } from './metrics.ts';
import { toProtocolError } from './pipeline.ts';
import { schemas, type AckResult, type Requests, type Responses, type ServerToClientEvents } from './protocol.ts';
import type { TurnIssuer } from './turn.ts';

export type EventName = keyof typeof schemas;

/** One member: socket `socket` on node `node` (its edge). */
export interface MemberRef {
  node: string;
  socket: string;
}

/** How the host reaches members; every call for one member arrives in call order. */
export interface HostPort {
  /** Sends `event` to each of `members`. */
  emit(members: MemberRef[], event: keyof ServerToClientEvents, payload: Record<string, unknown>): void;
  /** The member is in no room any more (it left, or its room was lost): its edge frees the socket's room place. */
  left(member: MemberRef): void;
  /** False once the member's socket is known to be gone (a join finishing after that undoes itself). */
  connected(member: MemberRef): boolean;
}

export interface RoomHostOptions {
  sfu: Sfu;
  turn: TurnIssuer;
  logger: Logger;
  relayBudget: RelayBudget<Room>;
  hideVoiceActivity: boolean;
  metrics?: SignalingMetrics | undefined;
  /** True while this node drains: joins are refused with DRAINING. */
  draining(): boolean;
  out: HostPort;
  /** Cluster mode: the room directory (rooms are created here only when it names this node). */
  directory?: ClusterDirectory | undefined;
}

interface MemberState {
  readonly member: MemberRef;
  room?: Room;
  peer?: Peer;
  detach?: () => void;
  /** Set when the room's worker died, until the next join: requests get UNAVAILABLE. */
  lost: boolean;
  /** Set by `gone()`: a join still running for this member undoes itself. */
  gone?: true;
}

type Handlers = { [K in EventName]: (s: MemberState, req: Requests[K]) => Promise<Responses[K]> };

const keyOf = (m: MemberRef): string => `${m.node}/${m.socket}`;

export class RoomHost {
  readonly #opts: RoomHostOptions;
  readonly #members = new Map<string, MemberState>();
  /** peerId → member, for targeted relay. */
  readonly #byPeer = new Map<string, MemberState>();
  /** Rooms this node told the directory it hosts. */
  readonly #hosted = new Set<Room>();
  readonly #handlers: Handlers;

  constructor(opts: RoomHostOptions) {
    this.#opts = opts;
    this.#handlers = this.#makeHandlers();
  }

  /** Runs `event` for `member`. Throws SfuError (SFU_ERROR becomes UNAVAILABLE once the member's room is lost). */
  async handle<K extends EventName>(member: MemberRef, event: K, req: Requests[K]): Promise<Responses[K]> {
    const key = keyOf(member);
    let state = this.#members.get(key);
    if (!state) {
      state = { member, lost: false };
      this.#members.set(key, state);
    }
    try {
      return await this.#handlers[event](state, req);
    } catch (error) {
      // A mediasoup call that failed because the room's worker died meanwhile: tell the client to rejoin.
      const err = toProtocolError(error);
      if (err.code === 'SFU_ERROR' && state.lost) throw new SfuError('UNAVAILABLE', err.message);
      throw error;
    }
  }

  /** A request forwarded by another node (validated there, parsed again here); always resolves with the answer. */
  async serve(member: MemberRef, event: string, payload: unknown): Promise<AckResult<unknown>> {
    const parsed = Object.hasOwn(schemas, event) ? schemas[event as EventName].safeParse(payload) : undefined;
    if (!parsed?.success) return { ok: false, error: { code: 'BAD_REQUEST', message: 'bad forwarded request' } };
    try {
      return { ok: true, data: await this.handle(member, event as EventName, parsed.data as never) };
    } catch (error) {
      return { ok: false, error: toProtocolError(error) };
    }
  }

  /** The member's socket is gone: it leaves its room (if any) and is forgotten. */
  gone(member: MemberRef): void {
    const state = this.#members.get(keyOf(member));
    if (!state) return;
    state.gone = true;
    this.#leave(state);
    this.#members.delete(keyOf(member));
  }

  /** Node `node` is gone: every member whose socket it held leaves. */
  dropNode(node: string): void {
    for (const state of [...this.#members.values()]) if (state.member.node === node) this.gone(state.member);
  }

  #dropState(state: MemberState): void {
    state.detach?.();
    state.detach = undefined;
    if (state.peer && this.#byPeer.get(state.peer.id) === state) this.#byPeer.delete(state.peer.id);
    const wasIn = state.peer !== undefined;
    state.peer = undefined;
    state.room = undefined;
    if (wasIn) this.#opts.out.left(state.member);
  }

  #leave(state: MemberState): void {
    const { room, peer } = state;
    if (!room || !peer) return;
    this.#dropState(state);
    this.#opts.sfu.leave(room.id, peer.id);
    this.#opts.logger.info('left', { roomId: room.id, peerId: peer.id });
  }

  #requireJoined(state: MemberState): { room: Room; peer: Peer } {
    const { room, peer } = state;
    if (!room || !peer || peer.closed) {
      if (state.lost) throw new SfuError('UNAVAILABLE', 'the room was lost; rejoin');
      throw new SfuError('NOT_JOINED', 'join a room first');
    }
    return { room, peer };
  }

  #attach(state: MemberState, room: Room, peer: Peer): void {
    const { out, logger } = this.#opts;
    const send = (event: keyof ServerToClientEvents, payload: Record<string, unknown>): void => out.emit([state.member], event, payload);
    const onClosed = (info: { reason: string }): void => {
      if (state.peer !== peer) return;
      this.#dropState(state);
      if (info.reason === 'worker-died') {
        state.lost = true;
        logger.warn('room lost with its worker; asking peer to rejoin', { roomId: room.id, peerId: peer.id });
        out.emit([state.member], 'rejoin', { reason: 'worker-died' });
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
  }

  /** Cluster mode: the token hash a room new on this node must keep; UNAVAILABLE when another node is its home. */
  async #creation(roomId: string): Promise<{ tokenHash?: Buffer }> {
    const { directory, sfu } = this.#opts;
    if (!directory || sfu.getRoom(roomId)) return {};
    const location = await directory.locate(roomId);
    if (location.home !== directory.nodeId) throw new SfuError('UNAVAILABLE', 'the room moved to another node; join again');
    return location.tokenHash ? { tokenHash: location.tokenHash } : {};
  }

  /** Cluster mode: tells the directory the room lives here, and when it closed. */
  #hostedHere(room: Room): void {
    const { directory, logger } = this.#opts;
    if (!directory || this.#hosted.has(room) || room.closed) return;
    this.#hosted.add(room);
    const failed = (what: string) => (error: unknown) => logger.warn(`room directory: ${what} failed`, { error: errorMessage(error) });
    directory.hosted(room.id, room.tokenHash).catch(failed('hosted'));
    room.once('closed', () => {
      this.#hosted.delete(room);
      // Whatever closed it (empty, its worker lost, shutdown): the entry loses its home, so nobody renews a room that is
      // gone, and the directory keeps the token hash for its grace period, so the members who rejoin (here or on
      // another node) get the room back only with the original token.
      directory.released(room.id).catch(failed('released'));
    });
  }

  #makeHandlers(): Handlers {
    const { sfu, turn, logger, relayBudget, hideVoiceActivity, metrics, out } = this.#opts;
    const joined = (s: MemberState): Peer => this.#requireJoined(s).peer;
    return {
      join: async (state, { roomId, accessToken }) => {
        const started = performance.now();
        if (state.peer) throw new SfuError('ALREADY_JOINED', 'already joined a room; leave first');
        if (this.#opts.draining()) throw new SfuError('DRAINING', 'the server is restarting; join again in a moment');
        const { room, peer } = await sfu.join(roomId, accessToken, await this.#creation(roomId));
        this.#hostedHere(room);
        if (state.gone || !out.connected(state.member)) {
          sfu.leave(room.id, peer.id);
          throw new SfuError('NOT_JOINED', 'disconnected');
        }
        state.room = room;
        state.peer = peer;
        state.lost = false;
        this.#byPeer.set(peer.id, state);
        // From here to the response everything is synchronous: events emitted before `attach` are
        // reflected in the snapshot below, later ones are forwarded.
        this.#attach(state, room, peer);
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
      leave: async (state) => {
        this.#requireJoined(state);
        this.#leave(state);
        return {};
      },
      createTransport: async (s, { direction }) => joined(s).createTransport(direction),
      connectTransport: async (s, { transportId, dtlsParameters }) => {
        await joined(s).connectTransport(transportId, dtlsParameters);
        return {};
      },
      restartIce: async (s, { transportId }) => {
        const { iceParameters } = await joined(s).restartIce(transportId);
        // The new ICE session allocates on the TURN server again: the join's credentials may be past TURN_TTL.
        return { iceParameters, iceServers: turn.forJoin().iceServers };
      },
      produce: async (s, { transportId, kind, rtpParameters, source }) => {
        const info = await joined(s).produce({ transportId, kind, rtpParameters, source });
        return { producerId: info.producerId };
      },
      closeProducer: async (s, { producerId }) => {
        await joined(s).closeProducer(producerId);
        return {};
      },
      pauseProducer: async (s, { producerId }) => {
        await joined(s).pauseProducer(producerId);
        return {};
      },
      resumeProducer: async (s, { producerId }) => {
        await joined(s).resumeProducer(producerId);
        return {};
      },
      consume: async (s, { transportId, producerId, rtpCapabilities }) => joined(s).consume({ transportId, producerId, rtpCapabilities }),
      resumeConsumer: async (s, { consumerId }) => {
        await joined(s).resumeConsumer(consumerId);
        return {};
      },
      pauseConsumer: async (s, { consumerId }) => {
        await joined(s).pauseConsumer(consumerId);
        return {};
      },
      setPreferredLayers: async (s, { consumerId, spatialLayer, temporalLayer }) => {
        await joined(s).setPreferredLayers(consumerId, spatialLayer, temporalLayer);
        return {};
      },
      requestKeyFrame: async (s, { consumerId }) => {
        await joined(s).requestKeyFrame(consumerId);
        return {};
      },
      closeConsumer: async (s, { consumerId }) => {
        await joined(s).closeConsumer(consumerId);
        return {};
      },
      requestProducerKeyFrame: async (s, { producerId }) => {
        const { room } = this.#requireJoined(s);
        return { requested: await room.requestProducerKeyFrame(producerId) };
      },
      relay: async (s, { to, blob }) => {
        const { room, peer } = this.#requireJoined(s);
        // Fan-out budget: what the server sends (blob bytes × recipients), checked before anything is sent.
        const overBudget = (recipients: number): boolean => !relayBudget.take(room, blob.length * recipients);
        const limited = (): SfuError => new SfuError('RATE_LIMITED', 'relay budget of this room used up; retry later');
        if (to !== undefined) {
          const target = room.getPeer(to);
          const member = this.#byPeer.get(to);
          if (!target || !member || member.room !== room) throw new SfuError('NOT_FOUND', 'peer not found');
          if (overBudget(1)) throw limited();
          out.emit([member.member], 'relay', { from: peer.id, blob });
          metrics?.relayed('member', blob.length);
        } else {
          if (overBudget(room.peerCount - 1)) throw limited();
          const others = room
            .peers()
            .filter((p) => p.id !== peer.id)
            .flatMap((p) => {
              const member = this.#byPeer.get(p.id);
              return member && member.room === room ? [member.member] : [];
            });
          out.emit(others, 'relay', { from: peer.id, blob });
          metrics?.relayed('room', blob.length * (room.peerCount - 1));
        }
        return {};
      },
    };
  }
}
