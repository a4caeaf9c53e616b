/**
 * Async driver around the pure membership reducer (membership.ts): runs the crypto the reducer asks for
 * (HPKE channels, key batches, send-key ratchet/rekey, liveness proofs for announce-backs, room-code values and
 * their signed commitments) and feeds the results back. No I/O of its own: outgoing relay messages (relay-framing.ts
 * bytes) go to the injected `send` callback, keys to the injected hooks; time comes in with every call.
 *
 * It owns this member's one send-key schedule (send-schedule.ts): every key it switches to is handed out once,
 * through `sendKeyChanged`, for the transform worker to seal under (client/src/transform/send-key-slot.ts).
 *
 * A key switch that fails (the schedule refuses, e.g. `ctr-exhausted` after 4096 generations, or `sendKeyChanged`
 * throws) ends sending for this join: the schedule is wiped, no later effect distributes any send key (the old one
 * least of all: a member that just left could keep reading), `sendKeyFailed` tells the caller to stop sealing and
 * rejoin with a fresh session key, and a `send-key-failed` alert says so. Receiving goes on until the caller rejoins.
 *
 * Events are processed one at a time in arrival order (a p-queue of concurrency 1), so the reducer sees a
 * linear history even though effects are async; a failing event rejects its own `dispatch` promise only.
 *
 * Secrets held: the invite keys (PSK, MAC key), the session secret key and the identity (owned by the caller; the
 * agent only calls `identity.sign`, identity.ts), the channel roots (wiped on `forget-member` and `destroy`), the
 * current send base key (wiped on `destroy`), this round's room-code value until it is revealed (then public; wiped
 * when the next round draws one, and on `destroy`).
 *
 * @module
 */
import PQueue from 'p-queue';
import { concat, randomBytes } from './bytes.ts';
import { decodeKeyBatch, openKeyBatch, sealKeyBatch, type KeyReason, type KeyUpdate } from './envelope.ts';
import { closeChannel, type HpkePsk, type RecipientChannel, type SenderChannel } from './hpke.ts';
import type { Identity, Session } from './identity.ts';
import type { InviteKeys } from './invite.ts';
import { isE2eeError, type E2eeErrorCode } from './errors.ts';
import { initialMembershipState, reduce, type MembershipConfig, type MembershipEffect, type MembershipEvent, type MembershipState } from './membership.ts';
import { roomCodeCommitment, ROOM_CODE_VALUE_LEN } from './codes.ts';
import {
  channelResetSigInput,
  encodeChannelResetBody,
  encodeCodeCommit,
  encodeCodeReveal,
  encodeSignedAnnouncement,
  proveLiveness,
  type LivenessContext,
} from './membership-messages.ts';
import type { LivenessChallenge } from './membership-state.ts';
import { encodeRelay } from './relay-framing.ts';
import { SendKeySchedule, type SendKeyInfo } from './send-schedule.ts';

export type { SendKeyInfo };

/** Why our send key could not be switched (`KeyAgentHooks.sendKeyFailed`). */
export interface SendKeyFailure {
  /** The switch that failed. */
  mode: 'initial' | 'ratchet' | 'fresh';
  /** The epoch it was for. */
  epoch: number;
  /** The schedule's error code, or 'hook' if `sendKeyChanged` threw something else. */
  reason: E2eeErrorCode | 'hook';
}

export interface KeyAgentHooks {
  /** Relay out (relay-framing.ts bytes; the caller seals and encodes them): `to` omitted = every other member. */
  send(msg: { to?: string; bytes: Uint8Array }): void;
  /** A member's key arrived (receive-rings.ts `ReceiveKeyRings.addKey(update.kid, update.baseKey, now)`); wipe baseKey after. */
  installReceiveKey(memberId: string, senderIndex: number, update: KeyUpdate, now: number): void | Promise<void>;
  /**
   * Our send key changed: hand exactly this (kid, baseKey) to the transform worker (`TransformWorker.setSendKey`).
   * Called once per key, in schedule order; `key.baseKey` is wiped when the hook returns (copy it to keep it).
   */
  sendKeyChanged(key: SendKeyInfo, senderIndex: number): void;
  /**
   * Switching our send key failed: this agent distributes no send key any more. Stop sealing at once (frames are
   * dropped, never sent under the old key) and rejoin with a fresh session key. Called once.
   */
  sendKeyFailed(failure: SendKeyFailure): void;
  /** Every other effect (alerts, roster-changed, metadata, forget-member, sender-index-changed, request-keyframe). */
  onEffect?(effect: MembershipEffect, state: MembershipState): void;
}

export interface KeyAgentOptions {
  roomId: string;
  memberId: string;
  inviteKeys: InviteKeys;
  identity: Identity;
  session: Session;
  rotationMs?: number;
  /** Base key length for fresh send keys (default 16 = AES-128). */
  baseKeyLength?: number;
}

export class KeyAgent {
  #state: MembershipState = initialMembershipState();
  #config: MembershipConfig;
  #psk: HpkePsk;
  #sendChannels = new Map<string, SenderChannel>();
  #recvChannels = new Map<string, RecipientChannel>();
  #schedule: SendKeySchedule | undefined;
  #senderIndex = -1;
  #reason: KeyReason = 'initial';
  readonly #queue = new PQueue({ concurrency: 1 });
  #announcement: Uint8Array;
  /** Our room-code value of the current round (secret until revealed; membership-code.ts). */
  #codeValue: { round: number; value: Uint8Array } | undefined;
  /** A send-key switch failed: no key is switched to or distributed any more (see the module doc). */
  #sendFailed = false;
  #destroyed = false;

  constructor(
    private readonly opts: KeyAgentOptions,
    private readonly hooks: KeyAgentHooks,
  ) {
    this.#config = { roomId: opts.roomId, membershipMacKey: opts.inviteKeys.membershipMacKey, ...(opts.rotationMs !== undefined ? { rotationMs: opts.rotationMs } : {}) };
    this.#psk = { key: opts.inviteKeys.psk, id: opts.inviteKeys.pskId };
    this.#announcement = encodeSignedAnnouncement(opts.session, opts.inviteKeys.membershipMacKey);
  }

  get state(): MembershipState {
    return this.#state;
  }

  /** Start: call once after the server's join response. */
  join(now: number, existingMemberIds: readonly string[]): Promise<void> {
    const a = this.opts.session.announcement;
    return this.dispatch({
      type: 'local-join',
      now,
      existingMemberIds,
      self: { memberId: this.opts.memberId, identityPublicKey: a.identityPublicKey, sessionPublicKey: a.sessionPublicKey, joinNonce: a.joinNonce },
    });
  }
  /** A membership message (relay-framing.ts bytes) the server says `from` sent. */
  relay(now: number, from: string, bytes: Uint8Array): Promise<void> {
    return this.dispatch({ type: 'relay', now, from, bytes });
  }
  memberLeft(now: number, memberId: string): Promise<void> {
    return this.dispatch({ type: 'member-left', now, memberId });
  }
  tick(now: number): Promise<void> {
    return this.dispatch({ type: 'tick', now });
  }

  /** Feeds one event (serialised after all earlier ones). */
  dispatch(event: MembershipEvent): Promise<void> {
    return this.#queue.add(() => this.#handle(event));
  }

  async #handle(event: MembershipEvent): Promise<void> {
    if (this.#destroyed) return;
    const pending: MembershipEvent[] = [event];
    while (pending.length) {
      const ev = pending.shift()!;
      const { state, effects } = reduce(this.#config, this.#state, ev);
      this.#state = state;
      for (const eff of effects) {
        try {
          const back = await this.#run(eff, ev.now);
          if (back) pending.push(back);
        } catch (e) {
          if (eff.kind === 'switch-send-key') {
            this.#failSending(eff, e);
            continue;
          }
          // A hook or a key batch failed: report it and go on with the other effects (the reducer state is already
          // advanced; the next fresh key repairs any missed distribution).
          this.hooks.onEffect?.({ kind: 'alert', reason: 'internal-error', detail: `${eff.kind}: ${e instanceof Error ? e.name : 'error'}` }, this.#state);
        }
      }
    }
  }

  async #run(eff: MembershipEffect, now: number): Promise<MembershipEvent | undefined> {
    switch (eff.kind) {
      case 'announce':
        this.hooks.send({ bytes: encodeRelay('announcement', this.#announcement) });
        return undefined;
      case 'announce-back':
        this.hooks.send({ to: eff.to, bytes: encodeRelay('announce-back', concat(this.#announcement, await this.#proof(eff.challenge))) });
        return undefined;
      case 'prove-liveness':
        this.hooks.send({ to: eff.to, bytes: encodeRelay('liveness-proof', await this.#proof(eff.challenge)) });
        return undefined;
      case 'commit-room-code': {
        this.#codeValue?.value.fill(0);
        const value = randomBytes(ROOM_CODE_VALUE_LEN);
        this.#codeValue = { round: eff.round, value };
        const commitment = roomCodeCommitment(this.opts.roomId, this.opts.memberId, eff.round, eff.rosterHash, value);
        const c = { round: eff.round, rosterHash: eff.rosterHash, commitment };
        const commit = await encodeCodeCommit(this.opts.identity, this.opts.roomId, this.opts.memberId, this.opts.session.keyPair.publicKey, c);
        this.hooks.send({ bytes: encodeRelay('code-commit', commit) });
        return { type: 'code-committed', now, ...c };
      }
      case 'reveal-room-code': {
        const v = this.#codeValue;
        if (v === undefined || v.round !== eff.round) throw new Error('no room-code value for this round');
        this.hooks.send({ bytes: encodeRelay('code-reveal', encodeCodeReveal(v.round, v.value)) });
        // public from now on: the reducer keeps it for the code
        return { type: 'code-revealed', now, round: v.round, value: v.value.slice() };
      }
      case 'switch-send-key': {
        if (this.#sendFailed) return undefined;
        let key: SendKeyInfo;
        if (this.#schedule === undefined || eff.senderIndex !== this.#senderIndex) {
          // first key, or our sender index moved: a new schedule, one generation above the old one
          const generation = this.#schedule ? this.#schedule.generation + 1 : 0;
          this.#schedule?.destroy();
          const fresh = randomBytes(this.opts.baseKeyLength ?? 16);
          try {
            this.#schedule = new SendKeySchedule({ sender: eff.senderIndex, generation }, fresh);
          } finally {
            fresh.fill(0);
          }
          this.#senderIndex = eff.senderIndex;
          key = this.#schedule.currentKey();
        } else if (eff.mode === 'ratchet') {
          key = this.#schedule.ratchet();
        } else {
          const fresh = randomBytes(this.opts.baseKeyLength ?? 16);
          try {
            key = this.#schedule.rekey(fresh);
          } finally {
            fresh.fill(0);
          }
        }
        this.#reason = eff.mode;
        try {
          this.hooks.sendKeyChanged(key, eff.senderIndex);
        } finally {
          key.baseKey.fill(0);
        }
        return undefined;
      }
      case 'send-envelopes': {
        if (this.#sendFailed || this.#schedule === undefined) return undefined;
        const key = this.#schedule.currentKey();
        try {
          const recipients = eff.to.flatMap((id) => {
            const m = this.#state.members.get(id);
            if (m === undefined) return [];
            const ch = this.#sendChannels.get(id);
            return [ch ? { memberId: id, sessionPublicKey: m.sessionPublicKey, channel: ch } : { memberId: id, sessionPublicKey: m.sessionPublicKey }];
          });
          if (recipients.length === 0) return undefined;
          const res = await sealKeyBatch({
            roomId: this.opts.roomId,
            epoch: eff.epoch,
            sender: { memberId: this.opts.memberId, identity: this.opts.identity, sessionPublicKey: this.opts.session.keyPair.publicKey },
            psk: this.#psk,
            recipients,
            update: { reason: this.#reason, senderIndex: this.#senderIndex, generation: key.generation, step: key.step, kid: key.kid, baseKey: key.baseKey },
          });
          for (const [id, ch] of res.channels) this.#sendChannels.set(id, ch);
          const single = recipients.length === 1 ? recipients[0]!.memberId : undefined;
          for (const b of res.batches) this.hooks.send({ ...(single !== undefined ? { to: single } : {}), bytes: encodeRelay('key-batch', b) });
        } finally {
          key.baseKey.fill(0);
        }
        return undefined;
      }
      case 'open-key-batch': {
        const ch = this.#recvChannels.get(eff.from);
        try {
          const r = await openKeyBatch(eff.bytes, {
            roomId: this.opts.roomId,
            fromMemberId: eff.from,
            me: { memberId: this.opts.memberId, sessionSecretKey: this.opts.session.keyPair.secretKey, sessionPublicKey: this.opts.session.keyPair.publicKey },
            sender: { identityPublicKey: eff.identityPublicKey, sessionPublicKey: eff.sessionPublicKey },
            psk: this.#psk,
            ...(ch ? { channel: ch } : {}),
            ...(eff.lastEpoch !== undefined ? { lastEpoch: eff.lastEpoch } : {}),
          });
          if (r === null) return undefined;
          if (ch && ch.root !== r.channel.root) closeChannel(ch);
          this.#recvChannels.set(eff.from, r.channel);
          return { type: 'envelope-opened', now, from: eff.from, epoch: r.epoch, update: r.update };
        } catch (e) {
          let epoch: number | undefined;
          try {
            epoch = decodeKeyBatch(eff.bytes).epoch;
          } catch {
            epoch = undefined;
          }
          return { type: 'envelope-failed', now, from: eff.from, code: isE2eeError(e) ? e.code : 'malformed', ...(epoch !== undefined ? { epoch } : {}) };
        }
      }
      case 'install-key':
        try {
          await this.hooks.installReceiveKey(eff.memberId, eff.senderIndex, eff.update, now);
        } finally {
          eff.update.baseKey.fill(0);
        }
        return undefined;
      case 'request-channel-reset': {
        const body = encodeChannelResetBody(this.opts.roomId, this.opts.memberId, eff.to, eff.epoch);
        const sig = await this.opts.identity.sign(channelResetSigInput(body));
        this.hooks.send({ to: eff.to, bytes: encodeRelay('channel-reset', concat(body, sig)) });
        this.hooks.onEffect?.(eff, this.#state);
        return undefined;
      }
      case 'reset-channel': {
        const s = this.#sendChannels.get(eff.memberId);
        if (s) closeChannel(s);
        this.#sendChannels.delete(eff.memberId);
        return undefined;
      }
      case 'forget-member': {
        const s = this.#sendChannels.get(eff.memberId);
        const r = this.#recvChannels.get(eff.memberId);
        if (s) closeChannel(s);
        if (r) closeChannel(r);
        this.#sendChannels.delete(eff.memberId);
        this.#recvChannels.delete(eff.memberId);
        this.hooks.onEffect?.(eff, this.#state);
        return undefined;
      }
      default:
        this.hooks.onEffect?.(eff, this.#state);
        return undefined;
    }
  }

  /** Our liveness proof for the member that set `challenge` (membership-messages.ts `livenessInput`). */
  #proof(challenge: LivenessChallenge): Promise<Uint8Array> {
    const c: LivenessContext = {
      roomId: this.opts.roomId,
      challenger: challenge,
      responder: { memberId: this.opts.memberId, sessionPublicKey: this.opts.session.keyPair.publicKey },
    };
    return proveLiveness(this.opts.identity, c);
  }

  /** The switch `eff` failed with `e`: wipe the schedule, distribute nothing from now on, tell the caller (once). */
  #failSending(eff: Extract<MembershipEffect, { kind: 'switch-send-key' }>, e: unknown): void {
    this.#sendFailed = true;
    this.#schedule?.destroy();
    this.#schedule = undefined;
    const reason = isE2eeError(e) ? e.code : 'hook';
    this.hooks.onEffect?.({ kind: 'alert', reason: 'send-key-failed', detail: `${eff.mode} key for epoch ${eff.epoch}: ${reason}` }, this.#state);
    this.hooks.sendKeyFailed({ mode: eff.mode, epoch: eff.epoch, reason });
  }

  /** True once a send-key switch failed (this agent distributes no send key any more). */
  get sendFailed(): boolean {
    return this.#sendFailed;
  }

  /** Wipes channel roots and the send key schedule. The caller wipes invite keys, identity and session. */
  destroy(): void {
    this.#destroyed = true;
    for (const c of this.#sendChannels.values()) closeChannel(c);
    for (const c of this.#recvChannels.values()) closeChannel(c);
    this.#sendChannels.clear();
    this.#recvChannels.clear();
    this.#schedule?.destroy();
    this.#codeValue?.value.fill(0);
  }
}
