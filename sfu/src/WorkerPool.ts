/**
 * A pool of mediasoup workers.
 *
 * Routers are placed on the least-loaded worker (fewest routers; ties broken round-robin). When a worker
 * dies it is logged, every router that lived on it is reported through `roomLost` (rooms on other
 * workers are unaffected) and a replacement worker is spawned (retried with backoff until it succeeds or
 * the pool is closed).
 */
import type { types as ms } from 'mediasoup';
import { errorMessage, type Logger } from './Logger.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import { ensureWorkerBinEnv } from './workerBin.ts';

type MediasoupApi = typeof import('mediasoup');
let mediasoupApi: Promise<MediasoupApi> | undefined;

/**
 * mediasoup reads MEDIASOUP_WORKER_BIN once, when its Worker module is first evaluated, so it is only
 * ever imported here, dynamically, after `ensureWorkerBinEnv()` has set the variable.
 */
export function loadMediasoup(): Promise<MediasoupApi> {
  if (!mediasoupApi) {
    ensureWorkerBinEnv();
    mediasoupApi = import('mediasoup').then((mod) => {
      const m = mod as unknown as MediasoupApi & { default?: MediasoupApi };
      return typeof m.createWorker === 'function' ? m : (m.default as MediasoupApi);
    });
  }
  return mediasoupApi;
}

export interface WorkerPoolOptions {
  size: number;
  rtcMinPort: number;
  rtcMaxPort: number;
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

export interface RouterAppData {
  roomId: string;
}

export class WorkerPool extends TypedEmitter<WorkerPoolEvents> {
  readonly #opts: Required<WorkerPoolOptions>;
  readonly #logger: Logger;
  /** Live workers and the routers placed on them. */
  readonly #workers = new Map<ms.Worker, Set<ms.Router>>();
  #rr = 0;
  #closed = false;
  #respawnTimers = new Set<NodeJS.Timeout>();

  private constructor(opts: WorkerPoolOptions) {
    super();
    this.#opts = { workerLogLevel: 'warn', ...opts };
    this.#logger = opts.logger.child('worker-pool');
  }

  static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(opts);
    try {
      await Promise.all(Array.from({ length: opts.size }, () => pool.#spawn()));
    } catch (error) {
      pool.close();
      throw error;
    }
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

  /** Creates a router for `roomId` on the least-loaded live worker. */
  async createRouter(roomId: string, mediaCodecs: ms.RtpCodecCapability[]): Promise<{ router: ms.Router; worker: ms.Worker }> {
    if (this.#closed) throw new Error('worker pool closed');
    const worker = this.#pick();
    const appData: RouterAppData = { roomId };
    const router = await worker.createRouter({ mediaCodecs, appData });
    const routers = this.#workers.get(worker);
    if (!routers || worker.closed) {
      // The worker died while the router was being created.
      router.close();
      throw new Error('worker died while creating the router');
    }
    routers.add(router);
    router.observer.on('close', () => {
      // When the worker itself closes (it died), keep the router listed so `died` can report it.
      if (!worker.closed) routers.delete(router);
    });
    return { router, worker };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#respawnTimers) clearTimeout(t);
    this.#respawnTimers.clear();
    for (const worker of this.#workers.keys()) worker.close();
    this.#workers.clear();
    this.removeAllListeners();
  }

  #pick(): ms.Worker {
    const entries = [...this.#workers.entries()];
    if (entries.length === 0) throw new Error('no mediasoup worker available');
    const min = Math.min(...entries.map(([, r]) => r.size));
    const candidates = entries.filter(([, r]) => r.size === min).map(([w]) => w);
    const worker = candidates[this.#rr++ % candidates.length];
    if (!worker) throw new Error('no mediasoup worker available');
    return worker;
  }

  async #spawn(): Promise<ms.Worker> {
    const { createWorker } = await loadMediasoup();
    const worker = await createWorker({
      logLevel: this.#opts.workerLogLevel,
      rtcMinPort: this.#opts.rtcMinPort,
      rtcMaxPort: this.#opts.rtcMaxPort,
    });
    if (this.#closed) {
      worker.close();
      throw new Error('worker pool closed');
    }
    this.#workers.set(worker, new Set());
    worker.on('died', (error: Error) => this.#onDied(worker, error));
    this.#logger.debug('worker started', { pid: worker.pid, workers: this.#workers.size });
    return worker;
  }

  #onDied(worker: ms.Worker, error: Error): void {
    const routers = this.#workers.get(worker) ?? new Set<ms.Router>();
    this.#workers.delete(worker);
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
    this.#respawn(0);
  }

  #respawn(attempt: number): void {
    if (this.#closed) return;
    this.#spawn().then(
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
          this.#respawn(attempt + 1);
        }, delay);
        this.#respawnTimers.add(t);
      },
    );
  }
}
