/**
 * The key bridge: one join's end-to-end keys. It owns the KeyAgent (membership + key transport), this join's
 * session key pair, the chat keys and the set of members whose receive key arrived, and turns the agent's effects
 * into calls on the transform worker (`FramePort`) and into typed events for the session:
 * - `alert`: a key-exchange problem (reason from membership.ts, the member it concerns);
 * - `members-changed`: roster, keys or the room code changed;
 * - `keyframe-needed`: our send key switched (`send`) or a member's receive key arrived (`receive`);
 * - `send-key-failed`: switching our send key failed. The bridge has already cleared the worker's send key (frames
 *   are dropped, never sealed under the old key) and our chat key; the session must rejoin (new member id, new
 *   session key, new key schedule) to send again.
 *
 * One bridge per join, made by `KeyBridge.create` (async: this join's announcement is signed with the identity key):
 * `destroy()` wipes its session key, chat keys and channel roots and clears the worker's keys (once started), so a
 * rejoin starts from nothing (new member id, new session key, new epoch).
 *
 * @module
 */
import { utf8 } from '../e2ee/bytes.ts';
import { baseKeyForKid, chatInnerKid, openChatInner, sealChatInner, type ChatPayload } from '../e2ee/chat.ts';
import { safetyNumber } from '../e2ee/codes.ts';
import { newSession, wipeSession, type Identity, type Session } from '../e2ee/identity.ts';
import type { InviteKeys } from '../e2ee/invite.ts';
import { KeyAgent, type SendKeyFailure, type SendKeyInfo } from '../e2ee/key-agent.ts';
import { currentRoomCode, type MemberRecord, type MembershipEffect, type MembershipState } from '../e2ee/membership.ts';
import { KID_GENERATION_BITS, splitKid } from '../e2ee/kid.ts';
import { chatBody, signMessage, verifyMessage } from '../e2ee/signed-message.ts';
import type { Cancel, Clock, FramePort } from './ports.ts';

/** Key generations the KID carries (mod this). */
const GENERATIONS = 1 << KID_GENERATION_BITS;

/** KeyAgent clock (rotation timer, expiry). */
export const KEY_TICK_MS = 1000;

export type BridgeEvent =
  | { kind: 'alert'; reason: string; memberId?: string; detail?: string }
  | { kind: 'members-changed' }
  | { kind: 'keyframe-needed'; side: 'send' }
  | { kind: 'keyframe-needed'; side: 'receive'; memberId: string }
  /** Our send key could not be switched: nothing is sent any more; rejoin with a fresh session key. */
  | { kind: 'send-key-failed'; failure: SendKeyFailure };

/** Records keys for the test-only export (`?e2ee-test-hooks=1`); absent in a normal call. */
export interface KeyLog {
  send(kid: bigint, baseKey: Uint8Array): void;
  receive(memberId: string, senderIndex: number, kid: bigint, baseKey: Uint8Array): void;
}

export interface KeyBridgeOptions {
  roomId: string;
  memberId: string;
  inviteKeys: InviteKeys;
  identity: Identity;
  keyLog?: KeyLog | undefined;
}

export interface KeyBridgePorts {
  frames: FramePort;
  /** Relay framing bytes out (the relay channel seals them). */
  sendMembership(bytes: Uint8Array, to?: string): void;
  clock: Clock;
  emit(e: BridgeEvent): void;
}

/** The room code of a completed round (`KeyBridge.roomCode` is null while it is pending). */
export interface RoomCodeView {
  emoji: string;
  digits: string;
}

interface ChatKey {
  senderIndex: number;
  kid: bigint;
  baseKey: Uint8Array;
}

export class KeyBridge {
  readonly memberId: string;
  readonly #opts: KeyBridgeOptions;
  readonly #ports: KeyBridgePorts;
  readonly #session: Session;
  readonly #agent: KeyAgent;
  /** Current media base key per member (ours under our member id): the chat keys derive from it. */
  readonly #chatKeys = new Map<string, ChatKey>();
  readonly #keyed = new Set<string>();
  #roomCode: RoomCodeView | null = null;
  #sending = false;
  #senderIndex: number | null = null;
  #stopTick: Cancel | null = null;
  /** Sequence number of our last signed message (profiles and chat) in this session. */
  #seq = 0;
  /** The agent's last event (its events run in order: once this settles, all earlier ones have). */
  #last: Promise<void> = Promise.resolve();
  #started = false;
  #destroyed = false;

  /** A bridge for one join: a fresh session key pair and its announcement, signed by `opts.identity`. */
  static async create(opts: KeyBridgeOptions, ports: KeyBridgePorts): Promise<KeyBridge> {
    return new KeyBridge(opts, ports, await newSession(opts.identity, opts.roomId, opts.memberId));
  }

  private constructor(opts: KeyBridgeOptions, ports: KeyBridgePorts, session: Session) {
    this.memberId = opts.memberId;
    this.#opts = opts;
    this.#ports = ports;
    this.#session = session;
    this.#agent = new KeyAgent(
      { roomId: opts.roomId, memberId: opts.memberId, inviteKeys: opts.inviteKeys, identity: opts.identity, session: this.#session },
      {
        send: ({ to, bytes }) => {
          if (!this.#destroyed) ports.sendMembership(bytes, to);
        },
        sendKeyChanged: (key, senderIndex) => this.#onSendKey(key, senderIndex),
        sendKeyFailed: (failure) => this.#onSendKeyFailed(failure),
        installReceiveKey: (memberId, senderIndex, update) => {
          if (this.#destroyed) return;
          ports.frames.addReceiveKey(senderIndex, update.kid, update.baseKey);
          this.#setChatKey(memberId, senderIndex, update.kid, update.baseKey);
          this.#opts.keyLog?.receive(memberId, senderIndex, update.kid, update.baseKey);
          this.#keyed.add(memberId);
          ports.emit({ kind: 'keyframe-needed', side: 'receive', memberId });
          ports.emit({ kind: 'members-changed' });
        },
        onEffect: (eff, state) => {
          if (!this.#destroyed) this.#onEffect(eff, state);
        },
      },
    );
  }

  /** Join the key exchange (after the server's join answer); `existing`: the members the server listed. */
  async start(existing: readonly string[]): Promise<void> {
    this.#started = true;
    const clock = this.#ports.clock;
    this.#stopTick = clock.every(KEY_TICK_MS, () => void this.#track(this.#agent.tick(clock.now())));
    await this.#track(this.#agent.join(clock.now(), existing));
  }

  /** A membership message (relay framing bytes) from `from`. */
  relay(from: string, bytes: Uint8Array): Promise<void> {
    return this.#track(this.#agent.relay(this.#ports.clock.now(), from, bytes));
  }

  /** The server says `memberId` left: forget it and switch to a fresh key (forward secrecy on leave). */
  memberLeft(memberId: string): Promise<void> {
    return this.#track(this.#agent.memberLeft(this.#ports.clock.now(), memberId));
  }

  /** Settles when every event handed to the agent so far has been processed. */
  idle(): Promise<void> {
    return this.#last;
  }

  #track(p: Promise<void>): Promise<void> {
    this.#last = p.catch(() => undefined);
    return p;
  }

  get state(): MembershipState {
    return this.#agent.state;
  }

  /** The verified member record (identity, fingerprint), if `memberId` passed the key exchange. */
  member(memberId: string): MemberRecord | undefined {
    return this.#agent.state.members.get(memberId);
  }

  /** True once our own send key exists (outgoing frames are sealed). */
  get sending(): boolean {
    return this.#sending;
  }

  get senderIndex(): number | null {
    return this.#senderIndex;
  }

  /** Whether `memberId`'s receive key arrived. */
  keyed(memberId: string): boolean {
    return this.#keyed.has(memberId);
  }

  hasChatKey(memberId: string): boolean {
    return this.#chatKeys.has(memberId);
  }

  get roomCode(): RoomCodeView | null {
    return this.#roomCode;
  }

  /** Our current send key (test-only export). A copy: wipe it. */
  currentSendKey(): { kid: bigint; baseKey: Uint8Array } | null {
    const k = this.#chatKeys.get(this.memberId);
    return k ? { kid: k.kid, baseKey: k.baseKey.slice() } : null;
  }

  /** Pairwise safety number with a verified member (~275 ms of hashing: run off the current task). */
  safetyNumber(memberId: string): Promise<{ digits: string; emoji: string }> {
    const rec = this.member(memberId);
    if (!rec) return Promise.reject(new Error('this participant has not joined the key exchange'));
    const mine = this.#opts.identity.publicKey;
    return new Promise((resolve, reject) => {
      this.#ports.clock.after(0, () => {
        try {
          const sn = safetyNumber(mine, rec.identityPublicKey);
          resolve({ digits: sn.groups.join(' '), emoji: sn.emoji.map((e) => e.emoji).join(' ') });
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
  }

  /** A chat message sealed under our current media-derived chat key (inner blob, e2ee/chat.ts), signed and numbered. */
  async sealChat(text: string): Promise<Uint8Array> {
    if (!this.#chatKeys.has(this.memberId) || this.#destroyed) throw new Error('not in the call yet');
    const at = Math.floor(this.#ports.clock.now());
    const seq = this.#nextSeq();
    const sig = await signMessage(this.#opts.identity, 'chat', this.#selfContext(), seq, chatBody(text, at));
    // the key as it is now (a rekey while we signed wiped the one we saw before)
    const k = this.#chatKeys.get(this.memberId);
    if (!k || this.#destroyed) throw new Error('not in the call yet');
    return sealChatInner(k.baseKey, k.kid, this.#opts.roomId, this.memberId, { text, at, seq, sig });
  }

  /**
   * Opens an inner chat blob from `from`: null unless it decrypts under that sender's current key AND carries its
   * identity's signature for its current session.
   */
  async openChat(from: string, inner: Uint8Array): Promise<{ text: string; at: number; seq: number } | null> {
    const kid = chatInnerKid(inner);
    const known = this.#chatKeys.get(from);
    const rec = this.member(from);
    if (kid === null || !known || !rec) return null;
    const base = baseKeyForKid(known, kid);
    if (!base) return null;
    let m: ChatPayload;
    try {
      m = await openChatInner(base, this.#opts.roomId, from, inner);
    } catch {
      return null;
    } finally {
      base.fill(0);
    }
    const ctx = { roomId: this.#opts.roomId, memberId: from, sessionPublicKey: rec.sessionPublicKey };
    let body: Uint8Array;
    try {
      body = chatBody(m.text, m.at);
    } catch {
      return null;
    }
    return verifyMessage(rec.identityPublicKey, 'chat', ctx, m.seq, body, m.sig) ? { text: m.text, at: m.at, seq: m.seq } : null;
  }

  /**
   * True when `inner` is a chat message from `from` under a newer key generation than the one we hold: its key batch is
   * still on its way (the sender rekeyed), so the message should wait rather than be dropped.
   */
  chatKeyAhead(from: string, inner: Uint8Array): boolean {
    const kid = chatInnerKid(inner);
    const known = this.#chatKeys.get(from);
    if (kid === null || !known) return false;
    try {
      const a = splitKid(known.kid);
      const b = splitKid(kid);
      const ahead = (b.generation - a.generation + GENERATIONS) % GENERATIONS;
      return a.sender === b.sender && ahead > 0 && ahead < GENERATIONS / 2;
    } catch {
      return false;
    }
  }

  /** Our signature over a display-name profile, with its sequence number (taken when called, in call order). */
  async signProfile(name: string): Promise<{ seq: number; sig: Uint8Array }> {
    if (this.#destroyed) throw new Error('not in the call yet');
    const seq = this.#nextSeq();
    return { seq, sig: await signMessage(this.#opts.identity, 'profile', this.#selfContext(), seq, utf8(name)) };
  }

  /** Whether a profile is signed by `from`'s identity for its current session (false if it is not admitted). */
  verifyProfile(from: string, name: string, seq: number, sig: Uint8Array): boolean {
    const rec = this.member(from);
    if (!rec) return false;
    return verifyMessage(rec.identityPublicKey, 'profile', { roomId: this.#opts.roomId, memberId: from, sessionPublicKey: rec.sessionPublicKey }, seq, utf8(name), sig);
  }

  #nextSeq(): number {
    this.#seq += 1;
    return this.#seq;
  }

  #selfContext(): { roomId: string; memberId: string; sessionPublicKey: Uint8Array } {
    return { roomId: this.#opts.roomId, memberId: this.memberId, sessionPublicKey: this.#session.keyPair.publicKey };
  }

  /** Wipes this join's keys (agent channels, send ring, session key, chat keys) and the worker's keys. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#stopTick?.();
    this.#agent.destroy();
    // a bridge that never started gave the worker nothing (and must not clear what a newer join gave it)
    if (this.#started) {
      this.#ports.frames.clearSendKey();
      this.#ports.frames.forgetAllSenders();
    }
    wipeSession(this.#session);
    for (const k of this.#chatKeys.values()) k.baseKey.fill(0);
    this.#chatKeys.clear();
    this.#keyed.clear();
    this.#sending = false;
    this.#roomCode = null;
  }

  #onSendKey(key: SendKeyInfo, senderIndex: number): void {
    if (this.#destroyed) return;
    this.#senderIndex = senderIndex;
    this.#ports.frames.setSendKey(senderIndex, key.generation, key.step, key.kid, key.baseKey);
    this.#setChatKey(this.memberId, senderIndex, key.kid, key.baseKey);
    this.#opts.keyLog?.send(key.kid, key.baseKey);
    this.#sending = true;
  }

  /** Stop sealing at once (the worker drops frames without a send key) and drop our chat key, then ask to rejoin. */
  #onSendKeyFailed(failure: SendKeyFailure): void {
    if (this.#destroyed) return;
    this.#ports.frames.clearSendKey();
    this.#chatKeys.get(this.memberId)?.baseKey.fill(0);
    this.#chatKeys.delete(this.memberId);
    this.#sending = false;
    this.#ports.emit({ kind: 'send-key-failed', failure });
    this.#ports.emit({ kind: 'members-changed' });
  }

  #setChatKey(memberId: string, senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    this.#chatKeys.get(memberId)?.baseKey.fill(0);
    this.#chatKeys.set(memberId, { senderIndex, kid, baseKey: baseKey.slice() });
  }

  #onEffect(eff: MembershipEffect, state: MembershipState): void {
    const { frames, emit } = this.#ports;
    switch (eff.kind) {
      case 'roster-changed':
        for (const [id, idx] of state.senderIndices) if (id !== this.memberId) frames.addSender(idx);
        this.#roomCode = roomCodeView(state);
        emit({ kind: 'members-changed' });
        break;
      case 'room-code-changed':
        this.#roomCode = roomCodeView(state);
        emit({ kind: 'members-changed' });
        break;
      case 'forget-member':
        if (eff.senderIndex !== undefined) frames.forgetSender(eff.senderIndex);
        this.#chatKeys.get(eff.memberId)?.baseKey.fill(0);
        this.#chatKeys.delete(eff.memberId);
        this.#keyed.delete(eff.memberId);
        emit({ kind: 'members-changed' });
        break;
      case 'sender-index-changed':
        frames.forgetSender(eff.from);
        frames.addSender(eff.to);
        break;
      case 'request-keyframe':
        emit({ kind: 'keyframe-needed', side: 'send' });
        break;
      case 'alert':
        emit({ kind: 'alert', reason: eff.reason, ...(eff.memberId !== undefined ? { memberId: eff.memberId } : {}), ...(eff.detail !== undefined ? { detail: eff.detail } : {}) });
        break;
      default:
        break;
    }
  }
}

/** The room code as shown, or null while the round of the current roster is pending (membership-code.ts). */
function roomCodeView(state: MembershipState): RoomCodeView | null {
  const rc = currentRoomCode(state);
  return rc ? { emoji: rc.emoji.map((e) => e.emoji).join(' '), digits: rc.digits.replace(/(\d{4})(?=\d)/g, '$1 ') } : null;
}
