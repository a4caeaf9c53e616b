/**
 * Page-side facade of the transform worker. One instance per call session; `close()` is idempotent.
 *
 * Attach transforms from inside mediasoup-client's `onRtpSender` / `onRtpReceiver` callbacks: Chromium
 * silently bypasses a script transform that is set after the sender has started.
 */
import type { FrameCount, FromWorker, MediaKind, PipelineInfo, ToWorker } from './protocol.ts';
import type { TransformApi } from './support.ts';

type EncodedStreamsCapable = {
  createEncodedStreams(): { readable: ReadableStream; writable: WritableStream };
};

export class TransformWorker {
  readonly api: TransformApi;
  readonly #worker: Worker;
  readonly #counts = new Map<string, FrameCount>();
  readonly #pending = new Map<number, (counts: FrameCount[]) => void>();
  #nextRequest = 1;
  #closed = false;
  /** Called after every count report from the worker. */
  onCounts: ((counts: ReadonlyMap<string, FrameCount>) => void) | null = null;
  onError: ((key: string, message: string) => void) | null = null;

  constructor(api: TransformApi, reportIntervalMs = 500) {
    this.api = api;
    this.#worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'sealed-meet-transform' });
    this.#worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => this.#onMessage(ev.data));
    this.#post({ kind: 'start', reportIntervalMs } satisfies ToWorker);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Latest counts the worker reported, by pipeline key. */
  get counts(): ReadonlyMap<string, FrameCount> {
    return this.#counts;
  }

  attachSender(sender: RTCRtpSender, key: string, mediaKind: MediaKind): void {
    this.#attach(sender, { key, direction: 'send', mediaKind, api: this.api });
  }

  attachReceiver(receiver: RTCRtpReceiver, key: string, mediaKind: MediaKind): void {
    this.#attach(receiver, { key, direction: 'recv', mediaKind, api: this.api });
  }

  /** Stop counting a pipeline (its sender/receiver is gone). */
  forget(key: string): void {
    this.#counts.delete(key);
    if (!this.#closed) this.#post({ kind: 'forget', key } satisfies ToWorker);
  }

  /** Ask the worker for fresh counts now. */
  requestCounts(timeoutMs = 2000): Promise<FrameCount[]> {
    if (this.#closed) return Promise.resolve([...this.#counts.values()]);
    const requestId = this.#nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        resolve([...this.#counts.values()]);
      }, timeoutMs);
      this.#pending.set(requestId, (counts) => {
        clearTimeout(timer);
        resolve(counts);
      });
      this.#post({ kind: 'report', requestId } satisfies ToWorker);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#post({ kind: 'stop' } satisfies ToWorker);
    this.#worker.terminate();
    for (const resolve of this.#pending.values()) resolve([...this.#counts.values()]);
    this.#pending.clear();
  }

  #attach(target: RTCRtpSender | RTCRtpReceiver, info: PipelineInfo): void {
    if (this.#closed) throw new Error('transform worker is closed');
    if (this.api === 'script') {
      target.transform = new RTCRtpScriptTransform(this.#worker, info);
      return;
    }
    const { readable, writable } = (target as unknown as EncodedStreamsCapable).createEncodedStreams();
    this.#post({ kind: 'attach-streams', info, readable, writable } satisfies ToWorker, [readable, writable]);
  }

  #post(msg: ToWorker, transfer: Transferable[] = []): void {
    this.#worker.postMessage(msg, transfer);
  }

  #onMessage(msg: FromWorker): void {
    switch (msg.kind) {
      case 'counts': {
        // The worker's report lists every live pipeline: it replaces what we had (forgotten keys drop out).
        this.#counts.clear();
        for (const c of msg.counts) this.#counts.set(c.key, c);
        if (msg.requestId !== null) {
          this.#pending.get(msg.requestId)?.(msg.counts);
          this.#pending.delete(msg.requestId);
        }
        this.onCounts?.(this.#counts);
        break;
      }
      case 'pipeline-error':
        this.onError?.(msg.key, msg.message);
        break;
      default: {
        const never: never = msg;
        void never;
      }
    }
  }
}
