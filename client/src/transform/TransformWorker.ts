/**
 * Page-side facade of the transform worker. One instance per call session; `close()` is idempotent.
 *
 * Attach transforms from inside mediasoup-client's `onRtpSender` / `onRtpReceiver` callbacks: Chromium
 * silently bypasses a script transform that is set after the sender has started.
 */
import type { FrameCount, FromWorker, MediaKind, PipelineInfo, SenderCount, ToWorker } from './protocol.ts';
import type { TransformApi } from './support.ts';

type EncodedStreamsCapable = {
  createEncodedStreams(): { readable: ReadableStream; writable: WritableStream };
};

export class TransformWorker {
  readonly api: TransformApi;
  readonly #worker: Worker;
  readonly #counts = new Map<string, FrameCount>();
  /** requestCounts callers waiting for the worker's report: true = it answered (counts are fresh). */
  readonly #pending = new Map<number, (fresh: boolean) => void>();
  readonly #keyFramePending = new Map<number, (r: { done: string[]; failed: string[] }) => void>();
  #senders: SenderCount[] = [];
  #nextRequest = 1;
  #closed = false;
  /** Called after every count report from the worker. */
  onCounts: ((counts: ReadonlyMap<string, FrameCount>) => void) | null = null;
  onError: ((key: string, message: string) => void) | null = null;
  /** A key could not be installed (reason only, never key material). */
  onKeyError: ((message: string) => void) | null = null;

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

  /** Latest per-remote-sender receive counts. */
  get senders(): readonly SenderCount[] {
    return this.#senders;
  }

  attachSender(sender: RTCRtpSender, key: string, mediaKind: MediaKind, codec: string): void {
    this.#attach(sender, { key, direction: 'send', mediaKind, api: this.api, codec, sender: null });
  }

  /** `senderIndex`: the member this receiver carries (its frames only are opened); null until known. */
  attachReceiver(receiver: RTCRtpReceiver, key: string, mediaKind: MediaKind, codec: string, senderIndex: number | null): void {
    this.#attach(receiver, { key, direction: 'recv', mediaKind, api: this.api, codec, sender: senderIndex });
  }

  /** The member a receive pipeline carries got (or changed) its sender index. */
  bindReceiver(key: string, senderIndex: number | null): void {
    if (!this.#closed) this.#post({ kind: 'bind-receiver', key, sender: senderIndex } satisfies ToWorker);
  }

  /**
   * Hand our send key (KeyAgent `sendKeyChanged`) to the worker, which seals under exactly this key from CTR 0. The
   * worker refuses a KID that does not match (senderIndex, generation, step) or a (generation, step) not newer than
   * one it already used for `senderIndex`: it then holds no send key and reports `onKeyError`. `baseKey` is copied
   * into a buffer that is transferred (the copy leaves this thread).
   */
  setSendKey(senderIndex: number, generation: number, step: number, kid: bigint, baseKey: Uint8Array): void {
    if (this.#closed) return;
    const buf = baseKey.slice().buffer;
    this.#post({ kind: 'set-send-key', senderIndex, generation, step, kid, baseKey: buf } satisfies ToWorker, [buf]);
  }

  /** The key schedule ended (agent destroyed: leave / rejoin): the worker drops the send key and its history. */
  clearSendKey(): void {
    if (!this.#closed) this.#post({ kind: 'clear-send-key' } satisfies ToWorker);
  }

  addSender(senderIndex: number): void {
    if (!this.#closed) this.#post({ kind: 'add-sender', senderIndex } satisfies ToWorker);
  }

  addReceiveKey(senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    if (this.#closed) return;
    const buf = baseKey.slice().buffer;
    this.#post({ kind: 'add-receive-key', senderIndex, kid, baseKey: buf } satisfies ToWorker, [buf]);
  }

  forgetSender(senderIndex: number): void {
    if (!this.#closed) this.#post({ kind: 'forget-sender', senderIndex } satisfies ToWorker);
  }

  forgetAllSenders(): void {
    if (!this.#closed) this.#post({ kind: 'forget-all-senders' } satisfies ToWorker);
  }

  /** The room hides voice activity (join answer): pad Opus frames inside SFrame on send, strip the padding on receive. */
  setAudioPadding(on: boolean): void {
    if (!this.#closed) this.#post({ kind: 'set-audio-padding', on } satisfies ToWorker);
  }

  /** Ask the send video encoders for a key frame from inside the worker; resolves with the pipelines it could not reach. */
  generateKeyFrame(timeoutMs = 2000): Promise<{ done: string[]; failed: string[] }> {
    if (this.#closed) return Promise.resolve({ done: [], failed: [] });
    const requestId = this.#nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#keyFramePending.delete(requestId);
        resolve({ done: [], failed: [...this.#counts.values()].filter((c) => c.direction === 'send' && c.mediaKind === 'video').map((c) => c.key) });
      }, timeoutMs);
      this.#keyFramePending.set(requestId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.#post({ kind: 'generate-key-frame', requestId } satisfies ToWorker);
    });
  }

  /** Stop counting a pipeline (its sender/receiver is gone). */
  forget(key: string): void {
    this.#counts.delete(key);
    if (!this.#closed) this.#post({ kind: 'forget', key } satisfies ToWorker);
  }

  /**
   * Ask the worker for fresh counts now (`counts` is updated when it answers). Resolves true when it answered, false
   * when it did not within `timeoutMs` (a busy worker on a loaded machine) or is closed: `counts` is then stale.
   */
  requestCounts(timeoutMs = 2000): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    const requestId = this.#nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        resolve(false);
      }, timeoutMs);
      this.#pending.set(requestId, (fresh) => {
        clearTimeout(timer);
        resolve(fresh);
      });
      this.#post({ kind: 'report', requestId } satisfies ToWorker);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#post({ kind: 'stop' } satisfies ToWorker);
    this.#worker.terminate();
    for (const resolve of this.#pending.values()) resolve(false);
    this.#pending.clear();
    for (const resolve of this.#keyFramePending.values()) resolve({ done: [], failed: [] });
    this.#keyFramePending.clear();
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
        this.#senders = msg.senders;
        if (msg.requestId !== null) {
          this.#pending.get(msg.requestId)?.(true);
          this.#pending.delete(msg.requestId);
        }
        this.onCounts?.(this.#counts);
        break;
      }
      case 'pipeline-error':
        this.onError?.(msg.key, msg.message);
        break;
      case 'key-frame-result':
        this.#keyFramePending.get(msg.requestId)?.({ done: msg.done, failed: msg.failed });
        this.#keyFramePending.delete(msg.requestId);
        break;
      case 'key-error':
        this.onKeyError?.(msg.message);
        break;
      default: {
        const never: never = msg;
        void never;
      }
    }
  }
}
