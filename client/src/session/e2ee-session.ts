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
import { markVerified as recordVerified, type Verifications } from '../e2ee/verification.ts';
import type { SenderCount } from '../transform/protocol.ts';
import { KeyBridge, type BridgeEvent, type KeyLog, type RoomCodeView } from './key-bridge.ts';
import type { Clock, FramePort, RelayPort } from './ports.ts';
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
  | { kind: 'keyframe-needed'; side: 'receive'; memberId: string };

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
  #memory: MonitorMemory = emptyMemory();
  #senders: readonly SenderCount[] = [];
  #members: E2eeMember[] = [];
  #myName = '';
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
    await this.#channel.idle();
    await this.#bridge?.idle();
    await this.#channel.idle();
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
    const identity = (this.#identity ??= await this.#ports.store.loadIdentity());
    this.#verifications ??= await this.#ports.store.loadVerifications();
    if (this.#closed) return;
    const bridge = new KeyBridge(
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
    this.#bridge = bridge;
    this.#channel.bind(memberId);
    await bridge.start(existing);
    if (this.#bridge !== bridge) return;
    this.#channel.resume();
    this.#emitChanged();
  }

  /** This join is over (rejoin, leave): its keys are wiped and relay traffic is held until the next join. */
  leave(): void {
    this.#channel.reset();
    this.#channel.bind(null);
    const bridge = this.#bridge;
    this.#bridge = null;
    if (bridge) {
      bridge.destroy();
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

  /** Send our display name (sealed) to `to`, or to everyone. */
  async sendProfile(to?: string): Promise<void> {
    if (!this.#bridge || !this.#myName) return;
    await this.#channel.sendProfile(this.#myName, to);
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
        this.#names.set(e.from, e.name);
        this.#refresh();
        break;
      case 'chat':
        await this.#openChat(e.from, e.inner);
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

  async #openChat(from: string, inner: Uint8Array): Promise<void> {
    const m = (await this.#bridge?.openChat(from, inner)) ?? null;
    this.#onEvent(m ? { kind: 'chat', from, text: m.text, at: m.at } : { kind: 'chat-dropped', from });
  }

  #onBridge(e: BridgeEvent): void {
    switch (e.kind) {
      case 'alert': {
        const a = keyAlert(e.reason, this.#who(e.memberId), e.detail);
        if (a) this.#onEvent({ kind: 'alert', alert: a });
        break;
      }
      case 'members-changed':
        this.#refresh();
        break;
      case 'keyframe-needed':
        this.#onEvent(e);
        break;
      case 'send-key-failed':
        // The bridge cleared the worker's send key (nothing is sealed any more) and raised the alert; rejoining with a
        // fresh session key is the call's to wire (issue 13 §5).
        this.#refresh();
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
        creatorFingerprint: this.#opts.creatorFingerprint,
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
