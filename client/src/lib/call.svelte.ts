/**
 * One meeting session for the UI: wires the signaling socket to the session layer (client/src/session/) and copies
 * what it says into `$state`. No cryptography and no media logic of its own:
 * - `E2eeSession` (relay channel, key bridge per join, names, chat, trust views),
 * - `MediaPlane` (one per join: transports, producers, consumers, ICE, watchdog),
 * - `buildTiles` (the tile view model).
 *
 * Reconnect policy (the user never clicks anything): ICE trouble → ICE restart in the media plane, then a rejoin;
 * a socket reconnect, a `rejoin` event or an `UNAVAILABLE` answer → drop every media object and this join's keys,
 * join again as a new member, re-send the current local tracks and consume everyone. A server restart: `draining`
 * → `restarting` (the call goes on until the server stops), then the socket reconnects and joins the new process;
 * a join refused with DRAINING (still the old one) is tried again with backoff.
 */
import { SvelteSet } from 'svelte/reactivity';
import { base64urlnopad } from '@scure/base';
import type { InviteKeys } from '../e2ee/invite.ts';
import { E2eeSession, type SessionEvent } from '../session/e2ee-session.ts';
import { MediaPlane, type PlaneEvent } from '../session/media-plane.ts';
import { systemClock, Timers } from '../session/ports.ts';
import * as controls from '../session/controls.ts';
import { cleanName } from '../session/relay-channel.ts';
import { TestKeyRecorder } from '../session/test-keys.ts';
import { buildTiles, peersWithMedia, type TileModel } from '../session/tiles.ts';
import type { PipelineCounts } from '../session/trust-monitor.ts';
import { TransformWorker } from '../transform/TransformWorker.ts';
import type { TransformApi } from '../transform/support.ts';
import { E2eeState } from './e2ee.svelte.ts';
import { loadIdentity, loadVerifications, saveVerifications } from './identity-store.ts';
import type { LocalMedia } from './media.svelte.ts';
import { connectSocket, request, RequestError, retryRateLimited, type JoinResponse, type MeetSocket, type ProducerInfo } from './signaling.ts';

export type { TileModel } from '../session/tiles.ts';
export type { TestKeyExport } from '../session/test-keys.ts';
export type CallStatus = 'connecting' | 'joined' | 'reconnecting' | 'unreachable' | 'fatal' | 'left';
export type FatalReason = 'unauthorized' | 'room-full' | 'error';

export interface CallOptions {
  serverUrl: string;
  roomId: string;
  /** All invite-derived keys (access token, membership MAC, HPKE PSK, metadata key). */
  inviteKeys: InviteKeys;
  /** Creator fingerprint from the invite link, if it carried one (auto-verifies the creator). */
  creatorFingerprint?: Uint8Array | undefined;
  /** TEST BUILD only (`?e2ee-test-hooks=1`): keep copies of this browser's keys for `__meet.exportKeysForTest()`. */
  testHooks?: boolean;
  displayName: string;
  media: LocalMedia;
  transformApi: TransformApi;
}

/** A chat message as the chat panel gets it: opened once, or counted as dropped. */
export type ChatEvent = { kind: 'message'; from: string; text: string; at: number } | { kind: 'dropped'; from: string };

/** Trust checks (bypass detector, roster) period. */
const TRUST_CHECK_MS = 1500;

export class CallSession {
  status = $state<CallStatus>('connecting');
  fatal = $state<{ reason: FatalReason; message: string } | null>(null);
  /** Human-readable note for transient problems (e.g. screen share refused). */
  notice = $state<string | null>(null);
  peerId = $state<string | null>(null);
  activeSpeaker = $state<string | null>(null);
  /** Transport ids whose ICE is currently down. */
  iceDown = $state.raw<readonly string[]>([]);
  displayName = $state('');
  /** Members the server lists, in join order. */
  readonly peers = new SvelteSet<string>();
  /** End-to-end encryption state for the UI (fingerprints, room code, members, alerts). */
  readonly e2ee = new E2eeState();
  /** Every join that completed; tests and the UI read it. */
  joinCount = $state(0);
  /** The server said it is restarting (`draining`, or a join refused with DRAINING), until a join succeeds again. */
  restarting = $state(false);
  /** Per-pipeline frame counts from the worker (kept reactive for the debug snapshot). */
  workerCounts = $state.raw<Record<string, { frames: number; bytes: number }>>({});
  /** Receive pipelines (consumer ids) that get only another member's frames: their media is not played. */
  misattributed = $state.raw<ReadonlySet<string>>(new Set());

  readonly media: LocalMedia;
  readonly transformApi: TransformApi;
  readonly roomId: string;

  readonly reconnecting = $derived(this.status === 'reconnecting' || (this.status === 'joined' && this.iceDown.length > 0));
  readonly tiles: TileModel[] = $derived.by(() => this.#tiles());

  readonly #opts: CallOptions;
  readonly #transform: TransformWorker;
  readonly #secure: E2eeSession;
  /** TEST BUILD only (session/test-keys.ts): the key recorder; always null in production (compiled out). */
  readonly testKeys: TestKeyRecorder | null;
  readonly #timers = new Timers(systemClock);
  readonly #chatListeners = new Set<(e: ChatEvent) => void>();
  /** Peers the server said left (a consume or join answer in flight must not bring them back). */
  readonly #departed = new Set<string>();
  /** newProducer events that arrived while a join was in flight. */
  readonly #pendingProducers = new Map<string, ProducerInfo>();
  #socket: MeetSocket | null = null;
  #plane = $state.raw<MediaPlane | null>(null);
  /** Bumped whenever the media plane's producers or consumers change (they are plain objects). */
  #mediaVersion = $state(0);
  #gen = 0;
  #everJoined = false;
  #left = false;
  #joining = false;
  /** Our join answer for the current generation arrived (room events apply to us). */
  #inRoom = false;
  #connectFailures = 0;
  /** Joins refused with DRAINING in a row (backoff). */
  #drainingRefusals = 0;

  constructor(opts: CallOptions) {
    this.#opts = opts;
    this.media = opts.media;
    this.transformApi = opts.transformApi;
    this.roomId = opts.roomId;
    this.displayName = cleanName(opts.displayName);
    // `__SEALED_MEET_TEST_HOOKS__` is the literal false outside the TEST build: the recorder is not even bundled.
    this.testKeys =
      __SEALED_MEET_TEST_HOOKS__ && opts.testHooks
        ? new TestKeyRecorder(() => {
            const bridge = this.#secure.bridge;
            return { peerId: this.peerId, senderIndex: bridge?.senderIndex ?? null, current: bridge?.currentSendKey() ?? null };
          })
        : null;
    const transform = (this.#transform = new TransformWorker(opts.transformApi));
    this.#secure = new E2eeSession(
      { roomId: opts.roomId, inviteKeys: opts.inviteKeys, creatorFingerprint: opts.creatorFingerprint, keyLog: this.testKeys ?? undefined },
      {
        relay: { send: (bytes, to) => this.#relay(bytes, to) },
        frames: transform,
        clock: systemClock,
        store: { loadIdentity, loadVerifications, saveVerifications },
      },
      (e) => this.#onSecure(e),
    );
    void this.#secure.setName(this.displayName);
    transform.onCounts = (counts) => {
      const out: Record<string, { frames: number; bytes: number }> = {};
      for (const [k, c] of counts) out[k] = { frames: c.frames, bytes: c.bytes };
      this.workerCounts = out;
      this.#secure.refresh(transform.senders);
      this.#checkAttribution(counts.values());
    };
    transform.onError = (key, message) => {
      console.warn('[transform]', key, message);
      if (/cannot be end-to-end encrypted/.test(message)) this.e2ee.alert('codec-refused', message);
    };
    transform.onKeyError = (message) => {
      console.warn('[e2ee]', message);
      this.e2ee.alert('internal', message);
    };
    this.e2ee.attach({ safetyNumber: (id) => this.#secure.safetyNumber(id), markVerified: (id) => this.#secure.markVerified(id) });
  }

  get transformWorker(): TransformWorker {
    return this.#transform;
  }

  /** The current join's media plane (debug view), null between joins. */
  get plane(): MediaPlane | null {
    return this.#plane;
  }

  start(): void {
    if (this.#socket) return;
    const socket = (this.#socket = connectSocket(this.#opts.serverUrl));
    const live = <A extends unknown[]>(fn: (...a: A) => void) => (...a: A): void => {
      if (!this.#left) fn(...a);
    };
    socket.on('connect', live(() => {
      this.#connectFailures = 0;
      void this.#join();
    }));
    socket.on('disconnect', live((reason) => {
      this.#teardown();
      this.status = this.#everJoined ? 'reconnecting' : 'connecting';
      // The server closed us on purpose: socket.io will not retry by itself.
      if (reason === 'io server disconnect') socket.connect();
    }));
    socket.on('connect_error', live(() => {
      this.#connectFailures += 1;
      if (this.#connectFailures >= 3 && this.status !== 'fatal') this.status = 'unreachable';
    }));
    socket.on('rejoin', live(() => void this.#rejoin('server asked (worker died)')));
    socket.on('draining', live(() => (this.restarting = true)));
    socket.on('peerJoined', ({ peerId }) => {
      if (!this.#inRoom || peerId === this.peerId) return;
      this.#listPeer(peerId); // it gets our profile once the key exchange admitted it
    });
    socket.on('peerLeft', ({ peerId }) => {
      this.#departed.add(peerId);
      this.#plane?.closePeer(peerId);
      this.peers.delete(peerId);
      if (this.activeSpeaker === peerId) this.activeSpeaker = null;
      this.#secure.unlisted(peerId);
    });
    socket.on('newProducer', (info) => {
      if (info.peerId === this.peerId) return;
      if (this.#plane) void this.#plane.consume(info);
      else this.#pendingProducers.set(info.producerId, info);
    });
    socket.on('producerClosed', ({ producerId }) => {
      this.#pendingProducers.delete(producerId);
      this.#plane?.producerClosed(producerId);
    });
    const producerPaused = (producerId: string, paused: boolean): void => {
      this.#plane?.setProducerPaused(producerId, paused);
      const pending = this.#pendingProducers.get(producerId);
      if (pending) pending.paused = paused;
    };
    socket.on('producerPaused', ({ producerId }) => producerPaused(producerId, true));
    socket.on('producerResumed', ({ producerId }) => producerPaused(producerId, false));
    socket.on('consumerClosed', ({ consumerId }) => this.#plane?.closeConsumer(consumerId));
    socket.on('consumerPaused', ({ consumerId }) => this.#plane?.setConsumerPaused(consumerId, true));
    socket.on('consumerResumed', ({ consumerId }) => this.#plane?.setConsumerPaused(consumerId, false));
    socket.on('activeSpeaker', ({ peerId }) => (this.activeSpeaker = peerId));
    socket.on('relay', ({ from, blob }) => {
      let bytes: Uint8Array;
      try {
        bytes = base64urlnopad.decode(blob);
      } catch {
        return; // not even base64url: it could not be an envelope from a member
      }
      this.#secure.receive(from, bytes);
    });
  }

  // -------------------------------------------------------------------------------------------
  // User actions
  // -------------------------------------------------------------------------------------------

  async toggleMic(): Promise<void> {
    this.#notice(await controls.toggleMic(this.media, this.#plane));
  }

  async toggleCamera(): Promise<void> {
    this.#notice(await controls.toggleCamera(this.media, this.#plane));
  }

  async toggleScreen(): Promise<void> {
    if (this.media.screenTrack) await this.stopScreen();
    else this.#notice(await controls.startScreen(this.media, this.#plane, () => void this.stopScreen()));
  }

  stopScreen(): Promise<void> {
    return controls.stopScreen(this.media, this.#plane);
  }

  changeCamera(deviceId: string): Promise<void> {
    return controls.changeDevice(this.media, this.#plane, 'camera', deviceId);
  }

  changeMic(deviceId: string): Promise<void> {
    return controls.changeDevice(this.media, this.#plane, 'mic', deviceId);
  }

  async setDisplayName(name: string): Promise<void> {
    this.displayName = cleanName(name);
    await this.#secure.setName(this.displayName).catch(() => undefined);
  }

  /** ICE/DTLS connection state of the send and receive transports (debug view). */
  transportStates(): { send: string | null; recv: string | null } {
    return this.#plane?.transportStates() ?? { send: null, recv: null };
  }

  /** A tile showing `consumerId` is rendered at width x height CSS pixels. */
  reportTileSize(consumerId: string, width: number, height: number): void {
    this.#plane?.reportTileSize(consumerId, width, height);
  }

  /** Chat: seal and send a message to everyone. Rejects if it could not be sent. */
  sendChat(text: string): Promise<void> {
    if (this.status !== 'joined') return Promise.reject(new Error('not connected'));
    return this.#secure.sendChat(text);
  }

  /** Chat: every incoming chat message, opened once (or counted as dropped). Returns an unsubscribe function. */
  onChat(listener: (e: ChatEvent) => void): () => void {
    this.#chatListeners.add(listener);
    return () => this.#chatListeners.delete(listener);
  }

  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    const socket = this.#socket;
    this.#teardown();
    this.#secure.close();
    if (socket?.connected) await request(socket, 'leave', {}, 2000).catch(() => undefined);
    socket?.removeAllListeners();
    socket?.disconnect();
    this.#socket = null;
    this.#transform.close();
    this.status = 'left';
  }

  /** Release everything (page navigation). */
  dispose(): void {
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
    this.status = this.#everJoined ? 'reconnecting' : 'connecting';
    try {
      const res = await this.#joinRequest(socket);
      if (gen !== this.#gen) return;
      this.peerId = res.peerId;
      this.#inRoom = true;
      const existing = res.peers.map((p) => p.peerId).filter((id) => id !== res.peerId);
      // Keys first: our send key exists before the first frame is encoded (frames before it are dropped, never sent in clear).
      await this.#secure.join(res.peerId, existing);
      if (gen !== this.#gen) return;
      const plane = await MediaPlane.connect(res, this.transformApi, {
        signaling: { request: (name, payload, timeoutMs) => request(socket, name, payload, timeoutMs) },
        frames: this.#transform,
        clock: systemClock,
        departed: (peerId) => this.#departed.has(peerId),
        senderIndexOf: (peerId) => this.#secure.bridge?.state.senderIndices.get(peerId) ?? null,
        emit: (e) => {
          if (this.#plane === plane) this.#onPlane(e);
        },
      });
      if (gen !== this.#gen) {
        plane.close();
        return;
      }
      this.#plane = plane;
      for (const id of existing) if (!this.#departed.has(id)) this.#listPeer(id);
      this.#everJoined = true;
      this.status = 'joined';
      this.joinCount += 1;
      this.notice = null;
      this.restarting = false;
      this.#drainingRefusals = 0;
      this.#timers.every(TRUST_CHECK_MS, () => {
        void plane.checkBypass();
        this.#secure.refresh(this.#transform.senders);
      });
      // Re-produce whatever we are currently sending (first join, or after a rejoin), consume everyone.
      const jobs: Promise<unknown>[] = controls.sendCurrentTracks(this.media, plane);
      const producers = new Map(res.producers.map((p) => [p.producerId, p]));
      for (const [id, p] of this.#pendingProducers) producers.set(id, p);
      this.#pendingProducers.clear();
      for (const p of producers.values()) if (p.peerId !== res.peerId) jobs.push(plane.consume(p));
      await Promise.allSettled(jobs);
    } catch (err) {
      if (gen === this.#gen) this.#handleJoinError(err);
    } finally {
      if (gen === this.#gen) this.#joining = false;
    }
  }

  async #joinRequest(socket: MeetSocket): Promise<JoinResponse> {
    const payload = { roomId: this.#opts.roomId, accessToken: this.#opts.inviteKeys.accessToken };
    try {
      return await request(socket, 'join', payload);
    } catch (err) {
      if (!(err instanceof RequestError && err.code === 'ALREADY_JOINED')) throw err;
      await request(socket, 'leave', {}).catch(() => undefined);
      return request(socket, 'join', payload);
    }
  }

  #handleJoinError(err: unknown): void {
    const code = err instanceof RequestError ? err.code : null;
    if (code === 'UNAUTHORIZED') return this.#fail('unauthorized', 'This invite link does not open this meeting. Ask for a fresh link.');
    if (code === 'ROOM_FULL') return this.#fail('room-full', 'This meeting is full.');
    if (code === 'DISCONNECTED') return; // the socket's connect handler joins again
    console.warn('[call] join failed, retrying', err);
    this.#teardown();
    this.status = this.#everJoined ? 'reconnecting' : 'connecting';
    // The old process is still draining: ask again after 1, 2, 4, 8 s (then every 8 s) until the new one answers.
    if (code === 'DRAINING') this.restarting = true;
    const delay = code === 'DRAINING' ? Math.min(8000, 1000 * 2 ** this.#drainingRefusals++) : 1500;
    this.#timers.after('retry', delay, () => {
      if (this.#socket?.connected) void this.#join();
    });
  }

  #fail(reason: FatalReason, message: string): void {
    this.#teardown();
    this.fatal = { reason, message };
    this.status = 'fatal';
    this.#socket?.removeAllListeners();
    this.#socket?.disconnect();
    this.#socket = null;
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

  /** Drop every media object and this join's keys (not the local tracks, not the socket, not the transform worker). */
  #teardown(): void {
    this.#gen += 1;
    this.#joining = false;
    this.#inRoom = false;
    this.#timers.clear();
    this.#plane?.close();
    this.#plane = null;
    this.#secure.leave();
    this.#pendingProducers.clear();
    this.peers.clear();
    this.activeSpeaker = null;
    this.iceDown = [];
    this.#mediaVersion += 1;
  }

  /** Raise an alert the first time a pipeline gets another member's media; keep the set the tiles read. */
  #checkAttribution(counts: Iterable<PipelineCounts>): void {
    const { misattributed, flagged } = this.#plane?.checkAttribution(counts) ?? { misattributed: new Set<string>(), flagged: [] };
    for (const m of flagged) {
      const name = this.e2ee.members.find((x) => x.peerId === m.peerId)?.name ?? 'a participant';
      this.e2ee.alert('misattributed', `The server sent someone else's ${m.source} as ${name}'s. It is not shown or played; the frames are dropped.`);
    }
    if (misattributed.size !== this.misattributed.size || [...misattributed].some((k) => !this.misattributed.has(k))) this.misattributed = misattributed;
  }

  #notice(message: string | null): void {
    if (message) this.notice = message;
  }

  #listPeer(peerId: string): void {
    this.peers.add(peerId);
    this.#secure.listed(peerId);
  }

  #onPlane(e: PlaneEvent): void {
    switch (e.kind) {
      case 'changed':
        this.#mediaVersion += 1;
        // Media of a member whose peerJoined we missed (it joined while our join was in flight).
        for (const m of this.#plane?.consumers.values() ?? []) if (!this.peers.has(m.peerId) && !this.#departed.has(m.peerId)) this.#listPeer(m.peerId);
        break;
      case 'rejoin':
        void this.#rejoin(e.why);
        break;
      case 'ice':
        this.iceDown = e.down;
        break;
      case 'alert':
        this.e2ee.alert(e.alert.kind, e.alert.message);
        break;
      default: {
        const never: never = e;
        void never;
      }
    }
  }

  #onSecure(e: SessionEvent): void {
    switch (e.kind) {
      case 'changed':
        this.#plane?.rebind();
        this.e2ee.members = [...this.#secure.members];
        this.e2ee.roomCode = this.#secure.roomCode;
        this.e2ee.sending = this.#secure.sending;
        this.e2ee.myFingerprint = this.#secure.myFingerprint;
        break;
      case 'alert':
        this.e2ee.alert(e.alert.kind, e.alert.message);
        break;
      case 'chat':
        this.#emitChat({ kind: 'message', from: e.from, text: e.text, at: e.at });
        break;
      case 'chat-dropped':
        this.#emitChat({ kind: 'dropped', from: e.from });
        break;
      case 'keyframe-needed':
        if (e.side === 'send') void this.#plane?.requestSendKeyFrames();
        else this.#plane?.requestReceiveKeyFrames(e.memberId);
        break;
      case 'rejoin':
        void this.#rejoin(e.why);
        break;
      default: {
        const never: never = e;
        void never;
      }
    }
  }

  #emitChat(e: ChatEvent): void {
    for (const l of this.#chatListeners) {
      try {
        l(e);
      } catch (err) {
        console.warn('[chat] listener failed', err);
      }
    }
  }

  /** The socket edge of the relay channel (base64url only here). An UNAVAILABLE answer means our room was lost: rejoin. */
  async #relay(bytes: Uint8Array, to: string | undefined): Promise<void> {
    const blob = base64urlnopad.encode(bytes);
    try {
      // A blob refused by the room's relay budget was not sent: send it again after a pause (a key batch is not lost).
      await retryRateLimited(() => {
        if (!this.#socket) throw new RequestError('relay', 'DISCONNECTED', 'not connected');
        return request(this.#socket, 'relay', to !== undefined ? { to, blob } : { blob });
      });
    } catch (err) {
      if (err instanceof RequestError && err.code === 'UNAVAILABLE') void this.#rejoin('relay: UNAVAILABLE');
      throw err;
    }
  }

  #tiles(): TileModel[] {
    void this.#mediaVersion;
    const m = this.media;
    // One tile per member the people list shows (the server's list and everyone holding our keys).
    return buildTiles(
      { peerId: this.peerId, name: this.displayName, cameraTrack: m.cameraEnabled ? m.cameraTrack : null, screenTrack: m.screenTrack, micOff: !m.micEnabled || !m.micTrack },
      peersWithMedia(this.e2ee.members, this.#plane?.consumers.values() ?? []),
      this.activeSpeaker,
      this.misattributed,
    );
  }
}
