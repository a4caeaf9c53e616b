/**
 * A pool of mediasoup workers.
 *
 * Routers are placed on the least-loaded worker by measured load (WorkerLoad.ts: consumers plus CPU from
 * getResourceUsage, sampled every LOAD_SAMPLE_MS; ties: fewest routers, then round-robin). When a worker
 * dies it is logged, every router that lived on it is reported through `roomLost` (rooms on other
 * workers are unaffected) and a replacement worker is spawned (retried with backoff until it succeeds or
 * the pool is closed).
 *
 * Media ports (`listen`): in `server` mode every worker runs one WebRtcServer that carries the media of
 * all its WebRTC transports on one UDP and one TCP port (worker slot i: `port + i`; a replacement worker
 * takes the slot, and so the ports, of the one that died). In `range` mode each transport gets its own
 * port from a range, as mediasoup did before WebRtcServer existed.
 *
 * `lanIp` (LOCAL_LAN_MEDIA, local HOST only): a second UDP + TCP pair bound to that non-loopback address
 * itself (not 0.0.0.0) and announced as it, after the loopback pair: Firefox pairs no loopback candidates.
 */
import { createWorker, type types as ms } from 'mediasoup';
import { errorMessage, type Logger } from './Logger.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import { resolveWorkerBin } from './workerBin.ts';
import { LOAD_SAMPLE_MS, WorkerLoad } from './WorkerLoad.ts';

/** Where WebRTC media is received. `port: 0` = any free port in `minPort`–`maxPort`. */
export type MediaListen =
  | { mode: 'server'; ip: string; announcedAddress?: string; lanIp?: string; port: number; minPort: number; maxPort: number }
  | { mode: 'range'; ip: string; announcedAddress?: string; lanIp?: string; minPort: number; maxPort: number };

/** The listening part of WebRtcTransportOptions for a router placed by the pool. */
export type TransportListen = { webRtcServer: ms.WebRtcServer } | { listenInfos: ms.TransportListenInfo[] };

export interface WorkerPoolOptions {
  size: number;
  listen: MediaListen;
  logger: Logger;
  workerLogLevel?: ms.WorkerLogLevel;
}

export type WorkerPoolEvents = {
  /** A worker process died (its routers are already closed). */
  workerDied: [info: { pid: number; error: string }];
  /** A replacement worker is running. */
  workerAdded: [info: { pid: number }];
  /** A router (room) lived on a worker that died. */
  roomLost: [info: { roomId: string; routerId: string; pid: number }];
};

export type RouterAppData = {
  roomId: string;
};

export class WorkerPool extends TypedEmitter<WorkerPoolEvents> {
  readonly #opts: Required<WorkerPoolOptions>;
  readonly #logger: Logger;
  /** Live workers and the routers placed on them. */
  readonly #workers = new Map<ms.Worker, Set<ms.Router>>();
  /** Per live worker: its slot (0..size-1) and, in server mode, its WebRtcServer. */
  readonly #slots = new Map<ms.Worker, { slot: number; webRtcServer: ms.WebRtcServer | undefined }>();
  readonly #load = new WorkerLoad();
  readonly #sampler: NodeJS.Timeout;
  #rr = 0;
  #closed = false;
  #respawnTimers = new Set<NodeJS.Timeout>();

  private constructor(opts: WorkerPoolOptions) {
    super();
    this.#opts = { workerLogLevel: 'warn', ...opts };
    this.#logger = opts.logger.child('worker-pool');
    this.#sampler = setInterval(() => void this.#load.sample(this.workers), LOAD_SAMPLE_MS);
    this.#sampler.unref();
  }

  static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(opts);
    try {
      await Promise.all(Array.from({ length: opts.size }, (_, slot) => pool.#spawn(slot)));
    } catch (error) {
      pool.close();
      throw error;
    }
    void pool.sampleLoad();
    return pool;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Number of live workers. */
  get size(): number {
    return this.#workers.size;
  }

  /** Live mediasoup workers (for tests and diagnostics: pid, dump()). */
  get workers(): ms.Worker[] {
    return [...this.#workers.keys()];
  }

  /** Routers currently placed on live workers. */
  get routerCount(): number {
    let n = 0;
    for (const routers of this.#workers.values()) n += routers.size;
    return n;
  }

  /** The WebRtcServer of each live worker (server mode; empty in range mode). */
  get webRtcServers(): ms.WebRtcServer[] {
    return [...this.#slots.values()].flatMap((s) => (s.webRtcServer ? [s.webRtcServer] : []));
  }

  /** Measured load of a live worker (WorkerLoad.ts); 0 for one that is gone. */
  workerLoad(worker: ms.Worker): number {
    const routers = this.#workers.get(worker);
    return routers ? this.#load.load(worker, routers) : 0;
  }

  /** Live consumers on `router` (any transport). */
  routerConsumers(router: ms.Router): number {
    return this.#load.routerConsumers(router);
  }

  /** Share of one core `worker` used lately (0 while idle; WorkerLoad.ts). */
  workerCpu(worker: ms.Worker): number {
    return this.#load.cpu(worker);
  }

  /** Takes a CPU sample of every worker now (also done every LOAD_SAMPLE_MS). */
  sampleLoad(): Promise<void> {
    return this.#load.sample(this.workers);
  }

  /**
   * Creates a router for `roomId` on the least-loaded live worker that is not in `avoid` (error if there
   * is none), and says where that router's WebRTC transports listen (its worker's WebRtcServer, or the port range).
   */
  async createRouter(
    roomId: string,
    mediaCodecs: ms.RouterRtpCodecCapability[],
    avoid: ReadonlySet<ms.Worker> = new Set(),
  ): Promise<{ router: ms.Router; worker: ms.Worker; listen: TransportListen }> {
    if (this.#closed) throw new Error('worker pool closed');
    const worker = this.#pick(avoid);
    const webRtcServer = this.#slots.get(worker)?.webRtcServer;
    const appData: RouterAppData = { roomId };
    const router = await worker.createRouter({ mediaCodecs, appData });
    const routers = this.#workers.get(worker);
    if (!routers || worker.closed) {
      // The worker died while the router was being created.
      router.close();
      throw new Error('worker died while creating the router');
    }
    routers.add(router);
    this.#load.track(router);
    router.observer.on('close', () => {
      // When the worker itself closes (it died), keep the router listed so `died` can report it.
      if (!worker.closed) routers.delete(router);
    });
    return { router, worker, listen: webRtcServer ? { webRtcServer } : { listenInfos: this.#listenInfos() } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sampler);
    for (const t of this.#respawnTimers) clearTimeout(t);
    this.#respawnTimers.clear();
    for (const worker of this.#workers.keys()) worker.close();
    this.#workers.clear();
    this.#slots.clear();
    this.removeAllListeners();
  }

  /** The least-loaded live worker not in `avoid`; ties: fewest routers, then round-robin. */
  #pick(avoid: ReadonlySet<ms.Worker>): ms.Worker {
    const entries = [...this.#workers.entries()]
      .filter(([w]) => !avoid.has(w))
      .map(([w, r]) => ({ w, load: this.#load.load(w, r), routers: r.size }));
    if (entries.length === 0) throw new Error('no mediasoup worker available');
    const min = Math.min(...entries.map((e) => e.load));
    const least = entries.filter((e) => e.load === min);
    const fewest = Math.min(...least.map((e) => e.routers));
    const candidates = least.filter((e) => e.routers === fewest).map((e) => e.w);
    const worker = candidates[this.#rr++ % candidates.length];
    if (!worker) throw new Error('no mediasoup worker available');
    return worker;
  }

  /** UDP + TCP listen infos (and the LAN pair): the WebRtcServer's (slot given) or each range-mode transport's. */
  #listenInfos(slot?: number): ms.TransportListenInfo[] {
    const { listen } = this.#opts;
    const where =
      listen.mode === 'server' && slot !== undefined && listen.port !== 0
        ? { port: listen.port + slot }
        : { portRange: { min: listen.minPort, max: listen.maxPort } };
    const address = listen.announcedAddress !== undefined ? { announcedAddress: listen.announcedAddress } : {};
    const binds = [{ ip: listen.ip, ...address }, ...(listen.lanIp !== undefined ? [{ ip: listen.lanIp }] : [])];
    return binds.flatMap((bind) => (['udp', 'tcp'] as const).map((protocol) => ({ protocol, ...bind, ...where })));
  }

  async #spawn(slot: number): Promise<ms.Worker> {
    const worker = await createWorker({ logLevel: this.#opts.workerLogLevel, workerBin: resolveWorkerBin() });
    let webRtcServer: ms.WebRtcServer | undefined;
    try {
      if (this.#opts.listen.mode === 'server') {
        webRtcServer = await worker.createWebRtcServer({ listenInfos: this.#listenInfos(slot) });
      }
    } catch (error) {
      worker.close();
      throw error;
    }
    if (this.#closed) {
      worker.close();
      throw new Error('worker pool closed');
    }
    this.#workers.set(worker, new Set());
    this.#slots.set(worker, { slot, webRtcServer });
    worker.on('died', (error: Error) => this.#onDied(worker, error));
    this.#logger.debug('worker started', { pid: worker.pid, workers: this.#workers.size });
    return worker;
  }

  #onDied(worker: ms.Worker, error: Error): void {
    const routers = this.#workers.get(worker) ?? new Set<ms.Router>();
    const slot = this.#slots.get(worker)?.slot ?? 0;
    this.#workers.delete(worker);
    this.#slots.delete(worker);
    if (this.#closed) return;
    this.#logger.error('mediasoup worker died', {
      pid: worker.pid,
      error: errorMessage(error),
      rooms: routers.size,
      workers: this.#workers.size,
    });
    this.emit('workerDied', { pid: worker.pid, error: errorMessage(error) });
    for (const router of routers) {
      const { roomId } = router.appData as RouterAppData;
      this.emit('roomLost', { roomId, routerId: router.id, pid: worker.pid });
    }
    routers.clear();
    this.#respawn(slot, 0);
  }

  #respawn(slot: number, attempt: number): void {
    if (this.#closed) return;
    this.#spawn(slot).then(
      (w) => {
        this.#logger.info('replacement worker running', { pid: w.pid, workers: this.#workers.size });
        this.emit('workerAdded', { pid: w.pid });
      },
      (error: unknown) => {
        if (this.#closed) return;
        const delay = Math.min(10_000, 250 * 2 ** attempt);
        this.#logger.error('could not spawn a replacement worker; retrying', { error: errorMessage(error), ms: delay });
        const t = setTimeout(() => {
          this.#respawnTimers.delete(t);
          this.#respawn(slot, attempt + 1);
        }, delay);
        this.#respawnTimers.add(t);
      },
    );
  }
}
