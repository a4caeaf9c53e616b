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
import { openRelay, sealRelay } from '../e2ee/relay-envelope.ts';
import { safetyNumber as computeSafetyNumber } from '../e2ee/codes.ts';
import { fingerprint as identityFingerprint, newSession, wipeSession, type Identity, type Session } from '../e2ee/identity.ts';
import type { InviteKeys } from '../e2ee/invite.ts';
import { KeyAgent, type SendKeyInfo } from '../e2ee/key-agent.ts';
import { SendKeyRing } from '../e2ee/keyring.ts';
import { currentRoomCode, RELAY_KIND, type MembershipEffect, type MembershipState } from '../e2ee/membership.ts';
import { check as checkVerification, isCreator, markVerified as recordVerified, type Verifications } from '../e2ee/verification.ts';
import { baseKeyForKid, chatInnerKid, openChatInner, sealChatInner } from '../e2ee/chat.ts';
import { loadIdentity, loadVerifications, saveVerifications } from './identity-store.ts';
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
  type TransportResponse,
} from './signaling.ts';

export type CallStatus = 'connecting' | 'joined' | 'reconnecting' | 'unreachable' | 'fatal' | 'left';
export type FatalReason = 'unauthorized' | 'room-full' | 'error';

export interface CallOptions {
  serverUrl: string;
  roomId: string;
  accessToken: string;
  metadataKey: Uint8Array;
  /** All invite-derived keys (membership MAC, HPKE PSK, metadata key). */
  inviteKeys: InviteKeys;
  /** Creator fingerprint from the invite link, if it carried one (auto-verifies the creator). */
  creatorFingerprint?: Uint8Array | undefined;
  /** `?e2ee-test-hooks=1`: keep copies of this browser's keys for `__meet.exportKeysForTest()`. */
  testHooks?: boolean;
  displayName: string;
  media: LocalMedia;
  transformApi: TransformApi;
}

const MAX_NAME_LEN = 64;
const LAYER_DEBOUNCE_MS = 300;
const ICE_RECHECK_MS = 8000;
/** Receive watchdog period: no inbound RTP at all while live consumers exist → ICE restart, then rejoin. */
const STALL_CHECK_MS = 5000;
/** KeyAgent clock (rotation timer, expiry). */
const KEY_TICK_MS = 1000;
/** Bypass detector period: bytes on the wire must come with sealed frames. */
const BYPASS_CHECK_MS = 1500;
/** Bytes a producer may send with no sealed frame in one period before we call it a bypass (RTX of earlier frames, probing). */
const BYPASS_SLACK_BYTES = 4000;

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const fpDisplay = (b: Uint8Array): string => hex(b).slice(0, 40).replace(/(.{4})(?=.)/g, '$1 ');

/** Keys of this browser exported for tests (only with `?e2ee-test-hooks=1`). Hex strings. */
export interface TestKeyExport {
  peerId: string | null;
  senderIndex: number | null;
  send: { kid: string; key: string } | null;
  /** Every send key this session used (initial, ratchets, fresh keys), oldest first. */
  sendHistory: { kid: string; key: string }[];
  receive: { peerId: string; senderIndex: number; kid: string; key: string }[];
}

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
  // E2EE
  #agent: KeyAgent | null = null;
  #session: Session | null = null;
  #identity: Identity | null = null;
  #verifications: Verifications | null = null;
  #keyTimer: ReturnType<typeof setInterval> | null = null;
  #bypassTimer: ReturnType<typeof setInterval> | null = null;
  #bypassLast = new Map<string, { bytes: number; sealed: number; strikes: number }>();
  #senderIndex: number | null = null;
  /** Current chat/media base key per member (ours under our peer id); wiped on leave. */
  #chatKeys = new Map<string, { senderIndex: number; kid: bigint; baseKey: Uint8Array }>();
  /** Members whose receive key arrived. */
  #keyed = new Set<string>();
  #testSend: { kid: string; key: string }[] = [];
  #testRecv: { peerId: string; senderIndex: number; kid: string; key: string }[] = [];
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
      this.#refreshMembers();
    };
    this.#transform.onError = (key, message) => {
      console.warn('[transform]', key, message);
      if (/cannot be end-to-end encrypted/.test(message)) this.e2ee.alert('codec-refused', message);
    };
    this.#transform.onKeyError = (message) => {
      console.warn('[e2ee]', message);
      this.e2ee.alert('internal', message);
    };
    this.e2ee.attach({
      safetyNumber: (peerId) => this.#safetyNumber(peerId),
      markVerified: (peerId) => this.#markVerified(peerId),
      sealChat: (text) => this.#sealChat(text),
      openChat: (from, blob) => this.#openChat(from, blob),
    });
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
    socket.on('peerLeft', ({ peerId }) => {
      this.#departed.add(peerId);
      this.#removePeer(peerId);
      // Forward secrecy on leave: the reducer forgets the member and switches us to a fresh key.
      void this.#agent?.memberLeft(Date.now(), peerId);
    });
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
    // Unwrapping is async; a chain keeps relay messages in arrival order (announcement before key batch).
    socket.on('relay', ({ from, blob }) => {
      this.#relayChain = this.#relayChain.then(() => this.#onRelay(from, blob)).catch(() => undefined);
    });
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
      // Keys first: our send key exists before the first frame is encoded (frames before it are dropped, never sent in clear).
      await this.#startKeys(res.peerId, res.peers.map((p) => p.peerId).filter((id) => id !== res.peerId), gen);
      if (gen !== this.#gen) return;
      const device = new Device();
      await device.load({ routerRtpCapabilities: res.routerRtpCapabilities as unknown as types.RtpCapabilities });
      this.#device = device;
      const [sendInfo, recvInfo] = await Promise.all([
        request(socket, 'createTransport', { direction: 'send' }),
        request(socket, 'createTransport', { direction: 'recv' }),
      ]);
      if (gen !== this.#gen) return;
      const options = (info: TransportResponse): types.TransportOptions => ({
        id: info.id,
        iceParameters: info.iceParameters as unknown as types.IceParameters,
        iceCandidates: info.iceCandidates as unknown as types.IceCandidate[],
        dtlsParameters: info.dtlsParameters as unknown as types.DtlsParameters,
        iceServers: res.iceServers as RTCIceServer[],
        additionalSettings: peerConnectionSettings(this.transformApi),
      });
      const send = device.createSendTransport(options(sendInfo));
      const recv = device.createRecvTransport(options(recvInfo));
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

      for (const p of res.peers) if (p.peerId !== res.peerId && !this.#departed.has(p.peerId)) this.#ensurePeer(p.peerId);
      this.#ready = true;
      this.#everJoined = true;
      this.status = 'joined';
      this.joinCount += 1;
      this.notice = null;
      this.#startStallWatchdog(gen);
      this.#startBypassDetector(gen);

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
    if (this.#bypassTimer) clearInterval(this.#bypassTimer);
    this.#bypassTimer = null;
    this.#bypassLast.clear();
    this.#stopKeys();
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
    // Only codecs we can protect (VP8, Opus): anything else would be refused by the worker (frames dropped).
    const sendCodec = track.kind === 'audio' ? (opus?.mimeType ?? 'none') : (vp8?.mimeType ?? 'none');
    if (sendCodec === 'none') {
      this.e2ee.alert('codec-refused', `No end-to-end encryptable ${track.kind} codec (VP8/Opus) is available: ${source} is not sent.`);
      return;
    }
    const options: types.ProducerOptions = {
      track,
      stopTracks: false,
      appData: { source, transformKey },
      onRtpSender: (sender) => this.#transform.attachSender(sender, transformKey, track.kind === 'audio' ? 'audio' : 'video', sendCodec),
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
        onRtpReceiver: (receiver) =>
          this.#transform.attachReceiver(receiver, res.consumerId, res.kind, (res.rtpParameters as unknown as types.RtpParameters).codecs[0]?.mimeType ?? 'none'),
      });
      if (gen !== this.#gen || this.#departed.has(res.peerId)) {
        consumer.close();
        this.#transform.forget(consumer.id);
        this.#consumingProducers.delete(info.producerId);
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
    await this.#sendRelay(toBase64url(sealed), to);
  }

  /**
   * Every relay blob leaves inside the uniform outer envelope (e2ee/relay-envelope.ts): padded to 1 KiB buckets and
   * sealed under the invite's metadata key, so the server cannot tell key messages, names and chat apart.
   */
  async #wrapRelay(inner: string): Promise<string> {
    const me = this.peerId;
    if (!me) throw new Error('not joined');
    return toBase64url(await sealRelay(this.#opts.metadataKey, this.#opts.roomId, me, fromBase64url(inner)));
  }

  async #sendRelay(inner: string, to?: string): Promise<void> {
    const blob = await this.#wrapRelay(inner);
    await this.#try('relay', to !== undefined ? { to, blob } : { blob });
  }

  async #onRelay(from: string, outer: string): Promise<void> {
    let first: number | undefined;
    let blob: string;
    try {
      const inner = await openRelay(this.#opts.metadataKey, this.#opts.roomId, from, fromBase64url(outer));
      first = inner[0];
      blob = toBase64url(inner);
    } catch {
      // Not sealed with this meeting's invite (or re-attributed by the server): whoever sent it has no invite key.
      const who = this.peers.get(from)?.displayName ?? 'A participant';
      this.e2ee.alert('injected-member', `${who} sent key-exchange traffic without the invite key. It gets no keys and cannot see or hear anyone.`);
      return;
    }
    if (first === RELAY_KIND.announcement || first === RELAY_KIND['key-batch'] || first === RELAY_KIND['channel-reset']) {
      if (this.#agent) void this.#agent.relay(Date.now(), from, blob);
      else if (this.#pendingRelays.length < 200) this.#pendingRelays.push({ from, blob });
      return;
    }
    let msg: unknown;
    let opened: Uint8Array;
    try {
      opened = await openMetadata(this.#opts.metadataKey, this.#opts.roomId, from, fromBase64url(blob));
    } catch {
      return; // not sealed with our invite (or forged): ignore
    }
    if (chatInnerKid(opened) !== null) {
      for (const l of this.#chatBlobListeners) {
        try {
          l(from, blob);
        } catch (e) {
          console.warn('[chat] listener failed', e);
        }
      }
      const m = await this.#openChatInner(from, opened);
      if (m) this.e2ee.deliverChat({ from, text: m.text, at: m.at, blob });
      return;
    }
    try {
      msg = JSON.parse(fromUtf8(opened));
    } catch {
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const o = msg as Record<string, unknown>;
    if (o['t'] !== 'profile' || typeof o['name'] !== 'string') return;
    const name = o['name'].trim().slice(0, MAX_NAME_LEN);
    if (!name) return;
    const peer = this.peers.get(from);
    if (peer) peer.name = name;
    else this.#pendingNames.set(from, name);
    this.#refreshMembers();
  }

  // -------------------------------------------------------------------------------------------
  // End-to-end encryption: KeyAgent over the relay, keys to the transform worker
  // -------------------------------------------------------------------------------------------

  #pendingRelays: { from: string; blob: string }[] = [];
  #relayChain: Promise<void> = Promise.resolve();
  /** Peers the server said left (a consume or join answer in flight must not bring them back). */
  #departed = new Set<string>();

  async #startKeys(peerId: string, existing: string[], gen: number): Promise<void> {
    this.#stopKeys();
    const identity = (this.#identity ??= await loadIdentity());
    this.#verifications ??= await loadVerifications();
    if (gen !== this.#gen) return;
    this.e2ee.myFingerprint = fpDisplay(identityFingerprint(identity.publicKey));
    const session = newSession(identity, this.#opts.roomId, peerId);
    this.#session = session;
    const transform = this.#transform;
    const agent: KeyAgent = new KeyAgent(
      { roomId: this.#opts.roomId, memberId: peerId, inviteKeys: this.#opts.inviteKeys, identity, session },
      {
        send: ({ to, blob }) => {
          if (this.#agent !== agent) return;
          void this.#sendRelay(blob, to);
        },
        createSendRing: (senderIndex, generation, baseKey, now) => new SendKeyRing({ sender: senderIndex, generation, now }, baseKey),
        sendKeyChanged: (key: SendKeyInfo, senderIndex: number) => {
          if (this.#agent !== agent) return;
          this.#senderIndex = senderIndex;
          transform.setSendKey(senderIndex, key.generation, key.step, key.kid, key.baseKey);
          this.#setChatKey(peerId, senderIndex, key.kid, key.baseKey);
          if (this.#opts.testHooks) this.#testSend.push({ kid: key.kid.toString(), key: hex(key.baseKey) });
          this.e2ee.sending = true;
        },
        installReceiveKey: (memberId, senderIndex, update) => {
          if (this.#agent !== agent) return;
          transform.addReceiveKey(senderIndex, update.kid, update.baseKey);
          this.#setChatKey(memberId, senderIndex, update.kid, update.baseKey);
          if (this.#opts.testHooks) this.#testRecv.push({ peerId: memberId, senderIndex, kid: update.kid.toString(), key: hex(update.baseKey) });
          this.#keyed.add(memberId);
          this.#requestReceiveKeyFrames(memberId);
          this.#refreshMembers();
        },
        onEffect: (eff, state) => {
          if (this.#agent !== agent) return;
          this.#onKeyEffect(eff, state);
        },
      },
    );
    this.#agent = agent;
    this.#keyTimer = setInterval(() => void agent.tick(Date.now()), KEY_TICK_MS);
    await agent.join(Date.now(), existing);
    const pending = this.#pendingRelays;
    this.#pendingRelays = [];
    for (const r of pending) void agent.relay(Date.now(), r.from, r.blob);
  }

  #stopKeys(): void {
    if (this.#keyTimer) clearInterval(this.#keyTimer);
    this.#keyTimer = null;
    this.#pendingRelays = [];
    const agent = this.#agent;
    this.#agent = null;
    if (agent) {
      agent.destroy();
      this.#transform.clearSendKey();
      this.#transform.forgetAllSenders();
    }
    if (this.#session) wipeSession(this.#session);
    this.#session = null;
    for (const k of this.#chatKeys.values()) k.baseKey.fill(0);
    this.#chatKeys.clear();
    this.#keyed.clear();
    this.#senderIndex = null;
    this.e2ee.sending = false;
    this.e2ee.roomCode = null;
  }

  #setChatKey(memberId: string, senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    this.#chatKeys.get(memberId)?.baseKey.fill(0);
    this.#chatKeys.set(memberId, { senderIndex, kid, baseKey: baseKey.slice() });
  }

  #onKeyEffect(eff: MembershipEffect, state: MembershipState): void {
    switch (eff.kind) {
      case 'roster-changed': {
        for (const [id, idx] of state.senderIndices) if (id !== this.peerId) this.#transform.addSender(idx);
        try {
          const rc = currentRoomCode(state);
          this.e2ee.roomCode = { emoji: rc.emoji.map((e) => e.emoji).join(' '), digits: rc.digits.replace(/(\d{4})(?=\d)/g, '$1 ') };
        } catch {
          this.e2ee.roomCode = null;
        }
        this.#refreshMembers();
        break;
      }
      case 'forget-member':
        if (eff.senderIndex !== undefined) this.#transform.forgetSender(eff.senderIndex);
        this.#chatKeys.get(eff.memberId)?.baseKey.fill(0);
        this.#chatKeys.delete(eff.memberId);
        this.#keyed.delete(eff.memberId);
        this.#refreshMembers();
        break;
      case 'sender-index-changed':
        this.#transform.forgetSender(eff.from);
        this.#transform.addSender(eff.to);
        break;
      case 'request-keyframe':
        void this.#requestSendKeyFrames();
        break;
      case 'alert':
        this.#raiseKeyAlert(eff.reason, eff.memberId, eff.detail);
        break;
      default:
        break;
    }
  }

  #raiseKeyAlert(reason: string, memberId: string | undefined, detail: string | undefined): void {
    const who = memberId ? (this.peers.get(memberId)?.displayName ?? 'A participant') : 'A participant';
    switch (reason) {
      case 'bad-mac':
        this.e2ee.alert('injected-member', `${who} tried to join the key exchange without the invite key. It gets no keys and cannot see or hear anyone.`);
        break;
      case 'session-changed':
      case 'impersonation':
        this.e2ee.alert('identity-changed', `${who} presented a different identity or session key; it was ignored.`);
        break;
      case 'replayed-announcement':
        this.e2ee.alert('roster', 'The server replayed the key announcement of someone who already left; it was refused.');
        break;
      case 'internal-error':
        this.e2ee.alert('internal', `Key handling failed (${detail ?? 'error'}); the next key rotation repairs it.`);
        break;
      case 'not-joined':
        break;
      default:
        this.e2ee.alert('key-exchange', `A key message was rejected (${reason}${detail ? `: ${detail}` : ''}).`);
    }
  }

  /** After our send key switched: the encoders send a key frame (worker first, the server as fallback). */
  async #requestSendKeyFrames(): Promise<void> {
    const videos = Object.values(this.producers).filter((p): p is LocalProducer => !!p && p.producer.kind === 'video' && !p.producer.closed);
    if (videos.length === 0) return;
    const { failed } = await this.#transform.generateKeyFrame();
    const failedSet = new Set(failed);
    for (const p of videos) {
      if (!failedSet.has(p.transformKey) || p.producer.closed) continue;
      const socket = this.#socket;
      if (socket) await request(socket, 'requestProducerKeyFrame', { producerId: p.producer.id }).catch(() => undefined);
    }
  }

  /** A receive key arrived for `memberId`: ask for key frames on its video so decoding starts at once. */
  #requestReceiveKeyFrames(memberId: string): void {
    const socket = this.#socket;
    if (!socket) return;
    for (const m of this.#consumers.values()) {
      if (m.peerId !== memberId || m.consumer.kind !== 'video' || m.consumer.closed) continue;
      void request(socket, 'requestKeyFrame', { consumerId: m.consumer.id }).catch(() => undefined);
    }
  }

  #lastSenderStats = new Map<string, { opened: number; bad: number }>();
  #rosterSeen = new Map<string, number>();

  /** Rebuild the per-member view for the UI (roster from the server, keys and identities from the key exchange). */
  #refreshMembers(): void {
    const st = this.#agent?.state;
    const senders = new Map(this.#transform.senders.map((x) => [x.senderIndex, x]));
    const now = Date.now();
    const members = [...this.peers.values()].map((peer) => {
      const rec = st?.members.get(peer.id);
      const idx = st?.senderIndices.get(peer.id);
      const sc = idx !== undefined ? senders.get(idx) : undefined;
      let verification: 'verified' | 'unverified' | 'changed' | 'creator' = 'unverified';
      if (rec) {
        if (isCreator(this.#opts.creatorFingerprint, rec.identityPublicKey)) verification = 'creator';
        else if (peer.name && this.#verifications) {
          try {
            verification = checkVerification(this.#verifications, peer.name, rec.fingerprint).status;
          } catch {
            verification = 'unverified';
          }
        }
        if (verification === 'changed') this.e2ee.alert('identity-changed', `${peer.displayName}'s identity key is not the one you verified before.`);
      } else if (!this.#rosterSeen.has(peer.id)) this.#rosterSeen.set(peer.id, now);
      const drops: Record<string, number> = {};
      let bad = 0;
      if (sc) {
        for (const [k, v] of Object.entries(sc.dropped)) if (v > 0) drops[k] = v;
        bad = (sc.dropped['auth'] ?? 0) + (sc.dropped['expired'] ?? 0) + (sc.dropped['overflow'] ?? 0) + (sc.dropped['malformed'] ?? 0);
      }
      const prev = this.#lastSenderStats.get(peer.id);
      const opened = sc?.opened ?? 0;
      const failing = !!prev && bad > prev.bad && opened === prev.opened;
      this.#lastSenderStats.set(peer.id, { opened, bad });
      const keyed = this.#keyed.has(peer.id);
      const keyState: 'waiting' | 'encrypted' | 'verified' | 'failing' = !keyed ? 'waiting' : failing ? 'failing' : verification === 'verified' || verification === 'creator' ? 'verified' : 'encrypted';
      if (failing) this.e2ee.alert('decrypt-failing', `Media from ${peer.displayName} does not decrypt (frames are dropped).`);
      return {
        peerId: peer.id,
        ...(peer.name ? { name: peer.name } : {}),
        fingerprint: rec ? fpDisplay(rec.fingerprint) : '',
        verification,
        keyState,
        drops,
        opened,
      };
    });
    this.e2ee.members = members;
  }

  #safetyNumber(peerId: string): Promise<{ digits: string; emoji: string }> {
    const rec = this.#agent?.state.members.get(peerId);
    const me = this.#identity;
    if (!rec || !me) return Promise.reject(new Error('this participant has not joined the key exchange'));
    return new Promise((resolve, reject) => {
      setTimeout(() => {
        try {
          const sn = computeSafetyNumber(me.publicKey, rec.identityPublicKey);
          resolve({ digits: sn.groups.join(' '), emoji: sn.emoji.map((e) => e.emoji).join(' ') });
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      }, 0);
    });
  }

  async #markVerified(peerId: string): Promise<void> {
    const rec = this.#agent?.state.members.get(peerId);
    const peer = this.peers.get(peerId);
    if (!rec || !peer) throw new Error('this participant has not joined the key exchange');
    const ver = this.#verifications ?? (await loadVerifications());
    this.#verifications = recordVerified(ver, peer.name ?? peer.displayName, rec.fingerprint, Date.now());
    await saveVerifications(this.#verifications);
    this.#refreshMembers();
  }

  async #sealChat(text: string): Promise<string> {
    const me = this.peerId;
    const k = me ? this.#chatKeys.get(me) : undefined;
    if (!me || !k) throw new Error('not in the call yet');
    const inner = await sealChatInner(k.baseKey, k.kid, this.#opts.roomId, me, text, Date.now());
    return toBase64url(await sealMetadata(this.#opts.metadataKey, this.#opts.roomId, me, inner));
  }

  async #openChat(from: string, blob: string): Promise<{ text: string; at: number } | null> {
    try {
      const opened = await openMetadata(this.#opts.metadataKey, this.#opts.roomId, from, fromBase64url(blob));
      return await this.#openChatInner(from, opened);
    } catch {
      return null;
    }
  }

  async #openChatInner(from: string, inner: Uint8Array): Promise<{ text: string; at: number } | null> {
    const kid = chatInnerKid(inner);
    const known = this.#chatKeys.get(from);
    if (kid === null || !known) return null;
    const base = baseKeyForKid(known, kid);
    if (!base) return null;
    try {
      return await openChatInner(base, this.#opts.roomId, from, inner);
    } catch {
      return null;
    } finally {
      base.fill(0);
    }
  }

  #chatBlobListeners = new Set<(fromPeerId: string, blob: string) => void>();

  /** Chat transport (lib/chat.svelte.ts): relay a blob made by `e2ee.sealChat` to every other member. */
  async sendChatBlob(blob: string): Promise<void> {
    const socket = this.#socket;
    if (!socket || !this.#ready) throw new Error('not connected');
    await request(socket, 'relay', { blob: await this.#wrapRelay(blob) });
  }

  /** Chat transport: incoming chat blobs (still sealed; open them with `e2ee.openChat`). Returns an unsubscribe function. */
  onChatBlob(cb: (fromPeerId: string, blob: string) => void): () => void {
    this.#chatBlobListeners.add(cb);
    return () => this.#chatBlobListeners.delete(cb);
  }

  /** Send a chat message to everyone (sealed under our current media-derived chat key). */
  async sendChat(text: string): Promise<void> {
    await this.#sendRelay(await this.#sealChat(text));
  }

  /**
   * Bypass detector: every BYPASS_CHECK_MS compare each producer's outbound bytes with the frames the worker sealed
   * for it. Bytes rising twice in a row while nothing was sealed means frames reach the wire without our transform:
   * the producer is closed and an alert raised.
   */
  #startBypassDetector(gen: number): void {
    if (this.#bypassTimer) clearInterval(this.#bypassTimer);
    this.#bypassLast.clear();
    this.#bypassTimer = setInterval(() => void this.#checkBypass(gen), BYPASS_CHECK_MS);
  }

  async #checkBypass(gen: number): Promise<void> {
    if (gen !== this.#gen) return;
    const list = Object.values(this.producers).filter((p): p is LocalProducer => !!p && !p.producer.closed);
    const bytes = new Map<string, number>();
    for (const p of list) {
      let b = 0;
      try {
        (await p.producer.getStats()).forEach((st: Record<string, unknown>) => {
          if (st['type'] === 'outbound-rtp' && typeof st['bytesSent'] === 'number') b += st['bytesSent'];
        });
      } catch {
        continue;
      }
      bytes.set(p.producer.id, b);
    }
    // Counts fetched after the stats: every frame whose bytes were counted was sealed before.
    await this.#transform.requestCounts();
    if (gen !== this.#gen) return;
    for (const p of list) {
      const b = bytes.get(p.producer.id);
      if (b === undefined || p.producer.closed) continue;
      const sealed = this.#transform.counts.get(p.transformKey)?.sealed ?? 0;
      const last = this.#bypassLast.get(p.producer.id);
      if (!last) {
        this.#bypassLast.set(p.producer.id, { bytes: b, sealed, strikes: 0 });
        continue;
      }
      const suspicious = b - last.bytes > BYPASS_SLACK_BYTES && sealed === last.sealed;
      const strikes = suspicious ? last.strikes + 1 : 0;
      this.#bypassLast.set(p.producer.id, { bytes: b, sealed, strikes });
      if (strikes >= 2) {
        console.error('[e2ee] transform bypassed: media stopped', p.source);
        this.e2ee.alert('bypass', `Transform bypassed — media stopped (${p.source}). Your ${p.source} was not being encrypted, so it was turned off.`);
        this.#dropProducer(p.source);
        await this.#try('closeProducer', { producerId: p.producer.id });
      }
    }
    this.#checkRoster();
  }

  /** Members the server lists that never joined the key exchange (no valid announcement) after 15 s. */
  #checkRoster(): void {
    const st = this.#agent?.state;
    if (!st) return;
    const now = Date.now();
    for (const [id, since] of this.#rosterSeen) {
      if (!this.peers.has(id) || st.members.has(id)) {
        this.#rosterSeen.delete(id);
        continue;
      }
      if (now - since > 15_000) this.e2ee.alert('roster', `A participant the server lists (${id.slice(0, 8)}) has not joined the key exchange: it receives no keys.`);
    }
  }

  /** Test hook only (`?e2ee-test-hooks=1`): this browser's keys as hex. */
  exportKeysForTest(): TestKeyExport | null {
    if (!this.#opts.testHooks) return null;
    const me = this.peerId;
    const cur = me ? this.#chatKeys.get(me) : undefined;
    return {
      peerId: me,
      senderIndex: this.#senderIndex,
      send: cur ? { kid: cur.kid.toString(), key: hex(cur.baseKey) } : null,
      sendHistory: [...this.#testSend],
      receive: [...this.#testRecv],
    };
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
