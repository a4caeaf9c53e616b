/**
 * Messages between the page and the transform worker (`worker.ts`). Every message is tagged by `kind`;
 * senders build them with `satisfies ToWorker` / `satisfies FromWorker` so a typo is a compile error.
 */
import type { TransformApi } from './support.ts';

export type Direction = 'send' | 'recv';
export type MediaKind = 'audio' | 'video';

/** What a transform pipeline is for; sent with every attach (and as RTCRtpScriptTransform options). */
export interface PipelineInfo {
  /** Stable local key: the consumer id for receivers, a random id stored in the producer's appData for senders. */
  key: string;
  direction: Direction;
  mediaKind: MediaKind;
  api: TransformApi;
}

export interface FrameCount extends PipelineInfo {
  frames: number;
  bytes: number;
  keyFrames: number;
  /** The pipeline ended (stream closed / track gone). */
  ended: boolean;
}

export type ToWorker =
  | { kind: 'start'; reportIntervalMs: number }
  /** createEncodedStreams path: the streams are transferred with the message. */
  | { kind: 'attach-streams'; info: PipelineInfo; readable: ReadableStream; writable: WritableStream }
  | { kind: 'forget'; key: string }
  | { kind: 'report'; requestId: number }
  | { kind: 'stop' };

export type FromWorker =
  | { kind: 'counts'; requestId: number | null; counts: FrameCount[] }
  | { kind: 'pipeline-error'; key: string; message: string };
