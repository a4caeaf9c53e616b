/**
 * The end-to-end encrypted half of a call, for the whole meeting (it outlives rejoins): the relay channel, one key
 * bridge per join, the display names members sent, chat, verification records and the trust monitor's views.
 *
 * Inputs: relay blobs (`receive`), the server's roster (`listed` / `unlisted`), the worker's per-sender counts
 * (`refresh`). Outputs: typed events (`changed`, `alert`, `chat`, `keyframe-needed`) and the current views
 * (`members`, `roomCode`, `sending`, `myFingerprint`). Where does a chat message get decrypted? `#onRelay` →
 * `KeyBridge.openChat`, exactly once. Where does a tile's key state come from? `trust-monitor.ts memberViews`.
 *
 * @module
 */
import type { Identity } from '../e2ee/identity.ts';
import type { InviteKeys } from '../e2ee/invite.ts';
import { isCreator, markVerified as recordVerified, type Verifications } from '../e2ee/verification.ts';
import type { SenderCount } from '../transform/protocol.ts';
import { KeyBridge, type BridgeEvent, type KeyLog, type RoomCodeView } from './key-bridge.ts';
import type { Clock, FramePort, RelayPort } from './ports.ts';
import { MessageGate } from './message-gate.ts';
import { cleanName, RelayChannel, type RelayEvent } from './relay-channel.ts';
import { emptyMemory, foreignAlert, identityDisplay, keyAlert, memberViews, type E2eeMember, type MonitorMemory, type TrustAlert } from './trust-monitor.ts';

export type SessionEvent =
  /** Members, names, keys, the room code or `sending` changed: read the views again. */
  | { kind: 'changed' }
  | { kind: 'alert'; alert: TrustAlert }
  /** A chat message that opened under its sender's current key. */
  | { kind: 'chat'; from: string; text: string; at: number }
  /** A chat blob that did not open (no key for that sender, or it does not authenticate). */
  | { kind: 'chat-dropped'; from: string }
  | { kind: 'keyframe-needed'; side: 'send' }
  | { kind: 'keyframe-needed'; side: 'receive'; memberId: string }
  /** This join cannot go on safely (our send key failed to switch): leave and join again as a new member. */
  | { kind: 'rejoin'; why: string };

export interface E2eeSessionOptions {
  roomId: string;
  inviteKeys: InviteKeys;
  /** Creator fingerprint from the invite link, if it carried one (auto-verifies the creator). */
  creatorFingerprint?: Uint8Array | undefined;
  /** Test-only key recorder (`?e2ee-test-hooks=1`). */
  keyLog?: KeyLog | undefined;
}

/** Where the identity and the verification records live (IndexedDB in the browser, memory in tests). */
export interface TrustStore {
  loadIdentity(): Promise<Identity>;
  loadVerifications(): Promise<Verifications>;
  saveVerifications(v: Verifications): Promise<void>;
}

export interface E2eeSessionPorts {
  relay: RelayPort;
  frames: FramePort;
  clock: Clock;
  store: TrustStore;
}

export class E2eeSession {
  readonly #opts: E2eeSessionOptions;
  readonly #ports: E2eeSessionPorts;
  readonly #onEvent: (e: SessionEvent) => void;
  readonly #channel: RelayChannel;
  #bridge: KeyBridge | null = null;
  #identity: Identity | null = null;
  #verifications: Verifications | null = null;
  /** Members the server lists, in the order it listed them. */
  readonly #listed = new Set<string>();
  readonly #names = new Map<string, string>();
  /** Profiles and chat that wait for their sender's admission or key, and each sender's sequence numbers. */
  readonly #gate = new MessageGate<RelayEvent>();
  /** Members admitted by the key exchange that we sent our profile to. */
  readonly #admitted = new Set<string>();
  /** Work started outside the relay queue (held messages handed on later), for `idle()`. */
  readonly #tasks = new Set<Promise<void>>();
  #memory: MonitorMemory = emptyMemory();
  #senders: readonly SenderCount[] = [];
  #members: E2eeMember[] = [];
  #myName = '';
  /** Counts `leave()`s: a join that was left (or superseded) while it made its bridge drops that bridge. */
  #joinAttempt = 0;
  #closed = false;

  constructor(opts: E2eeSessionOptions, ports: E2eeSessionPorts, onEvent: (e: SessionEvent) => void) {
    this.#opts = opts;
    this.#ports = ports;
    this.#onEvent = onEvent;
    this.#channel = new RelayChannel({ roomId: opts.roomId, metadataKey: opts.inviteKeys.metadataKey }, ports.relay, (e) => this.#onRelay(e));
  }

  get members(): readonly E2eeMember[] {
    return this.#members;
  }

  get roomCode(): RoomCodeView | null {
    return this.#bridge?.roomCode ?? null;
  }

  get sending(): boolean {
    return this.#bridge?.sending ?? false;
  }

  get myFingerprint(): string {
    return this.#identity ? identityDisplay(this.#identity.publicKey) : '';
  }

  /** The current join's key bridge (null between joins). */
  get bridge(): KeyBridge | null {
    return this.#bridge;
  }

  /** The relay channel's counters (blobs that did not open, or were not understood). */
  get relayStats(): RelayChannel['stats'] {
    return this.#channel.stats;
  }

  /** Settles when every relay blob received so far and every key event it caused has been processed. */
  async idle(): Promise<void> {
    for (let i = 0; i < 10; i++) {
      await this.#channel.idle();
      await this.#bridge?.idle();
      await this.#channel.idle();
      await Promise.allSettled([...this.#tasks]);
      if (this.#tasks.size === 0) break;
    }
  }

  nameOf(peerId: string): string | undefined {
    return this.#names.get(peerId);
  }

  /**
   * A join completed as `memberId` with `existing` members listed: start this join's key exchange (our send key
   * exists before the first frame is encoded), then take the relay traffic held meanwhile.
   */
  async join(memberId: string, existing: readonly string[]): Promise<void> {
    this.leave();
    const attempt = this.#joinAttempt;
    const identity = (this.#identity ??= await this.#ports.store.loadIdentity());
    this.#verifications ??= await this.#ports.store.loadVerifications();
    if (this.#closed) return;
    const bridge = await KeyBridge.create(
      { roomId: this.#opts.roomId, memberId, inviteKeys: this.#opts.inviteKeys, identity, keyLog: this.#opts.keyLog },
      {
        frames: this.#ports.frames,
        clock: this.#ports.clock,
        sendMembership: (bytes, to) => void this.#channel.sendMembership(bytes, to).catch(() => undefined),
        emit: (e) => {
          if (this.#bridge === bridge) this.#onBridge(e);
        },
      },
    );
    if (this.#closed || attempt !== this.#joinAttempt) {
      bridge.destroy(); // never started: wipes its session key only
      return;
    }
    this.#bridge = bridge;
    this.#channel.bind(memberId);
    await bridge.start(existing);
    if (this.#bridge !== bridge) return;
    this.#channel.resume();
    this.#emitChanged();
  }

  /** This join is over (rejoin, leave): its keys are wiped and relay traffic is held until the next join. */
  leave(): void {
    this.#joinAttempt += 1;
    this.#channel.reset();
    this.#channel.bind(null);
    const bridge = this.#bridge;
    this.#bridge = null;
    if (bridge) {
      bridge.destroy();
      this.#gate.clear();
      this.#admitted.clear();
      this.#listed.clear();
      this.#memory = emptyMemory();
      this.#refresh();
    }
  }

  /** End of the meeting. */
  close(): void {
    this.leave();
    this.#closed = true;
  }

  /** One relay blob as the server delivered it. */
  receive(from: string, bytes: Uint8Array): void {
    this.#channel.receive(from, bytes);
  }

  /** The server lists `peerId` in the room. */
  listed(peerId: string): void {
    if (this.#listed.has(peerId)) return;
    this.#listed.add(peerId);
    this.#refresh();
  }

  /** The server says `peerId` left: forget it (and switch to a fresh send key). */
  unlisted(peerId: string): void {
    this.#listed.delete(peerId);
    this.#names.delete(peerId);
    this.#gate.forget(peerId);
    this.#admitted.delete(peerId);
    void this.#bridge?.memberLeft(peerId).catch(() => undefined);
    this.#refresh();
  }

  /** New worker counts: recompute the key state views. */
  refresh(senders: readonly SenderCount[]): void {
    this.#senders = senders;
    this.#refresh();
  }

  /** Our display name; sent to everyone when joined. */
  async setName(name: string): Promise<void> {
    this.#myName = cleanName(name);
    if (this.#bridge) await this.sendProfile();
  }

  /** Send our display name (signed, sealed) to `to`, or to everyone. Each member gets it once it admitted us. */
  async sendProfile(to?: string): Promise<void> {
    const bridge = this.#bridge;
    if (!bridge || !this.#myName) return;
    const name = this.#myName;
    const signed = await bridge.signProfile(name);
    if (this.#bridge === bridge) await this.#channel.sendProfile(name, signed, to);
  }

  /** Seal and send a chat message to everyone. */
  async sendChat(text: string): Promise<void> {
    const bridge = this.#bridge;
    if (!bridge) throw new Error('not in the call yet');
    await this.#channel.sendChat(await bridge.sealChat(text));
  }

  safetyNumber(peerId: string): Promise<{ digits: string; emoji: string }> {
    if (!this.#bridge) return Promise.reject(new Error('not in the call'));
    return this.#bridge.safetyNumber(peerId);
  }

  /** Record that we compared safety numbers with `peerId` and they matched. */
  async markVerified(peerId: string): Promise<void> {
    const rec = this.#bridge?.member(peerId);
    if (!rec) throw new Error('this participant has not joined the key exchange');
    const ver = this.#verifications ?? (await this.#ports.store.loadVerifications());
    this.#verifications = recordVerified(ver, this.#names.get(peerId) ?? 'Participant', rec.fingerprint, this.#ports.clock.now());
    await this.#ports.store.saveVerifications(this.#verifications);
    this.#refresh();
  }

  #who(memberId: string | undefined): string {
    return (memberId ? this.#names.get(memberId) : undefined) ?? 'A participant';
  }

  async #onRelay(e: RelayEvent): Promise<void> {
    switch (e.kind) {
      case 'membership':
        await this.#bridge?.relay(e.from, e.bytes).catch(() => undefined);
        break;
      case 'profile':
        this.#onProfile(e);
        break;
      case 'chat':
        await this.#openChat(e);
        break;
      case 'foreign':
        this.#onEvent({ kind: 'alert', alert: foreignAlert(this.#who(e.from)) });
        break;
      default: {
        const never: never = e;
        void never;
      }
    }
  }

  /** Messages of a sender we cannot check yet wait for it — if the server lists it or the key exchange admitted it. */
  #mayWait(from: string): boolean {
    return this.#listed.has(from) || this.#bridge?.member(from) !== undefined;
  }

  #track(p: Promise<void>): void {
    const t = p.catch(() => undefined).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  #onProfile(e: Extract<RelayEvent, { kind: 'profile' }>): void {
    const bridge = this.#bridge;
    if (!bridge) return;
    if (!bridge.member(e.from)) {
      if (this.#mayWait(e.from)) this.#gate.hold(e.from, e);
      return;
    }
    // Signed by the member's identity for its current session, and newer than the name we show: else a forgery or a replay.
    if (!bridge.verifyProfile(e.from, e.name, e.seq, e.sig) || !this.#gate.newerProfile(e.from, e.seq)) return;
    this.#names.set(e.from, cleanName(e.name));
    this.#refresh();
  }

  async #openChat(e: Extract<RelayEvent, { kind: 'chat' }>): Promise<void> {
    const { from } = e;
    const bridge = this.#bridge;
    if (!bridge) return;
    if ((!bridge.hasChatKey(from) && this.#mayWait(from)) || bridge.chatKeyAhead(from, e.inner)) {
      this.#gate.hold(from, e);
      return;
    }
    const m = await bridge.openChat(from, e.inner);
    if (!m) this.#onEvent({ kind: 'chat-dropped', from });
    else if (this.#gate.firstChat(from, m.seq)) this.#onEvent({ kind: 'chat', from, text: m.text, at: m.at });
  }

  /** After the key exchange moved on: send our profile to newly admitted members, hand on what waited for them. */
  #onAdmissions(): void {
    const bridge = this.#bridge;
    if (!bridge) return;
    for (const id of bridge.state.members.keys()) {
      if (this.#admitted.has(id)) continue;
      this.#admitted.add(id);
      void this.sendProfile(id).catch(() => undefined);
    }
    for (const from of this.#gate.waiting) {
      if (!bridge.member(from)) continue;
      for (const held of this.#gate.release(from)) this.#track(this.#onRelay(held));
    }
  }

  #onBridge(e: BridgeEvent): void {
    switch (e.kind) {
      case 'alert': {
        const a = keyAlert(e.reason, this.#who(e.memberId), e.detail);
        if (a) this.#onEvent({ kind: 'alert', alert: a });
        break;
      }
      case 'members-changed':
        this.#onAdmissions();
        this.#refresh();
        break;
      case 'keyframe-needed':
        this.#onEvent(e);
        break;
      case 'send-key-failed':
        // The bridge cleared the worker's send key (nothing is sealed any more) and raised the alert: start over with
        // a fresh session key (issue 13 §5).
        this.#refresh();
        this.#onEvent({ kind: 'rejoin', why: 'our send key could not be switched' });
        break;
      default: {
        const never: never = e;
        void never;
      }
    }
  }

  #refresh(): void {
    const bridge = this.#bridge;
    const st = bridge?.state;
    const { members, alerts, memory } = memberViews(
      {
        // Everyone the server lists, then everyone we seal keys to whom it does not: nobody holds keys unseen.
        members: [...new Set([...this.#listed, ...(st?.members.keys() ?? [])])].map((peerId) => ({
          peerId,
          name: this.#names.get(peerId),
          listed: this.#listed.has(peerId),
          record: st?.members.get(peerId),
          senderIndex: st?.senderIndices.get(peerId),
          keyed: bridge?.keyed(peerId) ?? false,
        })),
        senders: this.#senders,
        verifications: this.#verifications,
        // The link names its creator; if that is us, nobody else can be (and its absence is no news).
        creatorFingerprint: this.#identity && isCreator(this.#opts.creatorFingerprint, this.#identity.publicKey) ? undefined : this.#opts.creatorFingerprint,
        now: this.#ports.clock.now(),
      },
      this.#memory,
    );
    this.#memory = memory;
    this.#members = members;
    for (const alert of alerts) this.#onEvent({ kind: 'alert', alert });
    this.#emitChanged();
  }

  #emitChanged(): void {
    this.#onEvent({ kind: 'changed' });
  }
}
