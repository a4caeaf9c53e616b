/**
 * A meeting room: its peers, on one or more mediasoup routers on different workers of the node
 * (RoomRouters.ts: placement by consumer capacity, pipes between the routers, the active speaker across them).
 *
 * Access: the first joiner fixes `sha256(accessToken)`; later joiners must present a token with the same
 * hash (compared in constant time) or get UNAUTHORIZED. Only the hash is kept.
 * The room closes itself (`closed` with reason `empty`) when its last peer leaves. A worker that dies takes
 * only its part (`routerLost`): the peers placed on its router are closed with reason `worker-died` (they
 * rejoin), their producers are announced closed and they leave; everyone else keeps their media. The room
 * closes with reason `worker-died` only when nobody is left.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { types as ms } from 'mediasoup';
import { clientRtpCapabilities } from './codecs.ts';
import type { Logger } from './Logger.ts';
import type { MediaTap } from './MediaTap.ts';
import { Peer, type BaseTransportOptions, type PeerLimits, type TransportOptions } from './Peer.ts';
import { RoomRouters, type RoomRouter } from './RoomRouters.ts';
import { SfuError } from './SfuError.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { ProducerInfo, TrackSource } from './wire.ts';
import type { WorkerPool } from './WorkerPool.ts';

/** requestProducerKeyFrame calls for one producer within this window share one fan-out. */
export const KEYFRAME_COALESCE_MS = 250;
/** Longest a new producer waits for the test-only media tap before it is announced anyway. */
const TAP_WAIT_MS = 5000;

export type RoomCloseReason = 'empty' | 'worker-died' | 'shutdown';

export type RoomEvents = {
  peerJoined: [info: { peerId: string }];
  peerLeft: [info: { peerId: string }];
  newProducer: [info: ProducerInfo];
  producerClosed: [info: { peerId: string; producerId: string }];
  producerPaused: [info: { peerId: string; producerId: string }];
  producerResumed: [info: { peerId: string; producerId: string }];
  /** The loudest peer, or null on silence. */
  activeSpeaker: [info: { peerId: string | null }];
  closed: [info: { roomId: string; reason: RoomCloseReason; peerIds: string[] }];
};

export interface RoomOptions {
  roomId: string;
  /** The creator's access token; only its SHA-256 is kept. */
  accessToken: string;
  /**
   * The room's token hash when it is already fixed elsewhere (cluster mode: the room directory keeps it, so a room
   * re-created on another node after a node loss admits only the original token). Overrides `accessToken`'s hash.
   */
  tokenHash?: Buffer;
  pool: WorkerPool;
  cap: number;
  /** ROUTER_MAX_CONSUMERS: consumers per router before the room spreads to another worker. */
  routerMaxConsumers: number;
  /** Where they listen is added from each peer's router's worker (its WebRtcServer, or the port range). */
  transportOptions: BaseTransportOptions;
  audioLevelExt: boolean;
  logger: Logger;
  peerLimits?: Partial<PeerLimits>;
  /** AudioLevelObserver settings. */
  audioLevel?: { threshold?: number; interval?: number };
  /** Test-only media tap (see MediaTap.ts): producers are announced only once it consumes them. */
  tap?: MediaTap;
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    void p.finally(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Transport options as plain data (the WebRtcServer by id: the object itself holds the worker channel). */
function describeTransportOptions(options: TransportOptions): Record<string, unknown> {
  if (!('webRtcServer' in options) || !options.webRtcServer) return { ...options };
  const { webRtcServer, ...rest } = options;
  return { ...rest, webRtcServerId: webRtcServer.id };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class Room extends TypedEmitter<RoomEvents> {
  readonly #id: string;
  readonly #tokenHash: Buffer;
  readonly #routers: RoomRouters;
  readonly #cap: number;
  readonly #transportOptions: BaseTransportOptions;
  readonly #audioLevelExt: boolean;
  readonly #logger: Logger;
  readonly #peerLimits: Partial<PeerLimits> | undefined;
  readonly #peers = new Map<string, Peer>();
  /** Peers admitted whose placement is under way (they count against the cap). */
  readonly #joining = new Set<string>();
  /** Producer id → owning peer id, for every announced producer (a dead worker's peer has lost its own list). */
  readonly #producerOwners = new Map<string, string>();
  readonly #clientCaps: ms.RtpCapabilities;
  readonly #tap: MediaTap | undefined;
  readonly #keyFrameFanouts = new Map<string, { at: number; count: Promise<number> }>();
  #activeSpeaker: string | null = null;
  #closed = false;

  private constructor(opts: RoomOptions, routers: RoomRouters) {
    super();
    this.#id = opts.roomId;
    this.#tokenHash = opts.tokenHash ? Buffer.from(opts.tokenHash) : sha256(opts.accessToken);
    this.#routers = routers;
    this.#cap = opts.cap;
    this.#transportOptions = opts.transportOptions;
    this.#audioLevelExt = opts.audioLevelExt;
    this.#logger = opts.logger;
    this.#peerLimits = opts.peerLimits;
    this.#tap = opts.tap;
    // Every router of the room has the same codecs, so the same RTP capabilities.
    this.#clientCaps = clientRtpCapabilities(routers.first.router.rtpCapabilities, opts.audioLevelExt);
    routers.on('speaker', (peerId) => this.#setActiveSpeaker(peerId));
  }

  static async create(opts: RoomOptions): Promise<Room> {
    const routers = await RoomRouters.create({
      roomId: opts.roomId,
      pool: opts.pool,
      maxConsumers: opts.routerMaxConsumers,
      audioLevel: opts.audioLevelExt ? { threshold: opts.audioLevel?.threshold ?? -70, interval: opts.audioLevel?.interval ?? 800 } : undefined,
      logger: opts.logger,
      tap: opts.tap,
    });
    return new Room(opts, routers);
  }

  get id(): string {
    return this.#id;
  }
  get closed(): boolean {
    return this.#closed;
  }
  get cap(): number {
    return this.#cap;
  }
  /** The room's first live router (for tests and diagnostics: dump()); `routers` has them all. */
  get router(): ms.Router {
    return this.#routers.first.router;
  }
  get routerId(): string {
    return this.router.id;
  }
  /** The first router's worker. */
  get workerPid(): number {
    return this.#routers.first.worker.pid;
  }
  /** Every router of the room, the first first (one per worker it spreads over). */
  get routers(): ms.Router[] {
    return this.#routers.all.map((r) => r.router);
  }
  /** Where a peer lives (tests and diagnostics). */
  placement(peerId: string): { routerId: string; workerPid: number } | undefined {
    const entry = this.#routers.of(peerId);
    return entry && { routerId: entry.router.id, workerPid: entry.worker.pid };
  }
  hasRouter(routerId: string): boolean {
    return this.#routers.find(routerId) !== undefined;
  }
  get peerCount(): number {
    return this.#peers.size;
  }
  /** No peer, and nobody joining. */
  get idle(): boolean {
    return this.#peers.size === 0 && this.#joining.size === 0;
  }
  get activeSpeaker(): string | null {
    return this.#activeSpeaker;
  }
  /** Router RTP capabilities as handed to clients. */
  get rtpCapabilities(): ms.RtpCapabilities {
    return structuredClone(this.#clientCaps);
  }

  peers(): Peer[] {
    return [...this.#peers.values()];
  }

  getPeer(peerId: string): Peer | undefined {
    return this.#peers.get(peerId);
  }

  /** Producers of every peer except `exceptPeerId`. */
  producerInfos(exceptPeerId?: string): ProducerInfo[] {
    const out: ProducerInfo[] = [];
    for (const peer of this.#peers.values()) if (peer.id !== exceptPeerId) out.push(...peer.producerInfos());
    return out;
  }

  /** SHA-256 of the room's access token (cluster mode stores it in the room directory). */
  get tokenHash(): Buffer {
    return Buffer.from(this.#tokenHash);
  }

  /** Whether `accessToken` matches the room's token hash (constant time). */
  checkToken(accessToken: string): boolean {
    return timingSafeEqual(sha256(accessToken), this.#tokenHash);
  }

  /**
   * Adds a peer after checking the token and the cap, on a router placed by RoomRouters (which may add a router
   * on another worker). A refused join changes nothing.
   */
  async join(peerId: string, accessToken: string): Promise<Peer> {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'room closed');
    if (!this.checkToken(accessToken)) throw new SfuError('UNAUTHORIZED', 'wrong access token');
    if (this.#peers.size + this.#joining.size >= this.#cap) throw new SfuError('ROOM_FULL', 'room is full');
    if (this.#peers.has(peerId) || this.#joining.has(peerId)) throw new SfuError('BAD_REQUEST', 'duplicate peer id');
    this.#joining.add(peerId);
    let entry: RoomRouter;
    try {
      // Everyone else in the room or joining it: what this peer will consume.
      entry = await this.#routers.place(peerId, this.#peers.size + this.#joining.size - 1);
    } finally {
      this.#joining.delete(peerId);
    }
    if (this.#closed || entry.router.closed) {
      this.#routers.release(peerId);
      throw new SfuError('UNAVAILABLE', 'room closed');
    }
    const peer = new Peer({
      id: peerId,
      roomId: this.#id,
      router: entry.router,
      transportOptions: { ...this.#transportOptions, ...entry.listen },
      audioLevelExt: this.#audioLevelExt,
      lookupProducer: (producerId) => this.#lookupProducer(producerId),
      reach: (producerId) => this.#reach(producerId, entry),
      ...(this.#peerLimits ? { limits: this.#peerLimits } : {}),
      ...(this.#tap ? { beforeAnnounce: (producer: ms.Producer) => withTimeout(this.#tap!.ready(producer.id), TAP_WAIT_MS) } : {}),
    });
    this.#peers.set(peerId, peer);
    peer.on('producerCreated', (info) => {
      this.#producerOwners.set(info.producerId, peerId);
      this.emit('newProducer', info);
    });
    peer.on('producerClosed', ({ peerId: owner, producerId }) => {
      this.#producerOwners.delete(producerId);
      this.emit('producerClosed', { peerId: owner, producerId });
    });
    peer.on('producerPaused', (info) => this.emit('producerPaused', info));
    peer.on('producerResumed', (info) => this.emit('producerResumed', info));
    this.#logger.debug('peer joined', { roomId: this.#id, peerId, peers: this.#peers.size });
    this.emit('peerJoined', { peerId });
    return peer;
  }

  /**
   * Asks every consumer of `producerId` (a producer of any member of this room) for a key frame, which
   * makes the SFU send PLI/FIR to the producer's endpoint. Returns how many consumers were asked
   * (0 for audio, or when nobody consumes it yet). NOT_FOUND if the producer is not in this room.
   */
  async requestProducerKeyFrame(producerId: string): Promise<number> {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'room closed');
    const found = this.#lookupProducer(producerId);
    if (!found || found.producer.closed) throw new SfuError('NOT_FOUND', 'producer not found');
    if (found.producer.kind !== 'video') return 0;
    // Requests for the same producer within KEYFRAME_COALESCE_MS (from anyone: e.g. every receiver after
    // one key switch) share one fan-out, so one event never costs more than one round of worker requests.
    const now = Date.now();
    const recent = this.#keyFrameFanouts.get(producerId);
    if (recent && now - recent.at < KEYFRAME_COALESCE_MS) return recent.count;
    const consumers = [...this.#peers.values()].flatMap((p) => p.consumersOf(producerId));
    const count = Promise.all(
      consumers.map((c) =>
        c.requestKeyFrame().catch((error: unknown) => {
          if (!c.closed) throw error;
        }),
      ),
    ).then(() => consumers.length);
    this.#keyFrameFanouts.set(producerId, { at: now, count });
    if (this.#keyFrameFanouts.size > 256) {
      for (const [id, f] of this.#keyFrameFanouts) if (now - f.at >= KEYFRAME_COALESCE_MS) this.#keyFrameFanouts.delete(id);
    }
    return count;
  }

  /** Everything this room holds, as plain data (diagnostics; tests check it holds no secrets). */
  toJSON(): Record<string, unknown> {
    return {
      id: this.#id,
      closed: this.#closed,
      routerId: this.routerId,
      workerPid: this.workerPid,
      routers: this.#routers.all.map((r) => ({
        routerId: r.router.id,
        workerPid: r.worker.pid,
        peers: r.peers.size,
        transportOptions: describeTransportOptions({ ...this.#transportOptions, ...r.listen }),
        appData: r.router.appData,
      })),
      cap: this.#cap,
      tokenSha256: this.#tokenHash.toString('hex'),
      audioLevelExt: this.#audioLevelExt,
      activeSpeaker: this.#activeSpeaker,
      transportOptions: describeTransportOptions({ ...this.#transportOptions, ...this.#routers.first.listen }),
      peerLimits: this.#peerLimits ?? null,
      routerAppData: this.router.appData,
      rtpCapabilities: this.#clientCaps,
      peers: [...this.#peers.values()].map((p) => p.toJSON()),
    };
  }

  /** mediasoup's own dumps: the first router, every router, and every peer's transports, producers and consumers. */
  async dump(): Promise<{ router: unknown; routers: unknown[]; peers: unknown[] }> {
    const routers = await Promise.all(this.#routers.all.map((r) => r.router.dump().catch(() => null)));
    return {
      router: routers[0] ?? null,
      routers,
      peers: await Promise.all([...this.#peers.values()].map((p) => p.dump())),
    };
  }

  /** Removes a peer and frees its objects; closes the room when it was the last one. */
  leave(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    peer.close('left');
    this.#peers.delete(peerId);
    this.#routers.release(peerId);
    this.#logger.debug('peer left', { roomId: this.#id, peerId, peers: this.#peers.size });
    if (this.#activeSpeaker === peerId) this.#setActiveSpeaker(null);
    this.emit('peerLeft', { peerId });
    if (this.idle) this.close('empty');
  }

  /**
   * Router `routerId` of this room died with its worker (its mediasoup objects are gone already): its peers are
   * closed with reason `worker-died` and leave, their producers are announced closed (the pipes that carried them
   * to the other routers are closed, so their consumers get producerclose). The room closes only if nobody is left.
   */
  routerLost(routerId: string): void {
    if (this.#closed) return;
    const entry = this.#routers.lost(routerId);
    if (!entry) return;
    const lost = [...this.#peers.values()].filter((p) => entry.peers.has(p.id));
    if (lost.length === this.#peers.size || this.#routers.all.length === 0) {
      this.close('worker-died');
      return;
    }
    this.#logger.warn('room lost the part on a dead worker; its peers rejoin', { roomId: this.#id, peers: lost.length, count: this.#routers.all.length });
    for (const peer of lost) {
      const producers = [...this.#producerOwners].filter(([, owner]) => owner === peer.id).map(([producerId]) => producerId);
      this.#peers.delete(peer.id);
      peer.close('worker-died');
      for (const producerId of producers) {
        this.#producerOwners.delete(producerId);
        this.emit('producerClosed', { peerId: peer.id, producerId });
      }
      if (this.#activeSpeaker === peer.id) this.#setActiveSpeaker(null);
      this.emit('peerLeft', { peerId: peer.id });
    }
  }

  close(reason: RoomCloseReason = 'shutdown'): void {
    if (this.#closed) return;
    this.#closed = true;
    const peerIds = [...this.#peers.keys()];
    for (const peer of this.#peers.values()) peer.close(reason === 'worker-died' ? 'worker-died' : 'room-closed');
    this.#peers.clear();
    this.#producerOwners.clear();
    this.#routers.close();
    this.#logger.info('room closed', { roomId: this.#id, reason, peers: peerIds.length });
    this.emit('closed', { roomId: this.#id, reason, peerIds });
    this.removeAllListeners();
  }

  #lookupProducer(producerId: string): { producer: ms.Producer; peerId: string; source: TrackSource } | undefined {
    for (const peer of this.#peers.values()) {
      const producer = peer.findProducer(producerId);
      if (producer) return { producer, peerId: peer.id, source: (producer.appData as { source: TrackSource }).source };
    }
    return undefined;
  }

  /** Makes producer `producerId` consumable on `to` (the consuming peer's router). */
  async #reach(producerId: string, to: RoomRouter): Promise<void> {
    const found = this.#lookupProducer(producerId);
    const from = found && this.#routers.of(found.peerId);
    if (!from) throw new SfuError('NOT_FOUND', 'producer not found');
    await this.#routers.reach(producerId, from, to);
  }

  #setActiveSpeaker(peerId: string | null): void {
    if (this.#closed || peerId === this.#activeSpeaker) return;
    if (peerId !== null && !this.#peers.has(peerId)) return;
    this.#activeSpeaker = peerId;
    this.emit('activeSpeaker', { peerId });
  }
}
