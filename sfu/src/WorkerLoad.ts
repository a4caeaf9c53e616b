/**
 * Measured load of the pool's workers, for placement (WorkerPool: new routers; RoomRouters: peers).
 *
 *   load(worker) = consumers(worker) + CORE_CONSUMERS × cpu(worker)
 *
 * - `consumers(worker)`: live consumers on every router of the worker (WebRTC, pipe and tap consumers alike: each
 *   one is a stream the worker forwards), counted from the routers' observer events.
 * - `cpu(worker)`: share of one core the worker used over the last sample window: the growth of
 *   `getResourceUsage()` ru_utime + ru_stime over the wall time between two samples (every LOAD_SAMPLE_MS).
 *   Below CPU_FLOOR it counts as 0 (an idle worker's jitter must not reorder placement).
 * - CORE_CONSUMERS turns CPU into consumers: what one core forwards (capacity bench, README "Capacity":
 *   ~1,400–1,770 consumers per core), so a worker at half a core counts as 750 consumers.
 *
 * Ties (e.g. idle workers) are broken by the pool: fewest routers, then round-robin.
 */
import type { types as ms } from 'mediasoup';

/** Consumers one fully busy worker core forwards (capacity bench: ~1,400–1,770 per core). */
export const CORE_CONSUMERS = 1500;
/** CPU below this share of a core is idle. */
export const CPU_FLOOR = 0.05;
/** How often the pool samples its workers' CPU time. */
export const LOAD_SAMPLE_MS = 2000;

interface CpuSample {
  at: number;
  busyMs: number;
  share: number;
}

export class WorkerLoad {
  readonly #consumers = new WeakMap<ms.Router, { n: number }>();
  readonly #cpu = new WeakMap<ms.Worker, CpuSample>();

  /** Starts counting the consumers of `router` (call once, right after it is created). */
  track(router: ms.Router): void {
    const count = { n: 0 };
    this.#consumers.set(router, count);
    router.observer.on('newtransport', (transport: ms.Transport) => {
      transport.observer.on('newconsumer', (consumer: ms.Consumer) => {
        count.n++;
        consumer.observer.once('close', () => void count.n--);
      });
    });
  }

  /** Live consumers of one router. */
  routerConsumers(router: ms.Router): number {
    return this.#consumers.get(router)?.n ?? 0;
  }

  /** Share of one core `worker` used in the last sample window (0 below CPU_FLOOR or before two samples). */
  cpu(worker: ms.Worker): number {
    const share = this.#cpu.get(worker)?.share ?? 0;
    return share < CPU_FLOOR ? 0 : share;
  }

  /** load(worker), see the formula above; `routers` are the worker's routers. */
  load(worker: ms.Worker, routers: Iterable<ms.Router>): number {
    let consumers = 0;
    for (const router of routers) consumers += this.routerConsumers(router);
    return consumers + CORE_CONSUMERS * this.cpu(worker);
  }

  /** Takes one CPU sample of each worker (a worker that dies meanwhile is skipped). */
  async sample(workers: ms.Worker[]): Promise<void> {
    await Promise.all(
      workers.map(async (worker) => {
        let usage: ms.WorkerResourceUsage;
        try {
          usage = await worker.getResourceUsage();
        } catch {
          return;
        }
        const at = performance.now();
        const busyMs = usage.ru_utime + usage.ru_stime;
        const last = this.#cpu.get(worker);
        const share = last && at > last.at ? Math.max(0, (busyMs - last.busyMs) / (at - last.at)) : 0;
        this.#cpu.set(worker, { at, busyMs, share });
      }),
    );
  }
}
