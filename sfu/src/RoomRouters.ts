/**
 * The routers of one room, spread over the workers of the node, and which peer lives on which.
 *
 * Placement (`place`): a peer goes, with both its transports, to the first of the room's routers with
 * spare capacity: the router's live consumers plus what the peer adds must stay within `maxConsumers`
 * (ROUTER_MAX_CONSUMERS). A peer adds PRODUCERS_PER_PEER × (peers already in the room + peers on that
 * router): it consumes everyone's camera and mic, and that router's peers consume its own. When no router
 * has room, a new one is created on the least-loaded worker (WorkerLoad.ts) that hosts none of this room's
 * routers yet; when every worker already does, the room router whose worker is least loaded takes the peer.
 * Placements are serialized (p-queue), so concurrent joins see each other.
 *
 * Pipes (`reach`): a producer lives on its peer's router. A consumer on another router needs the producer
 * there first: `router.pipeToRouter()` once per (producer, router), cached as a promise; the pipe producer
 * keeps the producer's id, and follows it (pause, resume, close) through the pipe consumer. Pipes have NACK/RTX on
 * (packets lost between workers are resent) and no SCTP.
 *
 * Active speaker: one AudioLevelObserver per router, fed by that router's own audio producers (not the
 * pipe producers, which are measured where they come from); the loudest of the routers' loudest is the
 * room's speaker, null when every router reports silence.
 *
 * A router whose worker died is removed (`lost`) with the pipes from and to it; an emptied router is closed
 * (`release`) as long as the room keeps another one.
 */
import type { types as ms } from 'mediasoup';
import PQueue from 'p-queue';
import { MEDIA_CODECS } from './codecs.ts';
import { errorMessage, type Logger } from './Logger.ts';
import type { MediaTap } from './MediaTap.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { TransportListen, WorkerPool } from './WorkerPool.ts';

/** Producers a peer is expected to send (camera + mic), for the placement estimate. */
export const PRODUCERS_PER_PEER = 2;

export interface RoomRouter {
  readonly router: ms.Router;
  readonly worker: ms.Worker;
  /** Where this router's WebRTC transports listen. */
  readonly listen: TransportListen;
  readonly observer: ms.AudioLevelObserver | undefined;
  /** Peers placed here (transports, producers and consumers on this router). */
  readonly peers: Set<string>;
}

export interface RoomRoutersOptions {
  roomId: string;
  pool: WorkerPool;
  /** ROUTER_MAX_CONSUMERS. */
  maxConsumers: number;
  /** AudioLevelObserver settings; undefined: no observer (AUDIO_LEVEL_EXT off). */
  audioLevel: { threshold: number; interval: number } | undefined;
  logger: Logger;
  /** Test-only media tap: every router of the room is tapped. */
  tap?: MediaTap | undefined;
}

export type RoomRoutersEvents = {
  /** The loudest peer across the routers, on every observer report (null: silence everywhere). */
  speaker: [peerId: string | null];
};

interface Pipe {
  from: string;
  to: string;
  done: Promise<void>;
  producer?: ms.Producer;
}

export class RoomRouters extends TypedEmitter<RoomRoutersEvents> {
  readonly #opts: RoomRoutersOptions;
  readonly #routers: RoomRouter[] = [];
  readonly #placed = new Map<string, RoomRouter>();
  /** `${producerId} ${routerId}` → the pipe of that producer to that router. */
  readonly #pipes = new Map<string, Pipe>();
  /** Router id → its loudest peer and volume, while not silent. */
  readonly #loudest = new Map<string, { peerId: string; volume: number }>();
  readonly #queue = new PQueue({ concurrency: 1 });
  #closed = false;

  private constructor(opts: RoomRoutersOptions) {
    super();
    this.#opts = opts;
  }

  /** With the room's first router, on the least-loaded worker. */
  static async create(opts: RoomRoutersOptions): Promise<RoomRouters> {
    const routers = new RoomRouters(opts);
    routers.#routers.push(await routers.#createRouter(new Set()));
    return routers;
  }

  /** The room's first live router (diagnostics, tests; the room's RTP capabilities come from it). */
  get first(): RoomRouter {
    const first = this.#routers[0];
    if (!first) throw new Error('room has no router');
    return first;
  }

  get all(): readonly RoomRouter[] {
    return this.#routers;
  }

  /** Where peer `peerId` lives. */
  of(peerId: string): RoomRouter | undefined {
    return this.#placed.get(peerId);
  }

  find(routerId: string): RoomRouter | undefined {
    return this.#routers.find((r) => r.router.id === routerId);
  }

  /** Places `peerId` (see the header); `roomPeers`: peers already in the room. */
  place(peerId: string, roomPeers: number): Promise<RoomRouter> {
    return this.#queue.add(async () => {
      const entry = await this.#choose(roomPeers);
      entry.peers.add(peerId);
      this.#placed.set(peerId, entry);
      return entry;
    });
  }

  /** `peerId` is gone: an emptied router is closed unless it is the room's last one. */
  release(peerId: string): void {
    const entry = this.#placed.get(peerId);
    if (!entry) return;
    this.#placed.delete(peerId);
    entry.peers.delete(peerId);
    if (entry.peers.size > 0 || this.#routers.length < 2 || this.#closed) return;
    this.#remove(entry);
    entry.router.close();
    this.#opts.logger.debug('room router closed (empty)', { roomId: this.#opts.roomId, count: this.#routers.length });
  }

  /** Makes producer `producerId` of router `from` consumable on router `to` (a pipe, once per pair). */
  async reach(producerId: string, from: RoomRouter, to: RoomRouter): Promise<void> {
    if (from === to) return;
    const key = `${producerId} ${to.router.id}`;
    let pipe = this.#pipes.get(key);
    if (!pipe) {
      const entry: Pipe = { from: from.router.id, to: to.router.id, done: Promise.resolve() };
      const forget = (): void => {
        if (this.#pipes.get(key) === entry) this.#pipes.delete(key);
      };
      // NACK + RTX on the pipe: a packet lost between two workers (a loopback UDP socket buffer full under load) is
      // sent again, as the browser's own NACKs cannot reach past the consumer's router.
      entry.done = from.router.pipeToRouter({ producerId, router: to.router, enableSctp: false, enableRtx: true }).then(
        ({ pipeProducer }) => {
          if (!pipeProducer || pipeProducer.closed) {
            forget();
            throw new Error('pipe producer closed');
          }
          entry.producer = pipeProducer;
          pipeProducer.observer.once('close', forget);
        },
        (error: unknown) => {
          forget();
          throw error;
        },
      );
      this.#pipes.set(key, entry);
      pipe = entry;
    }
    await pipe.done;
  }

  /** The router `routerId` died with its worker: forget it and close the pipes from and to it. */
  lost(routerId: string): RoomRouter | undefined {
    const entry = this.find(routerId);
    if (!entry) return undefined;
    this.#remove(entry);
    for (const peerId of entry.peers) this.#placed.delete(peerId);
    return entry;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    for (const entry of [...this.#routers]) {
      this.#remove(entry);
      entry.router.close();
    }
    this.#placed.clear();
    this.removeAllListeners();
  }

  /** Removes `entry` from the room: its pipes (both ways) are closed and its speaker forgotten. */
  #remove(entry: RoomRouter): void {
    const i = this.#routers.indexOf(entry);
    if (i >= 0) this.#routers.splice(i, 1);
    const id = entry.router.id;
    for (const [key, pipe] of this.#pipes) {
      if (pipe.from !== id && pipe.to !== id) continue;
      this.#pipes.delete(key);
      pipe.producer?.close();
    }
    entry.observer?.close();
    if (this.#loudest.delete(id)) this.#speak();
  }

  async #choose(roomPeers: number): Promise<RoomRouter> {
    const { pool, maxConsumers } = this.#opts;
    const live = this.#routers.filter((r) => !r.router.closed);
    const fits = live.find((r) => pool.routerConsumers(r.router) + PRODUCERS_PER_PEER * (roomPeers + r.peers.size) <= maxConsumers);
    if (fits) return fits;
    const hosting = new Set(live.map((r) => r.worker));
    if (!this.#closed && pool.workers.some((w) => !hosting.has(w))) {
      try {
        const entry = await this.#createRouter(hosting);
        if (this.#closed) {
          entry.router.close();
        } else {
          this.#routers.push(entry);
          this.#opts.logger.debug('room spread to another worker', { roomId: this.#opts.roomId, workerPid: entry.worker.pid, count: this.#routers.length });
          return entry;
        }
      } catch (error) {
        if (live.length === 0) throw error;
        this.#opts.logger.warn('could not add a router to a room; placing on an existing one', { roomId: this.#opts.roomId, error: errorMessage(error) });
      }
    }
    const least = live.sort((a, b) => pool.workerLoad(a.worker) - pool.workerLoad(b.worker) || a.peers.size - b.peers.size)[0];
    if (!least) throw new Error('room has no live router');
    return least;
  }

  async #createRouter(avoid: ReadonlySet<ms.Worker>): Promise<RoomRouter> {
    const { roomId, pool, audioLevel, tap, logger } = this.#opts;
    const { router, worker, listen } = await pool.createRouter(roomId, MEDIA_CODECS, avoid);
    let observer: ms.AudioLevelObserver | undefined;
    try {
      if (audioLevel) observer = await router.createAudioLevelObserver({ maxEntries: 1, ...audioLevel });
      if (tap) await tap.attachRouter(roomId, router);
    } catch (error) {
      router.close();
      throw error;
    }
    if (router.closed) throw new Error('worker died while creating a room router');
    if (observer) this.#observe(router, observer);
    return { router, worker, listen, observer, peers: new Set() };
  }

  #observe(router: ms.Router, observer: ms.AudioLevelObserver): void {
    // The router's own audio producers (whatever transport they came in on) feed its observer; pipe producers
    // are measured on their own router.
    router.observer.on('newtransport', (transport: ms.Transport) => {
      if (transport.type === 'pipe') return;
      transport.observer.on('newproducer', (producer: ms.Producer) => {
        if (producer.kind !== 'audio' || observer.closed) return;
        observer.addProducer({ producerId: producer.id }).catch((error: unknown) => {
          if (!producer.closed && !observer.closed) {
            this.#opts.logger.warn('audio level observer addProducer failed', { roomId: this.#opts.roomId, error: errorMessage(error) });
          }
        });
      });
    });
    observer.on('volumes', (volumes: ms.AudioLevelObserverVolume[]) => {
      const loudest = volumes[0];
      const peerId = loudest ? (loudest.producer.appData as { peerId?: string }).peerId : undefined;
      if (loudest && peerId !== undefined) this.#loudest.set(router.id, { peerId, volume: loudest.volume });
      else this.#loudest.delete(router.id);
      this.#speak();
    });
    observer.on('silence', () => {
      this.#loudest.delete(router.id);
      this.#speak();
    });
  }

  #speak(): void {
    let best: { peerId: string; volume: number } | undefined;
    for (const l of this.#loudest.values()) if (!best || l.volume > best.volume) best = l;
    this.emit('speaker', best?.peerId ?? null);
  }
}
