/**
 * A meeting room: one mediasoup router on one worker, an AudioLevelObserver for the active speaker,
 * and its peers.
 *
 * Access: the first joiner fixes `sha256(accessToken)`; later joiners must present a token with the same
 * hash (compared in constant time) or get UNAUTHORIZED. Only the hash is kept.
 * The room closes itself (`closed` with reason `empty`) when its last peer leaves, and with reason
 * `worker-died` when its worker died (all its mediasoup objects are gone; the peers must rejoin).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { types as ms } from 'mediasoup';
import { clientRtpCapabilities, MEDIA_CODECS } from './codecs.ts';
import { errorMessage, type Logger } from './Logger.ts';
import type { MediaTap } from './MediaTap.ts';
import { Peer, type BaseTransportOptions, type PeerLimits, type TransportOptions } from './Peer.ts';
import { SfuError } from './SfuError.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { ProducerInfo, TrackSource } from './wire.ts';
import type { TransportListen, WorkerPool } from './WorkerPool.ts';

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
  /** Where they listen is added from the router's worker (its WebRtcServer, or the port range). */
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
  readonly #router: ms.Router;
  readonly #worker: ms.Worker;
  readonly #audioLevelObserver: ms.AudioLevelObserver | undefined;
  readonly #cap: number;
  readonly #transportOptions: TransportOptions;
  readonly #audioLevelExt: boolean;
  readonly #logger: Logger;
  readonly #peerLimits: Partial<PeerLimits> | undefined;
  readonly #peers = new Map<string, Peer>();
  readonly #clientCaps: ms.RtpCapabilities;
  readonly #tap: MediaTap | undefined;
  readonly #keyFrameFanouts = new Map<string, { at: number; count: Promise<number> }>();
  #activeSpeaker: string | null = null;
  #closed = false;

  private constructor(
    opts: RoomOptions,
    router: ms.Router,
    worker: ms.Worker,
    listen: TransportListen,
    audioLevelObserver: ms.AudioLevelObserver | undefined,
  ) {
    super();
    this.#id = opts.roomId;
    this.#tokenHash = opts.tokenHash ? Buffer.from(opts.tokenHash) : sha256(opts.accessToken);
    this.#router = router;
    this.#worker = worker;
    this.#audioLevelObserver = audioLevelObserver;
    this.#cap = opts.cap;
    this.#transportOptions = { ...opts.transportOptions, ...listen };
    this.#audioLevelExt = opts.audioLevelExt;
    this.#logger = opts.logger;
    this.#peerLimits = opts.peerLimits;
    this.#tap = opts.tap;
    this.#clientCaps = clientRtpCapabilities(router.rtpCapabilities, opts.audioLevelExt);

    if (audioLevelObserver) {
      // Every audio producer on this router feeds the observer (whatever transport it came in on).
      router.observer.on('newtransport', (transport: ms.Transport) => {
        transport.observer.on('newproducer', (producer: ms.Producer) => {
          if (producer.kind !== 'audio' || audioLevelObserver.closed) return;
          audioLevelObserver.addProducer({ producerId: producer.id }).catch((error: unknown) => {
            if (!producer.closed && !audioLevelObserver.closed) {
              this.#logger.warn('audio level observer addProducer failed', { roomId: this.#id, error: errorMessage(error) });
            }
          });
        });
      });
      audioLevelObserver.on('volumes', (volumes: ms.AudioLevelObserverVolume[]) => {
        const loudest = volumes[0];
        const peerId = loudest ? (loudest.producer.appData as { peerId: string }).peerId : null;
        this.#setActiveSpeaker(peerId ?? null);
      });
      audioLevelObserver.on('silence', () => this.#setActiveSpeaker(null));
    }
  }

  static async create(opts: RoomOptions): Promise<Room> {
    const { router, worker, listen } = await opts.pool.createRouter(opts.roomId, MEDIA_CODECS);
    let observer: ms.AudioLevelObserver | undefined;
    try {
      if (opts.audioLevelExt) {
        observer = await router.createAudioLevelObserver({
          maxEntries: 1,
          threshold: opts.audioLevel?.threshold ?? -70,
          interval: opts.audioLevel?.interval ?? 800,
        });
      }
    } catch (error) {
      router.close();
      throw error;
    }
    if (router.closed) throw new SfuError('UNAVAILABLE', 'worker died while creating the room');
    return new Room(opts, router, worker, listen, observer);
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
  get routerId(): string {
    return this.#router.id;
  }
  /** The router (for tests and diagnostics: dump()). */
  get router(): ms.Router {
    return this.#router;
  }
  get workerPid(): number {
    return this.#worker.pid;
  }
  get peerCount(): number {
    return this.#peers.size;
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

  /** Adds a peer after checking the token and the cap. */
  join(peerId: string, accessToken: string): Peer {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'room closed');
    if (!this.checkToken(accessToken)) throw new SfuError('UNAUTHORIZED', 'wrong access token');
    if (this.#peers.size >= this.#cap) throw new SfuError('ROOM_FULL', 'room is full');
    if (this.#peers.has(peerId)) throw new SfuError('BAD_REQUEST', 'duplicate peer id');
    const peer = new Peer({
      id: peerId,
      roomId: this.#id,
      router: this.#router,
      transportOptions: this.#transportOptions,
      audioLevelExt: this.#audioLevelExt,
      lookupProducer: (producerId) => this.#lookupProducer(producerId),
      ...(this.#peerLimits ? { limits: this.#peerLimits } : {}),
      ...(this.#tap ? { beforeAnnounce: (producer: ms.Producer) => withTimeout(this.#tap!.ready(producer.id), TAP_WAIT_MS) } : {}),
    });
    this.#peers.set(peerId, peer);
    peer.on('producerCreated', (info) => this.emit('newProducer', info));
    peer.on('producerClosed', ({ peerId: owner, producerId }) => this.emit('producerClosed', { peerId: owner, producerId }));
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
      routerId: this.#router.id,
      workerPid: this.#worker.pid,
      cap: this.#cap,
      tokenSha256: this.#tokenHash.toString('hex'),
      audioLevelExt: this.#audioLevelExt,
      activeSpeaker: this.#activeSpeaker,
      transportOptions: describeTransportOptions(this.#transportOptions),
      peerLimits: this.#peerLimits ?? null,
      routerAppData: this.#router.appData,
      rtpCapabilities: this.#clientCaps,
      peers: [...this.#peers.values()].map((p) => p.toJSON()),
    };
  }

  /** mediasoup's own dumps: the router and every peer's transports, producers and consumers. */
  async dump(): Promise<{ router: unknown; peers: unknown[] }> {
    return {
      router: await this.#router.dump().catch(() => null),
      peers: await Promise.all([...this.#peers.values()].map((p) => p.dump())),
    };
  }

  /** Removes a peer and frees its objects; closes the room when it was the last one. */
  leave(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    peer.close('left');
    this.#peers.delete(peerId);
    this.#logger.debug('peer left', { roomId: this.#id, peerId, peers: this.#peers.size });
    if (this.#activeSpeaker === peerId) this.#setActiveSpeaker(null);
    this.emit('peerLeft', { peerId });
    if (this.#peers.size === 0) this.close('empty');
  }

  /** The worker hosting this room died: every mediasoup object is gone already. */
  workerDied(): void {
    this.close('worker-died');
  }

  close(reason: RoomCloseReason = 'shutdown'): void {
    if (this.#closed) return;
    this.#closed = true;
    const peerIds = [...this.#peers.keys()];
    for (const peer of this.#peers.values()) peer.close(reason === 'worker-died' ? 'worker-died' : 'room-closed');
    this.#peers.clear();
    this.#audioLevelObserver?.close();
    this.#router.close();
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

  #setActiveSpeaker(peerId: string | null): void {
    if (this.#closed || peerId === this.#activeSpeaker) return;
    if (peerId !== null && !this.#peers.has(peerId)) return;
    this.#activeSpeaker = peerId;
    this.emit('activeSpeaker', { peerId });
  }
}
