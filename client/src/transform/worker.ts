/**
 * The transform worker: ONE dedicated module worker runs every sender and receiver encoded transform.
 *
 * Two ways frames arrive:
 * - `rtctransform` events (RTCRtpScriptTransform; the page passes a `PipelineInfo` as the options), or
 * - `attach-streams` messages carrying the readable/writable pair from `createEncodedStreams()`.
 *
 * Both end in the same `FrameHandler`. For now it passes frames through unchanged and counts them; the
 * E2EE layer will replace it with SFrame encrypt/decrypt. All state lives in the object made by
 * `createWorkerState()`; the module itself holds none.
 */
import type { FrameCount, FromWorker, PipelineInfo, ToWorker } from './protocol.ts';

/** The parts of an encoded audio/video frame the handler uses (both RTCEncodedAudioFrame and RTCEncodedVideoFrame). */
interface EncodedFrame {
  data: ArrayBuffer;
  readonly type?: 'key' | 'delta' | 'empty';
}

/** Minimal typing for the dedicated worker global scope (the client is type-checked with the DOM lib). */
interface TransformerLike {
  readonly options: unknown;
  readonly readable: ReadableStream<EncodedFrame>;
  readonly writable: WritableStream<EncodedFrame>;
}
interface WorkerScope {
  postMessage(message: FromWorker): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent<ToWorker>) => void): void;
  addEventListener(type: 'rtctransform', listener: (ev: Event & { transformer: TransformerLike }) => void): void;
  close(): void;
}

/** Decides what happens to one frame. Returning `null` drops it. */
export type FrameHandler = (frame: EncodedFrame, info: PipelineInfo) => EncodedFrame | null;

const passThrough: FrameHandler = (frame) => frame;

interface Pipeline {
  info: PipelineInfo;
  count: FrameCount;
  abort: AbortController;
}

interface WorkerState {
  pipelines: Map<string, Pipeline>;
  timer: ReturnType<typeof setInterval> | null;
  dirty: boolean;
  handler: FrameHandler;
}

function isPipelineInfo(v: unknown): v is PipelineInfo {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o['key'] === 'string' &&
    (o['direction'] === 'send' || o['direction'] === 'recv') &&
    (o['mediaKind'] === 'audio' || o['mediaKind'] === 'video') &&
    (o['api'] === 'script' || o['api'] === 'streams')
  );
}

function createWorkerState(): WorkerState {
  return { pipelines: new Map(), timer: null, dirty: false, handler: passThrough };
}

function snapshot(state: WorkerState): FrameCount[] {
  return [...state.pipelines.values()].map((p) => ({ ...p.count }));
}

function report(scope: WorkerScope, state: WorkerState, requestId: number | null): void {
  state.dirty = false;
  scope.postMessage({ kind: 'counts', requestId, counts: snapshot(state) } satisfies FromWorker);
}

function runPipeline(
  scope: WorkerScope,
  state: WorkerState,
  info: PipelineInfo,
  readable: ReadableStream<EncodedFrame>,
  writable: WritableStream<EncodedFrame>,
): void {
  // A re-attach under the same key (should not happen) replaces the old pipeline.
  state.pipelines.get(info.key)?.abort.abort();
  const pipeline: Pipeline = {
    info,
    count: { ...info, frames: 0, bytes: 0, keyFrames: 0, ended: false },
    abort: new AbortController(),
  };
  state.pipelines.set(info.key, pipeline);
  state.dirty = true;
  const transform = new TransformStream<EncodedFrame, EncodedFrame>({
    transform(frame, controller) {
      pipeline.count.frames += 1;
      pipeline.count.bytes += frame.data.byteLength;
      if (frame.type === 'key') pipeline.count.keyFrames += 1;
      state.dirty = true;
      const out = state.handler(frame, info);
      if (out) controller.enqueue(out);
    },
  });
  readable
    .pipeThrough(transform, { signal: pipeline.abort.signal })
    .pipeTo(writable, { signal: pipeline.abort.signal })
    .catch((err: unknown) => {
      if (pipeline.abort.signal.aborted) return;
      scope.postMessage({ kind: 'pipeline-error', key: info.key, message: String(err) } satisfies FromWorker);
    })
    .finally(() => {
      pipeline.count.ended = true;
      state.dirty = true;
    });
}

function start(scope: WorkerScope): void {
  const state = createWorkerState();

  scope.addEventListener('rtctransform', (ev) => {
    const { transformer } = ev;
    if (!isPipelineInfo(transformer.options)) return; // not ours: never pass frames through unaccounted
    runPipeline(scope, state, transformer.options, transformer.readable, transformer.writable);
  });

  scope.addEventListener('message', (ev) => {
    const msg = ev.data;
    switch (msg.kind) {
      case 'start':
        if (state.timer === null) {
          state.timer = setInterval(() => {
            if (state.dirty) report(scope, state, null);
          }, msg.reportIntervalMs);
        }
        break;
      case 'attach-streams':
        runPipeline(scope, state, msg.info, msg.readable as ReadableStream<EncodedFrame>, msg.writable as WritableStream<EncodedFrame>);
        break;
      case 'forget': {
        const p = state.pipelines.get(msg.key);
        if (p) {
          p.abort.abort();
          state.pipelines.delete(msg.key);
          state.dirty = true;
        }
        break;
      }
      case 'report':
        report(scope, state, msg.requestId);
        break;
      case 'stop':
        if (state.timer !== null) clearInterval(state.timer);
        for (const p of state.pipelines.values()) p.abort.abort();
        state.pipelines.clear();
        scope.close();
        break;
      default: {
        const never: never = msg;
        void never;
      }
    }
  });
}

start(self as unknown as WorkerScope);
