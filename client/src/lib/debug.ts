/**
 * `window.__meet`: a READ-ONLY debug view for tests and troubleshooting. It exposes no keys, no invite
 * secret and no display names of others — only media plumbing facts:
 *
 * - `snapshot()`: plain JSON copy of the call state: status, own peer id, transform API, and per
 *   producer / consumer: id, kind, source, paused flags, transform API, and the frames/bytes the
 *   transform worker counted for it (from its last periodic report, every 500 ms).
 * - `refresh()`: asks the worker for fresh counts first, then returns `snapshot()`.
 * - `stats(id)`: RTCStats summary for a producer id (`framesEncoded`, `framesSent`, `bytesSent`, `packetsSent`) or a
 *   consumer id (`framesDecoded`, `framesReceived`, `bytesReceived`, `packetsReceived`, `frameWidth`, `frameHeight`).
 *
 * Nothing in it can change the call.
 */
import type { AppState } from './app.svelte.ts';
import type { TestKeyExport } from './call.svelte.ts';
import type { FrameCount } from '../transform/protocol.ts';

export interface DebugMedia {
  id: string;
  kind: 'audio' | 'video';
  source: string;
  paused: boolean;
  transformApi: string;
  transformKey: string;
  workerFrames: number;
  workerBytes: number;
  /**
   * E2EE counts of this pipeline from the worker's last report. Every frame has one outcome (transform/protocol.ts
   * FrameCount): send `workerFrames = sealed + Σdropped + pending`, recv `workerFrames = opened + Σdropped + buffered −
   * released + pending`.
   */
  sealed: number;
  opened: number;
  buffered: number;
  released: number;
  dropped: Record<string, number>;
  pending: number;
  /** Send pipelines: KID of the current send key (decimal), else null. */
  sendKid: string | null;
  codec: string | null;
}
export interface DebugConsumer extends DebugMedia {
  peerId: string;
  producerId: string;
  producerPaused: boolean;
  type: string;
  /** Spatial layer last requested with setPreferredLayers (follows the tile size), null if none. */
  preferredSpatialLayer: number | null;
}
export interface DebugSnapshot {
  route: string;
  phase: string;
  status: string | null;
  reconnecting: boolean;
  peerId: string | null;
  joinCount: number;
  transports: { send: string | null; recv: string | null };
  transformApi: string | null;
  peers: string[];
  activeSpeaker: string | null;
  producers: DebugMedia[];
  consumers: DebugConsumer[];
  e2ee: {
    sending: boolean;
    myFingerprint: string;
    roomCode: { emoji: string; digits: string } | null;
    members: { peerId: string; keyState: string; verification: string; fingerprint: string; opened: number; drops: Record<string, number> }[];
    alerts: { kind: string; message: string; at: number }[];
  };
}
export interface RtpSummary {
  direction: 'send' | 'recv';
  kind: 'audio' | 'video';
  framesEncoded: number;
  /** Video frames the packetizer sent (outbound-rtp `framesSent`, all layers). */
  framesSent: number;
  framesDecoded: number;
  /** Frames assembled from RTP (before decode): what a receive transform sees. */
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number;
  packetsReceived: number;
  frameWidth: number;
  frameHeight: number;
}
export interface MeetDebug {
  readonly version: 1;
  snapshot(): DebugSnapshot;
  refresh(): Promise<DebugSnapshot>;
  stats(id: string): Promise<RtpSummary | null>;
  /**
   * TEST BUILD ONLY (`vite build --mode test-hooks`, served by the e2e harness from `.cache/client-test/`), and only
   * when the page was opened with `?e2ee-test-hooks=1`: this browser's own send keys and the receive keys it was
   * given, as hex (see client/README.md). Absent otherwise; the production bundle has no such code at all.
   */
  exportKeysForTest?(): TestKeyExport | null;
}

declare global {
  interface Window {
    __meet?: MeetDebug;
  }
}

function snapshot(app: AppState): DebugSnapshot {
  const s = app.session;
  const counts = s?.transformWorker.counts;
  const count = (key: string) => counts?.get(key);
  const e2 = (key: string) => {
    const c: FrameCount | undefined = count(key);
    return {
      sealed: c?.sealed ?? 0,
      opened: c?.opened ?? 0,
      buffered: c?.buffered ?? 0,
      released: c?.released ?? 0,
      dropped: { ...(c?.dropped ?? {}) } as Record<string, number>,
      pending: c?.pending ?? 0,
      sendKid: c?.sendKid ?? null,
      codec: c?.codec ?? null,
    };
  };
  return {
    route: app.route.name,
    phase: app.phase,
    status: s?.status ?? null,
    reconnecting: s?.reconnecting ?? false,
    peerId: s?.peerId ?? null,
    joinCount: s?.joinCount ?? 0,
    transports: s?.transportStates() ?? { send: null, recv: null },
    transformApi: app.support.ok ? app.support.api : null,
    peers: s ? [...s.peers] : [],
    activeSpeaker: s?.activeSpeaker ?? null,
    producers: s
      ? [...(s.plane?.producers.values() ?? [])].map((p) => ({
          id: p.producer.id,
          kind: p.producer.kind,
          source: p.source,
          paused: p.producer.paused,
          transformApi: s.transformApi,
          transformKey: p.transformKey,
          workerFrames: count(p.transformKey)?.frames ?? 0,
          workerBytes: count(p.transformKey)?.bytes ?? 0,
          ...e2(p.transformKey),
        }))
      : [],
    consumers: s
      ? [...(s.plane?.consumers.values() ?? [])].map((m) => ({
          id: m.consumer.id,
          kind: m.consumer.kind,
          source: m.source,
          paused: m.consumerPaused,
          producerPaused: m.producerPaused,
          peerId: m.peerId,
          producerId: m.consumer.producerId,
          type: m.type,
          preferredSpatialLayer: s.plane?.preferredLayer(m.consumer.id) ?? null,
          transformApi: s.transformApi,
          transformKey: m.consumer.id,
          workerFrames: count(m.consumer.id)?.frames ?? 0,
          workerBytes: count(m.consumer.id)?.bytes ?? 0,
          ...e2(m.consumer.id),
        }))
      : [],
    e2ee: {
      sending: s?.e2ee.sending ?? false,
      myFingerprint: s?.e2ee.myFingerprint ?? '',
      roomCode: s?.e2ee.roomCode ? { ...s.e2ee.roomCode } : null,
      members: s ? s.e2ee.members.map((m) => ({ peerId: m.peerId, keyState: m.keyState, verification: m.verification, fingerprint: m.fingerprint, opened: m.opened, drops: { ...m.drops } })) : [],
      alerts: s ? s.e2ee.alerts.map((a) => ({ kind: a.kind, message: a.message, at: a.at })) : [],
    },
  };
}

function summarize(report: RTCStatsReport, direction: 'send' | 'recv', kind: 'audio' | 'video'): RtpSummary {
  const out: RtpSummary = {
    direction,
    kind,
    framesEncoded: 0,
    framesSent: 0,
    framesDecoded: 0,
    framesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    packetsSent: 0,
    packetsReceived: 0,
    frameWidth: 0,
    frameHeight: 0,
  };
  report.forEach((st: Record<string, unknown>) => {
    const n = (k: string) => (typeof st[k] === 'number' ? (st[k] as number) : 0);
    if (st['type'] === 'outbound-rtp' && direction === 'send') {
      out.framesEncoded += n('framesEncoded');
      out.framesSent += n('framesSent');
      out.bytesSent += n('bytesSent');
      out.packetsSent += n('packetsSent');
      out.frameWidth = Math.max(out.frameWidth, n('frameWidth'));
      out.frameHeight = Math.max(out.frameHeight, n('frameHeight'));
    } else if (st['type'] === 'inbound-rtp' && direction === 'recv') {
      out.framesDecoded += n('framesDecoded');
      out.framesReceived += n('framesReceived');
      out.bytesReceived += n('bytesReceived');
      out.packetsReceived += n('packetsReceived');
      out.frameWidth = Math.max(out.frameWidth, n('frameWidth'));
      out.frameHeight = Math.max(out.frameHeight, n('frameHeight'));
    }
  });
  return out;
}

export function installDebug(app: AppState): void {
  // `__SEALED_MEET_TEST_HOOKS__` is the literal false outside the TEST build: this branch is compiled out.
  const testHooks =
    __SEALED_MEET_TEST_HOOKS__ && app.testHooks
      ? {
          // Test build + ?e2ee-test-hooks=1 only: exposes THIS browser's keys, which any script running in this page
          // could read anyway.
          exportKeysForTest: (): TestKeyExport | null => app.session?.testKeys?.export() ?? null,
        }
      : {};
  const api: MeetDebug = Object.freeze({
    ...testHooks,
    version: 1 as const,
    snapshot: () => snapshot(app),
    async refresh() {
      await app.session?.transformWorker.requestCounts();
      return snapshot(app);
    },
    async stats(id: string): Promise<RtpSummary | null> {
      const s = app.session;
      if (!s) return null;
      for (const p of s.plane?.producers.values() ?? []) {
        if (p.producer.id === id && !p.producer.closed) return summarize(await p.producer.getStats(), 'send', p.producer.kind);
      }
      const m = s.plane?.consumers.get(id);
      if (m && !m.consumer.closed) return summarize(await m.consumer.getStats(), 'recv', m.consumer.kind);
      return null;
    },
  });
  Object.defineProperty(window, '__meet', { value: api, writable: false, configurable: false, enumerable: false });
}
