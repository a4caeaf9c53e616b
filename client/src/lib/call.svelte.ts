/**
 * One meeting session: signaling socket, mediasoup-client device + transports, local producers, remote
 * consumers, the transform worker, and the reconnect logic. Components read its state and call its methods.
 *
 * Reconnect policy (the user never clicks anything):
 * - ICE `disconnected`/`failed` on a transport: server `restartIce` + `transport.restartIce()`; if it is
 *   still not connected a few seconds later, fall back to a full rejoin.
 * - socket reconnect, a `rejoin` event, or an `UNAVAILABLE` answer: drop every media object, join again,
 *   re-produce the current local tracks and consume everyone.
 */
import { Device, type types } from 'mediasoup-client';
import { SvelteMap } from 'svelte/reactivity';
import { fromBase64url, toBase64url, utf8, fromUtf8 } from '../e2ee/bytes.ts';
import { openMetadata, sealMetadata } from '../e2ee/metadata.ts';
import { TransformWorker } from '../transform/TransformWorker.ts';
import { peerConnectionSettings, type TransformApi } from '../transform/support.ts';
import { E2eeState } from './e2ee.svelte.ts';
import type { LocalMedia } from './media.svelte.ts';
import {
  connectSocket,
  request,
  RequestError,
  type JoinResponse,
  type MediaSource,
  type MeetSocket,
  type ProducerInfo,
  type RequestName,
  type Requests,
} from './signaling.ts';

export type CallStatus = 'connecting' | 'joined' | 'reconnecting' | 'unreachable' | 'fatal' | 'left';
export type FatalReason = 'unauthorized' | 'room-full' | 'error';

export interface CallOptions {
  serverUrl: string;
  roomId: string;
  accessToken: string;
  metadataKey: Uint8Array;
  displayName: string;
  media: LocalMedia;
  transformApi: TransformApi;
}

const MAX_NAME_LEN = 64;
const LAYER_DEBOUNCE_MS = 300;
const ICE_RECHECK_MS = 8000;
/** Receive watchdog period: no inbound RTP at all while live consumers exist → ICE restart, then rejoin. */
const STALL_CHECK_MS = 5000;

/** A remote producer we consume. */
export class RemoteMedia {
  readonly consumer: types.Consumer;
  readonly peerId: string;
  readonly source: MediaSource;
  readonly transformKey: string;
  /** mediasoup consumer type from the server: 'simple' | 'simulcast' | 'svc' | 'pipe'. */
  readonly type: string;
  producerPaused = $state(false);
  consumerPaused = $state(false);

  constructor(consumer: types.Consumer, peerId: string, source: MediaSource, type: string, producerPaused: boolean) {
    this.consumer = consumer;
    this.type = type;
    this.peerId = peerId;
    this.source = source;
    this.transformKey = consumer.id;
    this.producerPaused = producerPaused;
  }
  get track(): MediaStreamTrack {
    return this.consumer.track;
  }
  get live(): boolean {
    return !this.producerPaused && !this.consumerPaused;
  }
}

export class RemotePeer {
  readonly id: string;
  name = $state<string | null>(null);
  camera = $state.raw<RemoteMedia | null>(null);
  mic = $state.raw<RemoteMedia | null>(null);
  screen = $state.raw<RemoteMedia | null>(null);
  constructor(id: string) {
    this.id = id;
  }
  get displayName(): string {
    return this.name ?? 'Participant';
  }
}

export interface TileModel {
  id: string;
  peerId: string | null;
  source: 'camera' | 'screen';
  local: boolean;
  name: string;
  videoTrack: MediaStreamTrack | null;
  audioTrack: MediaStreamTrack | null;
  /** Remote video consumer id (for preferred-layer updates), null for local tiles. */
  videoConsumerId: string | null;
  mirrored: boolean;
  micOff: boolean;
  speaking: boolean;
}

interface LocalProducer {
  producer: types.Producer;
  source: MediaSource;
  transformKey: string;
}

type Timer = ReturnType<typeof setTimeout>;

export class CallSession {
  status = $state<CallStatus>('connecting');
  fatal = $state<{ reason: FatalReason; message: string } | null>(null);
  /** Human-readable note for transient problems (e.g. screen share refused). */
  notice = $state<string | null>(null);
  peerId = $state<string | null>(null);
  activeSpeaker = $state<string | null>(null);
  /** Transport ids whose ICE is currently down. */
  iceDown = $state<string[]>([]);
  displayName = $state('');
  readonly peers = new SvelteMap<string, RemotePeer>();
  /** End-to-end encryption state for the UI (fingerprints, room code, alerts, chat sealing). */
  readonly e2ee = new E2eeState();
  /** Local producers by source (raw: mediasoup objects are not proxied). */
  producers = $state.raw<Partial<Record<MediaSource, LocalProducer>>>({});
  /** Every join that completed; tests and the UI read it. */
  joinCount = $state(0);

  readonly media: LocalMedia;
  readonly transformApi: TransformApi;
  readonly roomId: string;

  readonly reconnecting = $derived(this.status === 'reconnecting' || (this.status === 'joined' && this.iceDown.length > 0));

  readonly tiles: TileModel[] = $derived.by(() => this.#buildTiles());

  readonly #opts: CallOptions;
  #socket: MeetSocket | null = null;
  readonly #transform: TransformWorker;
  #device: types.Device | null = null;
  #send: types.Transport | null = null;
  #recv: types.Transport | null = null;
  #consumers = new Map<string, RemoteMedia>();
  #consumingProducers = new Set<string>();
  /** newProducer events that arrived while a join was in flight. */
  #pendingProducers = new Map<string, ProducerInfo>();
  #pendingNames = new Map<string, string>();
  #gen = 0;
  #ready = false;
  #everJoined = false;
  #left = false;
  #joining = false;
  #connectFailures = 0;
  #retryTimer: Timer | null = null;
  #iceTimers = new Map<string, Timer>();
  #iceRestarting = new Set<string>();
  #layerTimers = new Map<string, Timer>();
  #layerSent = new Map<string, number>();
  #stallTimer: ReturnType<typeof setInterval> | null = null;
  #stallChecks = 0;
  #lastInboundPackets = -1;
  /** Per-pipeline frame counts from the worker (kept reactive for the debug snapshot). */
  workerCounts = $state.raw<Record<string, { frames: number; bytes: number }>>({});

  constructor(opts: CallOptions) {
    this.#opts = opts;
    this.media = opts.media;
    this.transformApi = opts.transformApi;
    this.roomId = opts.roomId;
    this.displayName = opts.displayName;
    this.#transform = new TransformWorker(opts.transformApi);
    this.#transform.onCounts = (counts) => {
      const out: Record<string, { frames: number; bytes: number }> = {};
      for (const [k, c] of counts) out[k] = { frames: c.frames, bytes: c.bytes };
      this.workerCounts = out;
    };
    this.#transform.onError = (key, message) => console.warn('[transform]', key, message);
  }

  get transformWorker(): TransformWorker {
    return this.#transform;
  }

  /** All live consumers (for the debug snapshot). */
  get consumers(): ReadonlyMap<string, RemoteMedia> {
    return this.#consumers;
  }

  start(): void {
    if (this.#socket) return;
    const socket = connectSocket(this.#opts.serverUrl);
    this.#socket = socket;
    socket.on('connect', () => {
      this.#connectFailures = 0;
      if (this.#left) return;
      void this.#join();
    });
    socket.on('disconnect', (reason) => {
      if (this.#left) return;
      this.#teardown();
      this.status = this.#everJoined ? 'reconnecting' : 'connecting';
      // The server closed us on purpose: socket.io will not retry by itself.
      if (reason === 'io server disconnect') socket.connect();
    });
    socket.on('connect_error', () => {
      if (this.#left) return;
      this.#connectFailures += 1;
      if (this.#connectFailures >= 3 && this.status !== 'fatal') this.status = 'unreachable';
    });
    socket.on('rejoin', () => {
      if (this.#left) return;
      void this.#rejoin('server asked (worker died)');
    });
    socket.on('peerJoined', ({ peerId }) => {
      if (!this.#ready || peerId === this.peerId) return;
      this.#ensurePeer(peerId);
      void this.#sendProfile(peerId);
    });
    socket.on('peerLeft', ({ peerId }) => this.#removePeer(peerId));
    socket.on('newProducer', (info) => {
      if (info.peerId === this.peerId) return;
      if (!this.#ready) {
        this.#pendingProducers.set(info.producerId, info);
        return;
      }
      void this.#consume(info, this.#gen);
    });
    socket.on('producerClosed', ({ producerId }) => {
      this.#pendingProducers.delete(producerId);
      for (const m of this.#consumers.values()) if (m.consumer.producerId === producerId) this.#closeConsumer(m.consumer.id);
    });
    socket.on('producerPaused', ({ producerId }) => this.#setProducerPaused(producerId, true));
    socket.on('producerResumed', ({ producerId }) => this.#setProducerPaused(producerId, false));
    socket.on('consumerClosed', ({ consumerId }) => this.#closeConsumer(consumerId));
    socket.on('consumerPaused', ({ consumerId }) => {
      const m = this.#consumers.get(consumerId);
      if (m) m.consumerPaused = true;
    });
    socket.on('consumerResumed', ({ consumerId }) => {
      const m = this.#consumers.get(consumerId);
      if (m) m.consumerPaused = false;
    });
    socket.on('activeSpeaker', ({ peerId }) => {
      this.activeSpeaker = peerId;
    });
    socket.on('relay', ({ from, blob }) => void this.#onRelay(from, blob));
  }

  // -------------------------------------------------------------------------------------------
  // User actions
  // -------------------------------------------------------------------------------------------

  async toggleMic(): Promise<void> {
    const enable = !this.media.micEnabled;
    this.media.setMicEnabled(enable);
    const p = this.producers.mic;
    if (p) {
      if (enable) p.producer.resume();
      else p.producer.pause();
      await this.#try(enable ? 'resumeProducer' : 'pauseProducer', { producerId: p.producer.id });
      return;
    }
    if (enable) {
      const track = this.media.micTrack ?? (await this.media.acquire(), this.media.micTrack);
      if (track && this.#ready) await this.#produce('mic', track, this.#gen);
    }
  }

  async toggleCamera(): Promise<void> {
    const p = this.producers.camera;
    if (this.media.cameraEnabled) {
      this.media.stopCamera();
      if (p) {
        p.producer.pause();
        await p.producer.replaceTrack({ track: null }).catch(() => undefined);
        await this.#try('pauseProducer', { producerId: p.producer.id });
      }
      return;
    }
    const track = await this.media.startCamera();
    if (!track) {
      this.notice = 'The camera could not be started.';
      return;
    }
    const current = this.producers.camera;
    if (current && !current.producer.closed) {
      await current.producer.replaceTrack({ track });
      current.producer.resume();
      await this.#try('resumeProducer', { producerId: current.producer.id });
    } else if (this.#ready) {
      await this.#produce('camera', track, this.#gen);
    }
  }

  async toggleScreen(): Promise<void> {
    if (this.media.screenTrack) {
      await this.stopScreen();
      return;
    }
    let track: MediaStreamTrack | null;
    try {
      track = await this.media.startScreen();
    } catch (err) {
      this.notice = err instanceof DOMException && err.name === 'NotAllowedError' ? 'Screen sharing was cancelled.' : 'Screen sharing failed.';
      return;
    }
    if (!track) return;
    // Stopping from the browser's own "Stop sharing" UI ends the track.
    track.addEventListener('ended', () => void this.stopScreen(), { once: true });
    if (this.#ready) await this.#produce('screen', track, this.#gen);
  }

  async stopScreen(): Promise<void> {
    const p = this.producers.screen;
    this.media.stopScreen();
    if (p) {
      this.#dropProducer('screen');
      await this.#try('closeProducer', { producerId: p.producer.id });
    }
  }

  /** Switch camera device in the call (the sender, and so its transform, stays the same). */
  async changeCamera(deviceId: string): Promise<void> {
    const track = await this.media.selectCamera(deviceId);
    const p = this.producers.camera;
    if (track && p && !p.producer.closed) await p.producer.replaceTrack({ track });
  }

  async changeMic(deviceId: string): Promise<void> {
    const track = await this.media.selectMic(deviceId);
    const p = this.producers.mic;
    if (track && p && !p.producer.closed) await p.producer.replaceTrack({ track });
  }

  async setDisplayName(name: string): Promise<void> {
    this.displayName = name.trim().slice(0, MAX_NAME_LEN);
    if (this.#ready) await this.#sendProfile();
  }

  /** ICE/DTLS connection state of the send and receive transports (debug view). */
  transportStates(): { send: string | null; recv: string | null } {
    return { send: this.#send?.connectionState ?? null, recv: this.#recv?.connectionState ?? null };
  }

  /** The spatial layer last requested for a consumer via setPreferredLayers (null: none yet). */
  preferredLayer(consumerId: string): number | null {
    return this.#layerSent.get(consumerId) ?? null;
  }

  /** A tile showing `consumerId` is rendered at width x height CSS pixels. */
  reportTileSize(consumerId: string, width: number, height: number): void {
    const m = this.#consumers.get(consumerId);
    if (!m || m.consumer.kind !== 'video') return;
    const needed = Math.max(height, (width * 9) / 16) * (globalThis.devicePixelRatio || 1);
    const layer = needed <= 200 ? 0 : needed <= 420 ? 1 : 2;
    const old = this.#layerTimers.get(consumerId);
    if (old) clearTimeout(old);
    this.#layerTimers.set(
      consumerId,
      setTimeout(() => {
        this.#layerTimers.delete(consumerId);
        const cur = this.#consumers.get(consumerId);
        if (!cur || cur.consumer.closed || cur.type !== 'simulcast') return;
        if (this.#layerSent.get(consumerId) === layer) return;
        const socket = this.#socket;
        if (!socket) return;
        request(socket, 'setPreferredLayers', { consumerId, spatialLayer: layer }).then(
          () => {
            if (this.#consumers.has(consumerId)) this.#layerSent.set(consumerId, layer);
          },
          (err: unknown) => console.warn('[call] setPreferredLayers failed', err),
        );
      }, LAYER_DEBOUNCE_MS),
    );
  }

  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    const socket = this.#socket;
    this.#teardown();
    if (socket?.connected) await request(socket, 'leave', {}, 2000).catch(() => undefined);
    socket?.removeAllListeners();
    socket?.disconnect();
    this.#socket = null;
    this.#transform.close();
    this.status = 'left';
  }

  /** Release everything without telling the server (page navigation). */
  dispose(): void {
    if (this.#left) return;
    void this.leave();
  }

  // -------------------------------------------------------------------------------------------
  // Join / teardown
  // -------------------------------------------------------------------------------------------

  async #join(): Promise<void> {
    const socket = this.#socket;
    if (!socket || this.#joining || this.#left || this.status === 'fatal') return;
    this.#joining = true;
    const gen = ++this.#gen;
    this.#ready = false;
    this.status = this.#everJoined ? 'reconnecting' : 'connecting';
    try {
      let res: JoinResponse;
      try {
        res = await request(socket, 'join', { roomId: this.#opts.roomId, accessToken: this.#opts.accessToken });
      } catch (err) {
        if (err instanceof RequestError && err.code === 'ALREADY_JOINED') {
          await request(socket, 'leave', {}).catch(() => undefined);
          res = await request(socket, 'join', { roomId: this.#opts.roomId, accessToken: this.#opts.accessToken });
        } else throw err;
      }
      if (gen !== this.#gen) return;
      this.peerId = res.peerId;
      const device = new Device();
      await device.load({ routerRtpCapabilities: res.routerRtpCapabilities as unknown as types.RtpCapabilities });
      this.#device = device;
      const [sendInfo, recvInfo] = await Promise.all([
        request(socket, 'createTransport', { direction: 'send' }),
        request(socket, 'createTransport', { direction: 'recv' }),
      ]);
      if (gen !== this.#gen) return;
      const common = {
        iceServers: res.iceServers as RTCIceServer[],
        additionalSettings: peerConnectionSettings(this.transformApi),
      };
      const send = device.createSendTransport({
        id: sendInfo.id,
        iceParameters: sendInfo.iceParameters as unknown as types.IceParameters,
        iceCandidates: sendInfo.iceCandidates as unknown as types.IceCandidate[],
        dtlsParameters: sendInfo.dtlsParameters as unknown as types.DtlsParameters,
        ...common,
      });
      const recv = device.createRecvTransport({
        id: recvInfo.id,
        iceParameters: recvInfo.iceParameters as unknown as types.IceParameters,
        iceCandidates: recvInfo.iceCandidates as unknown as types.IceCandidate[],
        dtlsParameters: recvInfo.dtlsParameters as unknown as types.DtlsParameters,
        ...common,
      });
      this.#send = send;
      this.#recv = recv;
      for (const t of [send, recv]) this.#wireTransport(t, gen);
      send.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        request(socket, 'produce', {
          transportId: send.id,
          kind,
          rtpParameters: rtpParameters as unknown as Record<string, unknown>,
          source: appData['source'] as MediaSource,
        })
          .then(({ producerId }) => callback({ id: producerId }))
          .catch((e: unknown) => errback(e instanceof Error ? e : new Error(String(e))));
      });

      for (const p of res.peers) if (p.peerId !== res.peerId) this.#ensurePeer(p.peerId);
      this.#ready = true;
      this.#everJoined = true;
      this.status = 'joined';
      this.joinCount += 1;
      this.notice = null;
      this.#startStallWatchdog(gen);

      // Re-produce whatever we are currently sending (first join, or after a rejoin).
      const m = this.media;
      const jobs: Promise<unknown>[] = [];
      if (m.micTrack && m.micTrack.readyState === 'live') jobs.push(this.#produce('mic', m.micTrack, gen));
      if (m.cameraEnabled && m.cameraTrack && m.cameraTrack.readyState === 'live') jobs.push(this.#produce('camera', m.cameraTrack, gen));
      if (m.screenTrack && m.screenTrack.readyState === 'live') jobs.push(this.#produce('screen', m.screenTrack, gen));
      const producers = new Map<string, ProducerInfo>();
      for (const p of res.producers) producers.set(p.producerId, p);
      for (const [id, p] of this.#pendingProducers) producers.set(id, p);
      this.#pendingProducers.clear();
      for (const p of producers.values()) if (p.peerId !== res.peerId) jobs.push(this.#consume(p, gen));
      jobs.push(this.#sendProfile());
      await Promise.allSettled(jobs);
    } catch (err) {
      if (gen !== this.#gen) return;
      this.#handleJoinError(err);
    } finally {
      this.#joining = false;
    }
  }

  #handleJoinError(err: unknown): void {
    const code = err instanceof RequestError ? err.code : null;
    if (code === 'UNAUTHORIZED') {
      this.#fail('unauthorized', 'This invite link does not open this meeting. Ask for a fresh link.');
      return;
    }
    if (code === 'ROOM_FULL') {
      this.#fail('room-full', 'This meeting is full.');
      return;
    }
    if (code === 'DISCONNECTED') return; // the socket's connect handler joins again
    console.warn('[call] join failed, retrying', err);
    this.#teardown();
    this.status = this.#everJoined ? 'reconnecting' : 'connecting';
    this.#scheduleRetry(1500);
  }

  #fail(reason: FatalReason, message: string): void {
    this.#teardown();
    this.fatal = { reason, message };
    this.status = 'fatal';
    this.#socket?.removeAllListeners();
    this.#socket?.disconnect();
    this.#socket = null;
  }

  #scheduleRetry(ms: number): void {
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#socket?.connected) void this.#join();
    }, ms);
  }

  async #rejoin(why: string): Promise<void> {
    console.info('[call] rejoin:', why);
    const socket = this.#socket;
    this.#teardown();
    this.status = 'reconnecting';
    if (!socket?.connected) return; // connect handler joins
    await request(socket, 'leave', {}, 3000).catch(() => undefined);
    if (this.#socket === socket && !this.#left) void this.#join();
  }

  /** Drop every media object (not the local tracks, not the socket, not the transform worker). */
  #teardown(): void {
    this.#gen += 1;
    this.#ready = false;
    this.#joining = false;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    for (const t of this.#iceTimers.values()) clearTimeout(t);
    this.#iceTimers.clear();
    this.#iceRestarting.clear();
    for (const t of this.#layerTimers.values()) clearTimeout(t);
    this.#layerTimers.clear();
    if (this.#stallTimer) clearInterval(this.#stallTimer);
    this.#stallTimer = null;
    this.#layerSent.clear();
    for (const p of Object.values(this.producers)) {
      if (!p) continue;
      p.producer.close();
      this.#transform.forget(p.transformKey);
    }
    this.producers = {};
    for (const id of [...this.#consumers.keys()]) this.#closeConsumer(id);
    this.#consumingProducers.clear();
    this.#pendingProducers.clear();
    this.#send?.close();
    this.#recv?.close();
    this.#send = this.#recv = null;
    this.#device = null;
    this.peers.clear();
    this.activeSpeaker = null;
    this.iceDown = [];
  }

  #wireTransport(t: types.Transport, gen: number): void {
    const socket = this.#socket!;
    t.on('connect', ({ dtlsParameters }, callback, errback) => {
      request(socket, 'connectTransport', { transportId: t.id, dtlsParameters: dtlsParameters as unknown as Record<string, unknown> })
        .then(() => callback())
        .catch((e: unknown) => errback(e instanceof Error ? e : new Error(String(e))));
    });
    t.on('connectionstatechange', (state) => {
      if (gen !== this.#gen) return;
      if (state === 'connected') {
        this.iceDown = this.iceDown.filter((id) => id !== t.id);
        const timer = this.#iceTimers.get(t.id);
        if (timer) clearTimeout(timer);
        this.#iceTimers.delete(t.id);
      } else if (state === 'disconnected' || state === 'failed') {
        if (!this.iceDown.includes(t.id)) this.iceDown = [...this.iceDown, t.id];
        void this.#restartIce(t, gen);
      }
    });
  }

  /**
   * Receive watchdog: a recv transport can report "connected" while no RTP reaches it (seen on a starved
   * machine). If live consumers exist and the inbound packet total has not moved for two checks, restart
   * ICE; after four, rejoin.
   */
  #startStallWatchdog(gen: number): void {
    if (this.#stallTimer) clearInterval(this.#stallTimer);
    this.#stallChecks = 0;
    this.#lastInboundPackets = -1;
    this.#stallTimer = setInterval(() => void this.#checkStall(gen), STALL_CHECK_MS);
  }

  async #checkStall(gen: number): Promise<void> {
    const recv = this.#recv;
    if (!recv || gen !== this.#gen || recv.closed) return;
    const live = [...this.#consumers.values()].some((m) => m.live && !m.consumer.paused);
    if (!live) {
      this.#stallChecks = 0;
      return;
    }
    let packets = 0;
    try {
      (await recv.getStats()).forEach((st: Record<string, unknown>) => {
        if (st['type'] === 'inbound-rtp' && typeof st['packetsReceived'] === 'number') packets += st['packetsReceived'];
      });
    } catch {
      return;
    }
    if (gen !== this.#gen) return;
    if (packets > this.#lastInboundPackets) {
      this.#lastInboundPackets = packets;
      this.#stallChecks = 0;
      return;
    }
    this.#stallChecks += 1;
    if (this.#stallChecks === 2) {
      console.warn('[call] no inbound media for a while: restarting ICE');
      void this.#restartIce(recv, gen);
    } else if (this.#stallChecks >= 4) {
      void this.#rejoin('no inbound media');
    }
  }

  async #restartIce(t: types.Transport, gen: number): Promise<void> {
    const socket = this.#socket;
    if (!socket || this.#iceRestarting.has(t.id)) return;
    this.#iceRestarting.add(t.id);
    try {
      const { iceParameters } = await request(socket, 'restartIce', { transportId: t.id });
      if (gen !== this.#gen || t.closed) return;
      await t.restartIce({ iceParameters: iceParameters as unknown as types.IceParameters });
    } catch (err) {
      if (gen !== this.#gen) return;
      if (err instanceof RequestError && (err.code === 'UNAVAILABLE' || err.code === 'NOT_FOUND' || err.code === 'NOT_JOINED')) {
        void this.#rejoin(`restartIce: ${err.code}`);
        return;
      }
    } finally {
      this.#iceRestarting.delete(t.id);
    }
    // Still down after a while: start over.
    const old = this.#iceTimers.get(t.id);
    if (old) clearTimeout(old);
    this.#iceTimers.set(
      t.id,
      setTimeout(() => {
        this.#iceTimers.delete(t.id);
        if (gen === this.#gen && !t.closed && t.connectionState !== 'connected') void this.#rejoin('ICE did not recover');
      }, ICE_RECHECK_MS),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Producers
  // -------------------------------------------------------------------------------------------

  async #produce(source: MediaSource, track: MediaStreamTrack, gen: number): Promise<void> {
    const send = this.#send;
    const device = this.#device;
    if (!send || !device || gen !== this.#gen || this.producers[source]) return;
    const transformKey = `send-${source}-${crypto.randomUUID()}`;
    const codecs = device.rtpCapabilities.codecs ?? [];
    const vp8 = codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    const opus = codecs.find((c) => c.mimeType.toLowerCase() === 'audio/opus');
    const options: types.ProducerOptions = {
      track,
      stopTracks: false,
      appData: { source, transformKey },
      onRtpSender: (sender) => this.#transform.attachSender(sender, transformKey, track.kind === 'audio' ? 'audio' : 'video'),
    };
    if (source === 'camera') {
      options.encodings = [
        { rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
        { rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'r2', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
      ];
      options.codecOptions = { videoGoogleStartBitrate: 1000 };
      if (vp8) options.codec = vp8;
    } else if (source === 'screen') {
      options.encodings = [{ maxBitrate: 1_500_000 }];
      if (vp8) options.codec = vp8;
    } else {
      options.codecOptions = { opusStereo: false, opusDtx: true, opusFec: true };
      if (opus) options.codec = opus;
    }
    // Placeholder so a concurrent call for the same source does not produce twice.
    let producer: types.Producer;
    try {
      producer = await send.produce(options);
    } catch (err) {
      this.#transform.forget(transformKey);
      if (gen === this.#gen) console.warn(`[call] produce ${source} failed`, err);
      return;
    }
    if (gen !== this.#gen || this.producers[source]) {
      producer.close();
      this.#transform.forget(transformKey);
      return;
    }
    this.producers = { ...this.producers, [source]: { producer, source, transformKey } };
    producer.on('trackended', () => {
      if (source === 'screen') void this.stopScreen();
    });
    const paused = source === 'mic' ? !this.media.micEnabled : source === 'camera' ? !this.media.cameraEnabled : false;
    if (paused) {
      producer.pause();
      await this.#try('pauseProducer', { producerId: producer.id });
    }
  }

  #dropProducer(source: MediaSource): void {
    const p = this.producers[source];
    if (!p) return;
    p.producer.close();
    this.#transform.forget(p.transformKey);
    const next = { ...this.producers };
    delete next[source];
    this.producers = next;
  }

  // -------------------------------------------------------------------------------------------
  // Consumers
  // -------------------------------------------------------------------------------------------

  async #consume(info: ProducerInfo, gen: number): Promise<void> {
    const socket = this.#socket;
    const recv = this.#recv;
    const device = this.#device;
    if (!socket || !recv || !device || gen !== this.#gen) return;
    if (this.#consumingProducers.has(info.producerId)) return;
    this.#consumingProducers.add(info.producerId);
    try {
      const res = await request(socket, 'consume', {
        transportId: recv.id,
        producerId: info.producerId,
        rtpCapabilities: device.rtpCapabilities as unknown as Record<string, unknown>,
      });
      if (gen !== this.#gen) return;
      const consumer = await recv.consume({
        id: res.consumerId,
        producerId: res.producerId,
        kind: res.kind,
        rtpParameters: res.rtpParameters as unknown as types.RtpParameters,
        streamId: `${res.peerId}-${res.source === 'screen' ? 'screen' : 'av'}`,
        appData: { peerId: res.peerId, source: res.source },
        onRtpReceiver: (receiver) => this.#transform.attachReceiver(receiver, res.consumerId, res.kind),
      });
      if (gen !== this.#gen) {
        consumer.close();
        this.#transform.forget(consumer.id);
        return;
      }
      const media = new RemoteMedia(consumer, res.peerId, res.source, res.type, res.producerPaused || info.paused);
      this.#consumers.set(consumer.id, media);
      consumer.on('transportclose', () => this.#closeConsumer(consumer.id));
      const peer = this.#ensurePeer(res.peerId);
      peer[res.source] = media;
      await request(socket, 'resumeConsumer', { consumerId: consumer.id });
    } catch (err) {
      this.#consumingProducers.delete(info.producerId);
      if (gen !== this.#gen) return;
      if (err instanceof RequestError && err.code === 'UNAVAILABLE') void this.#rejoin('consume: UNAVAILABLE');
      else console.warn('[call] consume failed', info, err);
    }
  }

  #closeConsumer(consumerId: string): void {
    const m = this.#consumers.get(consumerId);
    if (!m) return;
    this.#consumers.delete(consumerId);
    this.#consumingProducers.delete(m.consumer.producerId);
    const t = this.#layerTimers.get(consumerId);
    if (t) clearTimeout(t);
    this.#layerTimers.delete(consumerId);
    this.#layerSent.delete(consumerId);
    m.consumer.close();
    this.#transform.forget(consumerId);
    const peer = this.peers.get(m.peerId);
    if (peer && peer[m.source] === m) peer[m.source] = null;
  }

  #setProducerPaused(producerId: string, paused: boolean): void {
    for (const m of this.#consumers.values()) if (m.consumer.producerId === producerId) m.producerPaused = paused;
    const pending = this.#pendingProducers.get(producerId);
    if (pending) pending.paused = paused;
  }

  // -------------------------------------------------------------------------------------------
  // Peers and sealed profiles
  // -------------------------------------------------------------------------------------------

  #ensurePeer(peerId: string): RemotePeer {
    let peer = this.peers.get(peerId);
    if (!peer) {
      peer = new RemotePeer(peerId);
      const name = this.#pendingNames.get(peerId);
      if (name) peer.name = name;
      this.peers.set(peerId, peer);
    }
    return peer;
  }

  #removePeer(peerId: string): void {
    for (const m of [...this.#consumers.values()]) if (m.peerId === peerId) this.#closeConsumer(m.consumer.id);
    this.peers.delete(peerId);
    this.#pendingNames.delete(peerId);
    if (this.activeSpeaker === peerId) this.activeSpeaker = null;
  }

  async #sendProfile(to?: string): Promise<void> {
    const socket = this.#socket;
    const me = this.peerId;
    if (!socket || !me || !this.displayName) return;
    const body = utf8(JSON.stringify({ t: 'profile', v: 1, name: this.displayName }));
    const sealed = await sealMetadata(this.#opts.metadataKey, this.#opts.roomId, me, body);
    const blob = toBase64url(sealed);
    await this.#try('relay', to ? { to, blob } : { blob });
  }

  async #onRelay(from: string, blob: string): Promise<void> {
    let msg: unknown;
    try {
      const opened = await openMetadata(this.#opts.metadataKey, this.#opts.roomId, from, fromBase64url(blob));
      msg = JSON.parse(fromUtf8(opened));
    } catch {
      return; // not a sealed profile for us (or forged): ignore
    }
    if (typeof msg !== 'object' || msg === null) return;
    const o = msg as Record<string, unknown>;
    if (o['t'] !== 'profile' || typeof o['name'] !== 'string') return;
    const name = o['name'].trim().slice(0, MAX_NAME_LEN);
    if (!name) return;
    const peer = this.peers.get(from);
    if (peer) peer.name = name;
    else this.#pendingNames.set(from, name);
  }

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  async #try<K extends RequestName>(name: K, payload: Requests[K]): Promise<void> {
    const socket = this.#socket;
    if (!socket) return;
    try {
      await request(socket, name, payload);
    } catch (err) {
      if (err instanceof RequestError && err.code === 'UNAVAILABLE') void this.#rejoin(`${name}: UNAVAILABLE`);
      else console.warn(`[call] ${name} failed`, err);
    }
  }

  #buildTiles(): TileModel[] {
    const tiles: TileModel[] = [];
    const m = this.media;
    tiles.push({
      id: 'local-camera',
      peerId: this.peerId,
      source: 'camera',
      local: true,
      name: `${this.displayName || 'You'} (you)`,
      videoTrack: m.cameraEnabled ? m.cameraTrack : null,
      audioTrack: null,
      videoConsumerId: null,
      mirrored: true,
      micOff: !m.micEnabled || !m.micTrack,
      speaking: this.peerId !== null && this.activeSpeaker === this.peerId,
    });
    if (m.screenTrack) {
      tiles.push({
        id: 'local-screen',
        peerId: this.peerId,
        source: 'screen',
        local: true,
        name: 'Your screen',
        videoTrack: m.screenTrack,
        audioTrack: null,
        videoConsumerId: null,
        mirrored: false,
        micOff: false,
        speaking: false,
      });
    }
    for (const peer of this.peers.values()) {
      const cam = peer.camera;
      const mic = peer.mic;
      tiles.push({
        id: `peer-${peer.id}-camera`,
        peerId: peer.id,
        source: 'camera',
        local: false,
        name: peer.displayName,
        videoTrack: cam && cam.live ? cam.track : null,
        audioTrack: mic ? mic.track : null,
        videoConsumerId: cam ? cam.consumer.id : null,
        mirrored: false,
        micOff: !mic || !mic.live,
        speaking: this.activeSpeaker === peer.id,
      });
      const scr = peer.screen;
      if (scr) {
        tiles.push({
          id: `peer-${peer.id}-screen`,
          peerId: peer.id,
          source: 'screen',
          local: false,
          name: `${peer.displayName}'s screen`,
          videoTrack: scr.live ? scr.track : null,
          audioTrack: null,
          videoConsumerId: scr.consumer.id,
          mirrored: false,
          micOff: false,
          speaking: false,
        });
      }
    }
    return tiles;
  }
}
