/**
 * The media plane of one join: the mediasoup-client device, the send and receive transports, our producers and the
 * consumers of everyone else's, ICE restarts, the receive watchdog and the simulcast layer each tile needs.
 *
 * One instance per join: `close()` drops every media object (not the local tracks, not the transform worker), and
 * every callback still in flight checks the `#closed` guard, so nothing of an old join reaches a new one.
 * Every transform is attached inside `onRtpSender` / `onRtpReceiver` (a transform set later is silently ignored).
 *
 * @module
 */
import { Device, type types } from 'mediasoup-client';
import { RequestError, type JoinResponse, type ProducerInfo, type RequestName, type Requests, type Responses, type TrackSource, type TransportInfo } from '../lib/signaling.ts';
import type { TransformWorker } from '../transform/TransformWorker.ts';
import { peerConnectionSettings, type TransformApi } from '../transform/support.ts';
import { IceRecovery } from './ice-recovery.ts';
import { layerFor, sendPlan, StallWatchdog } from './media-policy.ts';
import { Timers, type Clock } from './ports.ts';
import { attribution, BypassDetector, type AttributionState, type PipelineCounts, type TrustAlert } from './trust-monitor.ts';

const LAYER_DEBOUNCE_MS = 300;
/** Receive watchdog period: no inbound RTP at all while live consumers exist → ICE restart, then rejoin. */
const STALL_CHECK_MS = 5000;

/** The signaling requests the plane makes (socket.io in the browser). */
export interface SignalingPort {
  request<K extends RequestName>(name: K, payload: Requests[K], timeoutMs?: number): Promise<Responses[K]>;
}

export type MediaFrames = Pick<TransformWorker, 'attachSender' | 'attachReceiver' | 'bindReceiver' | 'forget' | 'generateKeyFrame' | 'requestCounts' | 'counts' | 'setAudioPadding'>;

export type PlaneEvent =
  /** Producers, consumers or their paused flags changed. */
  | { kind: 'changed' }
  /** Start over: leave and join again. */
  | { kind: 'rejoin'; why: string }
  /** Transport ids whose ICE is currently down. */
  | { kind: 'ice'; down: readonly string[] }
  | { kind: 'alert'; alert: TrustAlert };

export interface MediaPlanePorts {
  signaling: SignalingPort;
  frames: MediaFrames;
  clock: Clock;
  /** The server said this peer left: a consume answer in flight must not bring it back. */
  departed(peerId: string): boolean;
  /** The sender index the key exchange gave `peerId` (null: not admitted): its receive pipelines open only its frames. */
  senderIndexOf(peerId: string): number | null;
  emit(e: PlaneEvent): void;
}

export interface LocalProducer {
  readonly producer: types.Producer;
  readonly source: TrackSource;
  readonly transformKey: string;
}

/** A remote producer we consume. */
export interface RemoteMedia {
  readonly consumer: types.Consumer;
  readonly peerId: string;
  readonly source: TrackSource;
  /** mediasoup consumer type from the server: 'simple' | 'simulcast' | 'svc' | 'pipe'. */
  readonly type: string;
  /** The sender index its receive pipeline is bound to (null: the member is not admitted yet). */
  sender: number | null;
  producerPaused: boolean;
  consumerPaused: boolean;
}

export const isLive = (m: RemoteMedia): boolean => !m.producerPaused && !m.consumerPaused;

export class MediaPlane {
  readonly #ports: MediaPlanePorts;
  readonly #api: TransformApi;
  readonly #timers: Timers;
  readonly #device: types.Device;
  readonly #send: types.Transport;
  readonly #recv: types.Transport;
  readonly #producers = new Map<TrackSource, LocalProducer>();
  readonly #consumers = new Map<string, RemoteMedia>();
  readonly #consuming = new Set<string>();
  readonly #layerSent = new Map<string, number>();
  readonly #ice: IceRecovery;
  readonly #watchdog = new StallWatchdog();
  readonly #bypass = new BypassDetector();
  #attribution = new Map<string, AttributionState>();
  /** The room hides voice activity (join answer): constant-size mic audio (media-policy.ts sendPlan, frame padding). */
  readonly #hideVoiceActivity: boolean;
  #closed = false;

  /** Loads the device for the router and creates both transports. */
  static async connect(join: JoinResponse, api: TransformApi, ports: MediaPlanePorts): Promise<MediaPlane> {
    const device = new Device();
    await device.load({ routerRtpCapabilities: join.routerRtpCapabilities as unknown as types.RtpCapabilities });
    // Before any frame of this join is sealed or opened: Opus frames are padded / stripped in a room that hides voice activity.
    ports.frames.setAudioPadding(join.hideVoiceActivity === true);
    const [sendInfo, recvInfo] = await Promise.all([
      ports.signaling.request('createTransport', { direction: 'send' }),
      ports.signaling.request('createTransport', { direction: 'recv' }),
    ]);
    return new MediaPlane(device, join, sendInfo, recvInfo, api, ports);
  }

  private constructor(device: types.Device, join: JoinResponse, sendInfo: TransportInfo, recvInfo: TransportInfo, api: TransformApi, ports: MediaPlanePorts) {
    this.#ports = ports;
    this.#api = api;
    this.#timers = new Timers(ports.clock);
    this.#ice = new IceRecovery({
      restartIce: (transportId) => ports.signaling.request('restartIce', { transportId }),
      timers: this.#timers,
      closed: () => this.#closed,
      rejoin: (why) => this.#emit({ kind: 'rejoin', why }),
      downChanged: (down) => this.#emit({ kind: 'ice', down }),
    });
    this.#device = device;
    this.#hideVoiceActivity = join.hideVoiceActivity === true;
    const options = (info: TransportInfo): types.TransportOptions => ({
      id: info.id,
      iceParameters: info.iceParameters as unknown as types.IceParameters,
      iceCandidates: info.iceCandidates as unknown as types.IceCandidate[],
      dtlsParameters: info.dtlsParameters as unknown as types.DtlsParameters,
      // This join's TURN servers and credentials (fresh on every join) and the operator's policy (`relay`: TURN only).
      iceServers: join.iceServers as RTCIceServer[],
      iceTransportPolicy: join.iceTransportPolicy,
      additionalSettings: peerConnectionSettings(api),
    });
    this.#send = device.createSendTransport(options(sendInfo));
    this.#recv = device.createRecvTransport(options(recvInfo));
    for (const t of [this.#send, this.#recv]) this.#wireTransport(t);
    this.#send.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      ports.signaling
        .request('produce', { transportId: this.#send.id, kind, rtpParameters: rtpParameters as unknown as Record<string, unknown>, source: appData['source'] as TrackSource })
        .then(({ producerId }) => callback({ id: producerId }))
        .catch((e: unknown) => errback(e instanceof Error ? e : new Error(String(e))));
    });
    this.#timers.every(STALL_CHECK_MS, () => void this.#checkStall());
  }

  get closed(): boolean {
    return this.#closed;
  }

  get producers(): ReadonlyMap<TrackSource, LocalProducer> {
    return this.#producers;
  }

  get consumers(): ReadonlyMap<string, RemoteMedia> {
    return this.#consumers;
  }

  /** ICE/DTLS connection state of the send and receive transports (debug view). */
  transportStates(): { send: string; recv: string } {
    return { send: this.#send.connectionState, recv: this.#recv.connectionState };
  }

  /** The spatial layer last requested for a consumer via setPreferredLayers (null: none yet). */
  preferredLayer(consumerId: string): number | null {
    return this.#layerSent.get(consumerId) ?? null;
  }

  // ---------------------------------------------------------------------------------------------
  // Producers
  // ---------------------------------------------------------------------------------------------

  /** Send `track` as `source` (sealed by the transform worker); `paused`: created paused (muted mic, camera off). */
  async produce(source: TrackSource, track: MediaStreamTrack, paused: boolean): Promise<void> {
    if (this.#closed || this.#producers.has(source)) return;
    const codecs = this.#device.rtpCapabilities.codecs ?? [];
    const mime = track.kind === 'audio' ? 'audio/opus' : 'video/vp8';
    // Only codecs we can protect (VP8, Opus): anything else would be refused by the worker (frames dropped).
    const codec = codecs.find((c) => c.mimeType.toLowerCase() === mime);
    if (!codec) {
      this.#emit({ kind: 'alert', alert: { kind: 'codec-refused', message: `No end-to-end encryptable ${track.kind} codec (VP8/Opus) is available: ${source} is not sent.` } });
      return;
    }
    const transformKey = `send-${source}-${crypto.randomUUID()}`;
    const plan = sendPlan(source, { hideVoiceActivity: this.#hideVoiceActivity });
    const options: types.ProducerOptions = {
      track,
      stopTracks: false,
      codec,
      appData: { source, transformKey },
      onRtpSender: (sender) => this.#ports.frames.attachSender(sender, transformKey, track.kind === 'audio' ? 'audio' : 'video', codec.mimeType),
      ...(plan.encodings ? { encodings: plan.encodings } : {}),
      ...(plan.codecOptions ? { codecOptions: plan.codecOptions } : {}),
    };
    let producer: types.Producer;
    try {
      producer = await this.#send.produce(options);
    } catch (err) {
      this.#ports.frames.forget(transformKey);
      if (!this.#closed) console.warn(`[media] produce ${source} failed`, err);
      return;
    }
    if (this.#closed || this.#producers.has(source)) {
      producer.close();
      this.#ports.frames.forget(transformKey);
      return;
    }
    this.#producers.set(source, { producer, source, transformKey });
    this.#emit({ kind: 'changed' });
    if (paused) {
      producer.pause();
      await this.#try('pauseProducer', { producerId: producer.id });
    }
  }

  async pauseProducer(source: TrackSource): Promise<void> {
    const p = this.#producers.get(source);
    if (!p) return;
    p.producer.pause();
    this.#emit({ kind: 'changed' });
    await this.#try('pauseProducer', { producerId: p.producer.id });
  }

  async resumeProducer(source: TrackSource): Promise<void> {
    const p = this.#producers.get(source);
    if (!p) return;
    p.producer.resume();
    this.#emit({ kind: 'changed' });
    await this.#try('resumeProducer', { producerId: p.producer.id });
  }

  /** Switch the track of a producer (device change, camera off); the sender and its transform stay the same. */
  async replaceTrack(source: TrackSource, track: MediaStreamTrack | null): Promise<boolean> {
    const p = this.#producers.get(source);
    if (!p || p.producer.closed) return false;
    await p.producer.replaceTrack({ track });
    return true;
  }

  /** Stop sending `source` and tell the server. */
  async closeProducer(source: TrackSource): Promise<void> {
    const id = this.#dropProducer(source);
    if (id) await this.#try('closeProducer', { producerId: id });
  }

  #dropProducer(source: TrackSource): string | null {
    const p = this.#producers.get(source);
    if (!p) return null;
    p.producer.close();
    this.#ports.frames.forget(p.transformKey);
    this.#bypass.forget(p.producer.id);
    this.#producers.delete(source);
    this.#emit({ kind: 'changed' });
    return p.producer.id;
  }

  /** After our send key switched: the encoders send a key frame (worker first, the server as fallback). */
  async requestSendKeyFrames(): Promise<void> {
    const videos = [...this.#producers.values()].filter((p) => p.producer.kind === 'video' && !p.producer.closed);
    if (videos.length === 0) return;
    const { failed } = await this.#ports.frames.generateKeyFrame();
    const failedSet = new Set(failed);
    for (const p of videos) {
      if (!failedSet.has(p.transformKey) || p.producer.closed || this.#closed) continue;
      await this.#ports.signaling.request('requestProducerKeyFrame', { producerId: p.producer.id }).catch(() => undefined);
    }
  }

  /**
   * Bypass detector: compare each producer's outbound bytes with the frames the worker sealed for it. A producer
   * whose bytes flow unsealed is closed and an alert raised.
   */
  async checkBypass(): Promise<void> {
    const list = [...this.#producers.values()].filter((p) => !p.producer.closed);
    const bytes = new Map<string, number>();
    for (const p of list) {
      try {
        bytes.set(p.producer.id, sumStats(await p.producer.getStats(), 'outbound-rtp', 'bytesSent'));
      } catch {
        continue;
      }
    }
    // Counts fetched after the stats: every frame whose bytes were counted was sealed before. Stale counts (the worker
    // did not answer in time, e.g. on a loaded machine) go in as null (BypassDetector: left out, unless they persist).
    const fresh = await this.#ports.frames.requestCounts();
    for (const p of list) {
      const b = bytes.get(p.producer.id);
      if (b === undefined || p.producer.closed || this.#closed) continue;
      const sealed = fresh ? (this.#ports.frames.counts.get(p.transformKey)?.sealed ?? 0) : null;
      if (!this.#bypass.observe(p.producer.id, b, sealed)) continue;
      console.error('[e2ee] transform bypassed: media stopped', p.source);
      this.#emit({ kind: 'alert', alert: { kind: 'bypass', message: `Transform bypassed — media stopped (${p.source}). Your ${p.source} was not being encrypted, so it was turned off.` } });
      await this.closeProducer(p.source);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Consumers
  // ---------------------------------------------------------------------------------------------

  async consume(info: ProducerInfo): Promise<void> {
    if (this.#closed || this.#consuming.has(info.producerId)) return;
    this.#consuming.add(info.producerId);
    const { signaling, frames } = this.#ports;
    try {
      const res = await signaling.request('consume', {
        transportId: this.#recv.id,
        producerId: info.producerId,
        rtpCapabilities: this.#device.rtpCapabilities as unknown as Record<string, unknown>,
      });
      if (this.#closed) return;
      const rtpParameters = res.rtpParameters as unknown as types.RtpParameters;
      // The server names whose media this is; the pipeline opens only frames under that member's sender index.
      const sender = this.#ports.senderIndexOf(res.peerId);
      const consumer = await this.#recv.consume({
        id: res.consumerId,
        producerId: res.producerId,
        kind: res.kind,
        rtpParameters,
        streamId: `${res.peerId}-${res.source === 'screen' ? 'screen' : 'av'}`,
        appData: { peerId: res.peerId, source: res.source },
        onRtpReceiver: (receiver) => frames.attachReceiver(receiver, res.consumerId, res.kind, rtpParameters.codecs[0]?.mimeType ?? 'none', sender),
      });
      if (this.#closed || this.#ports.departed(res.peerId)) {
        consumer.close();
        frames.forget(consumer.id);
        this.#consuming.delete(info.producerId);
        return;
      }
      this.#consumers.set(consumer.id, { consumer, peerId: res.peerId, source: res.source, type: res.type, sender, producerPaused: res.producerPaused || info.paused, consumerPaused: false });
      consumer.on('transportclose', () => this.closeConsumer(consumer.id));
      this.#emit({ kind: 'changed' });
      await signaling.request('resumeConsumer', { consumerId: consumer.id });
    } catch (err) {
      this.#consuming.delete(info.producerId);
      if (this.#closed) return;
      if (err instanceof RequestError && err.code === 'UNAVAILABLE') this.#emit({ kind: 'rejoin', why: 'consume: UNAVAILABLE' });
      else console.warn('[media] consume failed', err);
    }
  }

  closeConsumer(consumerId: string): void {
    const m = this.#consumers.get(consumerId);
    if (!m) return;
    this.#consumers.delete(consumerId);
    this.#consuming.delete(m.consumer.producerId);
    this.#timers.cancel(`layer:${consumerId}`);
    this.#layerSent.delete(consumerId);
    m.consumer.close();
    this.#ports.frames.forget(consumerId);
    this.#emit({ kind: 'changed' });
  }

  /** Every consumer of `peerId`'s media (it left). */
  closePeer(peerId: string): void {
    for (const m of [...this.#consumers.values()]) if (m.peerId === peerId) this.closeConsumer(m.consumer.id);
  }

  producerClosed(producerId: string): void {
    for (const m of [...this.#consumers.values()]) if (m.consumer.producerId === producerId) this.closeConsumer(m.consumer.id);
  }

  setProducerPaused(producerId: string, paused: boolean): void {
    for (const m of this.#consumers.values()) if (m.consumer.producerId === producerId) m.producerPaused = paused;
    this.#emit({ kind: 'changed' });
  }

  setConsumerPaused(consumerId: string, paused: boolean): void {
    const m = this.#consumers.get(consumerId);
    if (!m) return;
    m.consumerPaused = paused;
    this.#emit({ kind: 'changed' });
  }

  /**
   * Sender indices changed (a member was admitted, left, or its index moved): rebind every receive pipeline to the
   * index of the member it carries, and ask for a key frame where video can now open.
   */
  rebind(): void {
    for (const m of this.#consumers.values()) {
      const sender = this.#ports.senderIndexOf(m.peerId);
      if (sender === m.sender || m.consumer.closed) continue;
      m.sender = sender;
      this.#ports.frames.bindReceiver(m.consumer.id, sender);
      if (sender !== null && m.consumer.kind === 'video') void this.#ports.signaling.request('requestKeyFrame', { consumerId: m.consumer.id }).catch(() => undefined);
    }
  }

  /**
   * The worker's new counts: which of our consumers get only another member's frames (trust-monitor `attribution`),
   * and which just started to (to alert once).
   */
  checkAttribution(counts: Iterable<PipelineCounts>): { misattributed: Set<string>; flagged: RemoteMedia[] } {
    const { next, flagged } = attribution(this.#attribution, counts);
    this.#attribution = next;
    const misattributed = new Set([...next].filter(([id, v]) => v.misattributed && this.#consumers.has(id)).map(([id]) => id));
    return { misattributed, flagged: flagged.flatMap((id) => this.#consumers.get(id) ?? []) };
  }

  /** A receive key arrived for `memberId`: ask for key frames on its video so decoding starts at once. */
  requestReceiveKeyFrames(memberId: string): void {
    for (const m of this.#consumers.values()) {
      if (m.peerId !== memberId || m.consumer.kind !== 'video' || m.consumer.closed) continue;
      void this.#ports.signaling.request('requestKeyFrame', { consumerId: m.consumer.id }).catch(() => undefined);
    }
  }

  /** A tile showing `consumerId` is rendered at width × height CSS pixels: ask for the layer it needs (debounced). */
  reportTileSize(consumerId: string, width: number, height: number): void {
    const m = this.#consumers.get(consumerId);
    if (!m || m.consumer.kind !== 'video') return;
    const layer = layerFor(width, height, globalThis.devicePixelRatio);
    this.#timers.after(`layer:${consumerId}`, LAYER_DEBOUNCE_MS, () => {
      const cur = this.#consumers.get(consumerId);
      if (!cur || cur.consumer.closed || cur.type !== 'simulcast' || this.#layerSent.get(consumerId) === layer) return;
      this.#ports.signaling.request('setPreferredLayers', { consumerId, spatialLayer: layer }).then(
        () => {
          if (this.#consumers.has(consumerId)) this.#layerSent.set(consumerId, layer);
        },
        (err: unknown) => console.warn('[media] setPreferredLayers failed', err),
      );
    });
  }

  /** Drop every media object of this join. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timers.clear();
    for (const p of this.#producers.values()) {
      p.producer.close();
      this.#ports.frames.forget(p.transformKey);
    }
    this.#producers.clear();
    for (const m of this.#consumers.values()) {
      m.consumer.close();
      this.#ports.frames.forget(m.consumer.id);
    }
    this.#consumers.clear();
    this.#consuming.clear();
    this.#send.close();
    this.#recv.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Transports, ICE, watchdog
  // ---------------------------------------------------------------------------------------------

  #emit(e: PlaneEvent): void {
    if (!this.#closed) this.#ports.emit(e);
  }

  #wireTransport(t: types.Transport): void {
    t.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.#ports.signaling
        .request('connectTransport', { transportId: t.id, dtlsParameters: dtlsParameters as unknown as Record<string, unknown> })
        .then(() => callback())
        .catch((e: unknown) => errback(e instanceof Error ? e : new Error(String(e))));
    });
    t.on('connectionstatechange', (state) => this.#ice.stateChanged(t, state));
  }

  async #checkStall(): Promise<void> {
    const recv = this.#recv;
    if (this.#closed || recv.closed) return;
    const live = [...this.#consumers.values()].some((m) => isLive(m) && !m.consumer.paused);
    let packets: number | null = null;
    if (live) {
      try {
        packets = sumStats(await recv.getStats(), 'inbound-rtp', 'packetsReceived');
      } catch {
        return;
      }
    }
    if (this.#closed) return;
    const verdict = this.#watchdog.observe(packets);
    if (verdict === 'restart-ice') {
      console.warn('[media] no inbound media for a while: restarting ICE');
      void this.#ice.restart(recv);
    } else if (verdict === 'rejoin') this.#emit({ kind: 'rejoin', why: 'no inbound media' });
  }

  async #try<K extends RequestName>(name: K, payload: Requests[K]): Promise<void> {
    try {
      await this.#ports.signaling.request(name, payload);
    } catch (err) {
      if (this.#closed) return;
      if (err instanceof RequestError && err.code === 'UNAVAILABLE') this.#emit({ kind: 'rejoin', why: `${name}: UNAVAILABLE` });
      else console.warn(`[media] ${name} failed`, err);
    }
  }
}

/** Sum of one numeric field over the stats entries of one type. */
export function sumStats(report: RTCStatsReport, type: string, field: string): number {
  let n = 0;
  report.forEach((st: Record<string, unknown>) => {
    if (st['type'] === type && typeof st[field] === 'number') n += st[field];
  });
  return n;
}
