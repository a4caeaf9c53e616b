/**
 * The transform worker: ONE dedicated module worker runs every sender and receiver encoded transform, and it
 * runs the E2EE frame layer (client/src/e2ee: SFrame RFC 9605 + codec-aware clear prefix, docs/protocol/sframe.md).
 *
 * Two ways frames arrive:
 * - `rtctransform` events (RTCRtpScriptTransform; the page passes a `PipelineInfo` as the options), or
 * - `attach-streams` messages carrying the readable/writable pair from `createEncodedStreams()`.
 *
 * Both end in the same frame handler:
 * - send: `protectFrame` with the ONE send key of this member (one CTR space for all tracks), installed by
 *   `set-send-key` through `SendKeySlot` (send-key-slot.ts: exactly the key the page's KeyAgent handed over, refused
 *   unless newer than every key already used). No key, an unprotectable codec, or a failed seal → the frame is
 *   dropped and counted. Nothing is ever sent in clear.
 * - recv: `unprotectFrame` through the room's `ReceiveKeyRings` (routed by KID). Only authenticated plaintext is
 *   enqueued; frames under a not-yet-known KID are buffered and released when the key arrives; everything else
 *   is dropped and counted by reason.
 *
 * No code path enqueues a frame that was not sealed (send) or opened (recv); every frame handed to a pipeline is
 * counted under exactly one outcome (protocol.ts `FrameCount`), which the e2e tests reconcile with the browser's
 * encoder and packetizer counters. In a room that hides voice activity (`set-audio-padding`) Opus frames are padded
 * inside SFrame and the padding is stripped on receive. Keys arrive by message (transferred buffers), are copied
 * into the key rings and the transferred buffers wiped. No key material is ever logged or posted back.
 */
import { assertProtectableCodec, frameFromResult, protectFrame, unprotectFrame, type MediaCodec } from '../e2ee/frame-codec.ts';
import { MAX_SENDER_INDEX } from '../e2ee/kid.ts';
import { ReceiveKeyRings, type OpenResult } from '../e2ee/receive-rings.ts';
import { admitFrame } from './attribution.ts';
import type { FrameCount, FromWorker, PipelineInfo, SenderCount, ToWorker, WorkerDropReason } from './protocol.ts';
import { SendKeySlot } from './send-key-slot.ts';

/** The parts of an encoded audio/video frame the handler uses (both RTCEncodedAudioFrame and RTCEncodedVideoFrame). */
interface EncodedFrame {
  data: ArrayBuffer;
  readonly type?: 'key' | 'delta' | 'empty';
  getMetadata?(): { mimeType?: string };
}

/** Minimal typing for the dedicated worker global scope (the client is type-checked with the DOM lib). */
interface TransformerLike {
  readonly options: unknown;
  readonly readable: ReadableStream<EncodedFrame>;
  readonly writable: WritableStream<EncodedFrame>;
  generateKeyFrame?(rid?: string): Promise<unknown>;
}
interface WorkerScope {
  postMessage(message: FromWorker): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent<ToWorker>) => void): void;
  addEventListener(type: 'rtctransform', listener: (ev: Event & { transformer: TransformerLike }) => void): void;
  close(): void;
}

interface Pipeline {
  info: PipelineInfo;
  codec: MediaCodec | null;
  count: FrameCount;
  abort: AbortController;
  transformer: TransformerLike | null;
}

interface RecvToken {
  pipeline: Pipeline;
  codec: MediaCodec;
  frame: EncodedFrame;
  controller: TransformStreamDefaultController<EncodedFrame>;
}

interface WorkerState {
  pipelines: Map<string, Pipeline>;
  timer: ReturnType<typeof setInterval> | null;
  tickTimer: ReturnType<typeof setInterval> | null;
  dirty: boolean;
  send: SendKeySlot;
  recv: ReceiveKeyRings<RecvToken>;
  senders: Set<number>;
  keyed: Set<number>;
  /** Pad / strip Opus frames (the room hides voice activity). */
  padAudio: boolean;
}

const TICK_MS = 250;

const isSender = (v: unknown): v is number | null => v === null || (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_SENDER_INDEX);

function isPipelineInfo(v: unknown): v is PipelineInfo {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o['key'] === 'string' &&
    (o['direction'] === 'send' || o['direction'] === 'recv') &&
    (o['mediaKind'] === 'audio' || o['mediaKind'] === 'video') &&
    (o['api'] === 'script' || o['api'] === 'streams') &&
    typeof o['codec'] === 'string' &&
    isSender(o['sender'])
  );
}

function newRecvRings(): ReceiveKeyRings<RecvToken> {
  return new ReceiveKeyRings<RecvToken>({});
}

function createWorkerState(): WorkerState {
  return { pipelines: new Map(), timer: null, tickTimer: null, dirty: false, send: new SendKeySlot(), recv: newRecvRings(), senders: new Set(), keyed: new Set(), padAudio: false };
}

function snapshot(state: WorkerState): FrameCount[] {
  const kid = state.send.key?.kid.toString() ?? null;
  return [...state.pipelines.values()].map((p) => ({
    ...p.count,
    dropped: { ...p.count.dropped },
    sendKid: p.info.direction === 'send' ? kid : null,
  }));
}

function senderCounts(state: WorkerState): SenderCount[] {
  return [...state.senders].map((idx) => {
    const s = state.recv.ring(idx).stats;
    return { senderIndex: idx, opened: s.opened, buffered: s.buffered, dropped: { ...s.dropped }, keyed: state.keyed.has(idx) };
  });
}

function report(scope: WorkerScope, state: WorkerState, requestId: number | null): void {
  state.dirty = false;
  scope.postMessage({ kind: 'counts', requestId, counts: snapshot(state), senders: senderCounts(state) } satisfies FromWorker);
}

function drop(p: Pipeline, state: WorkerState, reason: WorkerDropReason): void {
  p.count.dropped[reason] = (p.count.dropped[reason] ?? 0) + 1;
  state.dirty = true;
}

/** An exact ArrayBuffer holding `b` (EncodedFrame.data must be a whole ArrayBuffer). */
function exactBuffer(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  return b.slice().buffer as ArrayBuffer;
}

function codecOf(p: Pipeline, frame: EncodedFrame): MediaCodec | null {
  // Prefer what the frame says (newer browsers), else the negotiated codec from the pipeline info.
  let mime: string | undefined;
  try {
    mime = frame.getMetadata?.().mimeType;
  } catch {
    mime = undefined;
  }
  if (mime) {
    try {
      return assertProtectableCodec(mime);
    } catch {
      return null;
    }
  }
  return p.codec;
}

async function sealFrame(state: WorkerState, p: Pipeline, frame: EncodedFrame, controller: TransformStreamDefaultController<EncodedFrame>): Promise<void> {
  const key = state.send.key;
  if (key === null) return drop(p, state, 'no-send-key');
  const codec = codecOf(p, frame);
  if (codec === null) return drop(p, state, 'codec');
  if (frame.data.byteLength === 0) return drop(p, state, 'empty');
  let out: Uint8Array;
  try {
    out = await protectFrame(key, codec, new Uint8Array(frame.data), { padAudio: state.padAudio });
  } catch {
    return drop(p, state, 'seal-failed');
  }
  frame.data = exactBuffer(out);
  p.count.sealed += 1;
  state.dirty = true;
  controller.enqueue(frame);
}

function deliver(state: WorkerState, r: OpenResult<RecvToken>): void {
  if (r.status === 'buffered') return;
  const tok = r.token;
  if (!tok) return;
  const p = tok.pipeline;
  if (r.status === 'ok') {
    let plain: Uint8Array | undefined;
    try {
      plain = frameFromResult(r, tok.codec, { padAudio: state.padAudio });
    } catch {
      return drop(p, state, 'malformed'); // not padded as the room's policy says (A §2.1)
    }
    if (!plain || p.abort.signal.aborted) return;
    tok.frame.data = exactBuffer(plain);
    p.count.opened += 1;
    state.dirty = true;
    try {
      tok.controller.enqueue(tok.frame);
    } catch {
      /* stream already closed */
    }
  } else if (r.status === 'dropped') {
    drop(p, state, r.reason);
  }
}

async function openFrame(state: WorkerState, p: Pipeline, frame: EncodedFrame, controller: TransformStreamDefaultController<EncodedFrame>): Promise<void> {
  const codec = codecOf(p, frame);
  if (codec === null) return drop(p, state, 'codec');
  const admit = admitFrame(p.info.sender, codec, new Uint8Array(frame.data));
  if (admit !== 'open') return drop(p, state, admit);
  const r = await unprotectFrame(state.recv, codec, new Uint8Array(frame.data), Date.now(), { pipeline: p, codec, frame, controller });
  if (r.status === 'buffered') {
    p.count.buffered += 1;
    state.dirty = true;
    return;
  }
  deliver(state, r);
}

function runPipeline(
  scope: WorkerScope,
  state: WorkerState,
  info: PipelineInfo,
  readable: ReadableStream<EncodedFrame>,
  writable: WritableStream<EncodedFrame>,
  transformer: TransformerLike | null,
): void {
  // A re-attach under the same key (should not happen) replaces the old pipeline.
  state.pipelines.get(info.key)?.abort.abort();
  let codec: MediaCodec | null;
  try {
    codec = assertProtectableCodec(info.codec);
  } catch {
    codec = null;
    scope.postMessage({ kind: 'pipeline-error', key: info.key, message: `codec ${info.codec} cannot be end-to-end encrypted: its frames are dropped` } satisfies FromWorker);
  }
  const pipeline: Pipeline = {
    info,
    codec,
    transformer,
    count: { ...info, frames: 0, bytes: 0, keyFrames: 0, sealed: 0, opened: 0, buffered: 0, released: 0, dropped: {}, pending: 0, sendKid: null, ended: false },
    abort: new AbortController(),
  };
  state.pipelines.set(info.key, pipeline);
  state.dirty = true;
  const transform = new TransformStream<EncodedFrame, EncodedFrame>({
    async transform(frame, controller) {
      pipeline.count.frames += 1;
      pipeline.count.bytes += frame.data.byteLength;
      if (frame.type === 'key') pipeline.count.keyFrames += 1;
      pipeline.count.pending += 1;
      state.dirty = true;
      try {
        if (info.direction === 'send') await sealFrame(state, pipeline, frame, controller);
        else await openFrame(state, pipeline, frame, controller);
      } finally {
        pipeline.count.pending -= 1;
      }
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

/** `set-send-key`: install exactly the key the page handed over, or refuse it (no send key + `key-error`). */
function setSendKey(scope: WorkerScope, state: WorkerState, msg: Extract<ToWorker, { kind: 'set-send-key' }>): void {
  const baseKey = new Uint8Array(msg.baseKey);
  try {
    state.send.install({ senderIndex: msg.senderIndex, generation: msg.generation, step: msg.step, kid: msg.kid, baseKey });
  } catch (e) {
    scope.postMessage({ kind: 'key-error', message: `send key refused (${e instanceof Error ? e.message : 'error'}): outgoing frames are dropped` } satisfies FromWorker);
  } finally {
    baseKey.fill(0);
    state.dirty = true;
  }
}

async function addReceiveKey(scope: WorkerScope, state: WorkerState, msg: Extract<ToWorker, { kind: 'add-receive-key' }>): Promise<void> {
  const key = new Uint8Array(msg.baseKey);
  try {
    state.senders.add(msg.senderIndex);
    state.recv.ring(msg.senderIndex);
    const released = await state.recv.addKey(msg.kid, key, Date.now());
    state.keyed.add(msg.senderIndex);
    for (const r of released) {
      // addKey returns only frames that were waiting in the buffer: each is counted once more, as opened or dropped.
      if (r.status !== 'buffered' && r.token) r.token.pipeline.count.released += 1;
      deliver(state, r);
    }
  } catch (e) {
    scope.postMessage({ kind: 'key-error', message: `receive key not installed (${e instanceof Error ? e.name : 'error'})` } satisfies FromWorker);
  } finally {
    key.fill(0);
    state.dirty = true;
  }
}

async function generateKeyFrames(scope: WorkerScope, state: WorkerState, requestId: number): Promise<void> {
  const done: string[] = [];
  const failed: string[] = [];
  await Promise.all(
    [...state.pipelines.values()]
      .filter((p) => p.info.direction === 'send' && p.info.mediaKind === 'video' && !p.count.ended)
      .map(async (p) => {
        const t = p.transformer;
        if (t && typeof t.generateKeyFrame === 'function') {
          try {
            await t.generateKeyFrame();
            done.push(p.info.key);
            return;
          } catch {
            /* fall through */
          }
        }
        failed.push(p.info.key);
      }),
  );
  scope.postMessage({ kind: 'key-frame-result', requestId, done, failed } satisfies FromWorker);
}

function start(scope: WorkerScope): void {
  const state = createWorkerState();
  state.tickTimer = setInterval(() => {
    if (state.recv.tick(Date.now()) > 0) state.dirty = true;
  }, TICK_MS);

  scope.addEventListener('rtctransform', (ev) => {
    const { transformer } = ev;
    if (!isPipelineInfo(transformer.options)) return; // not ours: never pass frames through unaccounted
    runPipeline(scope, state, transformer.options, transformer.readable, transformer.writable, transformer);
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
        if (!isPipelineInfo(msg.info)) break;
        runPipeline(scope, state, msg.info, msg.readable as ReadableStream<EncodedFrame>, msg.writable as WritableStream<EncodedFrame>, null);
        break;
      case 'bind-receiver': {
        const p = state.pipelines.get(msg.key);
        if (p && p.info.direction === 'recv' && isSender(msg.sender)) {
          p.info = { ...p.info, sender: msg.sender };
          p.count.sender = msg.sender;
          state.dirty = true;
        }
        break;
      }
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
      case 'set-send-key':
        setSendKey(scope, state, msg);
        break;
      case 'clear-send-key':
        state.send.clear();
        state.dirty = true;
        break;
      case 'add-sender':
        state.senders.add(msg.senderIndex);
        state.recv.ring(msg.senderIndex);
        state.dirty = true;
        break;
      case 'add-receive-key':
        void addReceiveKey(scope, state, msg);
        break;
      case 'forget-sender':
        state.recv.remove(msg.senderIndex);
        state.senders.delete(msg.senderIndex);
        state.keyed.delete(msg.senderIndex);
        state.dirty = true;
        break;
      case 'set-audio-padding':
        state.padAudio = msg.on === true;
        break;
      case 'forget-all-senders':
        state.recv.destroy();
        state.recv = newRecvRings();
        state.senders.clear();
        state.keyed.clear();
        state.dirty = true;
        break;
      case 'generate-key-frame':
        void generateKeyFrames(scope, state, msg.requestId);
        break;
      case 'stop':
        if (state.timer !== null) clearInterval(state.timer);
        if (state.tickTimer !== null) clearInterval(state.tickTimer);
        for (const p of state.pipelines.values()) p.abort.abort();
        state.pipelines.clear();
        state.send.clear();
        state.recv.destroy();
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
