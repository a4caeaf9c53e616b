/**
 * Messages between the page and the transform worker (`worker.ts`). Every message is tagged by `kind`;
 * senders build them with `satisfies ToWorker` / `satisfies FromWorker` so a typo is a compile error.
 *
 * Key bytes travel as transferred ArrayBuffers (the page's copy is detached by the transfer); the worker wipes
 * them once imported. Keys are never logged and never reported back.
 */
import type { Direction, MediaKind } from '../../../sfu/src/wire.ts';
import type { TransformApi } from './support.ts';

export type { Direction, MediaKind };

/** What a transform pipeline is for; sent with every attach (and as RTCRtpScriptTransform options). */
export interface PipelineInfo {
  /** Stable local key: the consumer id for receivers, a random id stored in the producer's appData for senders. */
  key: string;
  direction: Direction;
  mediaKind: MediaKind;
  api: TransformApi;
  /** Negotiated codec mime type (e.g. `video/VP8`); frames of an unprotectable or unknown codec are dropped. */
  codec: string;
  /**
   * Receive pipelines: the sender index of the member this pipeline carries (attribution.ts); frames under any other
   * sender's KID are dropped as `wrong-sender`. null: not known yet (frames dropped as `unbound`). Send pipelines: null.
   */
  sender: number | null;
}

/** Why the worker dropped a frame (SFrame drop reasons plus the send-side ones). */
export type WorkerDropReason =
  | 'wrong-sender'
  | 'unbound'
  | 'unknown-kid'
  | 'auth'
  | 'replay'
  | 'retired'
  | 'malformed'
  | 'expired'
  | 'overflow'
  | 'no-send-key'
  | 'codec'
  | 'empty'
  | 'seal-failed';

/**
 * Per-pipeline counts. Every frame the worker is handed (`frames`) ends in exactly one outcome, so at any report
 *   send: frames = sealed + Σdropped + pending
 *   recv: frames = opened + Σdropped + buffered − released + pending
 * (a buffered frame is counted once in `buffered`; if its key comes it is `released` and counted again as opened or
 * dropped; if not it expires inside the key ring and stays counted only in `buffered`). The e2e tests check both
 * equations against the browser's own encoder/packetizer counters (test/e2e/e2ee-helpers.ts).
 */
export interface FrameCount extends PipelineInfo {
  /** Frames handed to the worker by the browser (encoder output on send, depacketizer output on receive). */
  frames: number;
  bytes: number;
  keyFrames: number;
  /** Outgoing frames protected with SFrame. */
  sealed: number;
  /** Incoming frames authenticated and decrypted (buffered ones included once released). */
  opened: number;
  /** Incoming frames that had to wait for their key (counted once when buffered). */
  buffered: number;
  /** Buffered frames whose key arrived and that were then opened or dropped (so also counted there). */
  released: number;
  /** Frames dropped, by reason. A dropped frame never reaches the packetizer / decoder. */
  dropped: Partial<Record<WorkerDropReason, number>>;
  /** Frames inside the worker right now, between arriving and their outcome (0 or 1: one frame at a time per pipeline). */
  pending: number;
  /** Send pipelines: KID of the send key (decimal string), null before the key exists. */
  sendKid: string | null;
  /** The pipeline ended (stream closed / track gone). */
  ended: boolean;
}

/** Per remote sender index: what its receive ring did. */
export interface SenderCount {
  senderIndex: number;
  opened: number;
  buffered: number;
  dropped: Record<string, number>;
  /** Has at least one key been installed. */
  keyed: boolean;
}

export type ToWorker =
  | { kind: 'start'; reportIntervalMs: number }
  /** createEncodedStreams path: the streams are transferred with the message. */
  | { kind: 'attach-streams'; info: PipelineInfo; readable: ReadableStream; writable: WritableStream }
  | { kind: 'forget'; key: string }
  /** A receive pipeline's member got (or changed) its sender index. */
  | { kind: 'bind-receiver'; key: string; sender: number | null }
  | { kind: 'report'; requestId: number }
  /**
   * Our send key changed (KeyAgent `sendKeyChanged`): the worker seals under exactly this (kid, baseKey) from CTR 0,
   * and refuses it (no send key, `key-error`) unless the KID matches and (generation, step) is newer than every key
   * it already used for this sender index (send-key-slot.ts).
   */
  | { kind: 'set-send-key'; senderIndex: number; generation: number; step: number; kid: bigint; baseKey: ArrayBuffer }
  /** The key schedule ended (leaving / rejoining): drop the send key and its history; frames are dropped until the next set-send-key. */
  | { kind: 'clear-send-key' }
  /** A member was admitted: frames under its sender index are buffered (not dropped) until its key arrives. */
  | { kind: 'add-sender'; senderIndex: number }
  | { kind: 'add-receive-key'; senderIndex: number; kid: bigint; baseKey: ArrayBuffer }
  /** Member left or its index moved: wipe its receive ring. */
  | { kind: 'forget-sender'; senderIndex: number }
  /** Forget every receive ring (rejoin). */
  | { kind: 'forget-all-senders' }
  /**
   * The room hides voice activity (join answer `hideVoiceActivity`): Opus frames are padded inside SFrame on send and
   * the padding is stripped (strictly) on receive (e2ee/frame-codec.ts, docs/protocol.md A §2.1).
   */
  | { kind: 'set-audio-padding'; on: boolean }
  /** Ask the encoders of the send video pipelines for a key frame (RTCRtpScriptTransformer.generateKeyFrame). */
  | { kind: 'generate-key-frame'; requestId: number }
  | { kind: 'stop' };

export type FromWorker =
  | { kind: 'counts'; requestId: number | null; counts: FrameCount[]; senders: SenderCount[] }
  | { kind: 'pipeline-error'; key: string; message: string }
  /** Result of generate-key-frame: pipelines where the worker could not ask the encoder (page falls back to the server). */
  | { kind: 'key-frame-result'; requestId: number; done: string[]; failed: string[] }
  /** Something about keys went wrong (no key bytes, only a reason). */
  | { kind: 'key-error'; message: string };
