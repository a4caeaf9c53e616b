/**
 * Membership: who is in the meeting (as far as cryptography can tell), who gets which send key, and when keys
 * change. A pure, synchronous reducer `reduce(config, state, event) -> { state, effects }`:
 *
 * - no I/O, no timers (time arrives in events), no randomness, no async;
 * - the sync crypto it needs is deterministic and done inside (HMAC-SHA256 of announcements, Ed25519 verification,
 *   SHA-256 of room-code rounds);
 * - async crypto (HPKE open/seal, key ring changes) is done by a driver (key-agent.ts) that executes the effects and
 *   feeds results back as events (`envelope-opened` / `envelope-failed`).
 * - the state holds no secrets (the membership MAC key lives in the config; base keys only pass through effects).
 *
 * Rules (design brief, properties 2, 3, 6):
 * - An announcement must carry a valid membership MAC (invite key) and a valid identity signature for this room and
 *   for the member id the server says sent it; otherwise it is ignored and an `alert` is raised: an injected member
 *   gets no keys, and its key batches are dropped.
 * - A valid announcement is not enough: the member must also prove it is live in this session (it signs our fresh
 *   join nonce) before it becomes a member and gets any key (membership-admission.ts). A replayed announcement never
 *   does: it is dropped and flagged (`not-live`).
 * - Local join: fresh initial send key (epoch 1), broadcast own announcement.
 * - A member who joins after us (announces, proves liveness, and was not in the join response's member list): we
 *   ratchet our send key (RFC 9605 §5.1) and send the ratcheted key only to the joiner. Existing members derive the
 *   ratcheted key themselves from the KID.
 * - A member that was already there when we joined (listed in `existingMemberIds`) gets our current key, no
 *   ratchet (it is entitled to everything we sent since we joined).
 * - A member leaves, or `rotationMs` (default 10 min) passes since our last fresh key: new random send key to every
 *   remaining member.
 * - Sender index (16 bits, used in SFrame KIDs, see kid.ts `makeKid`): see sender-index.ts `assignSenderIndices`.
 * - Room code: a commit-then-reveal round per roster (membership-code.ts); pending until the round completes.
 *
 * The messages it reads are framed by relay-framing.ts and checked by membership-messages.ts; sender indices come
 * from sender-index.ts; the types are in membership-state.ts.
 *
 * @module
 */
import { isE2eeError } from './errors.ts';
import { splitKid } from './kid.ts';
import { expirePending, onAnnouncement, onLivenessProof } from './membership-admission.ts';
import { codeStep, onCodeCommit, onCodeReveal, onOwnCode } from './membership-code.ts';
import { openChannelReset } from './membership-messages.ts';
import {
  DEFAULT_ROTATION_MS,
  freshRekey,
  indexEffects,
  rejected,
  sessionTag,
  type MemberRecord,
  type MembershipConfig,
  type MembershipEffect,
  type MembershipEvent,
  type MembershipState,
  type ReduceResult,
} from './membership-state.ts';
import { decodeRelay, type RelayKind } from './relay-framing.ts';
import { assignSenderIndices } from './sender-index.ts';

export * from './membership-state.ts';
export { currentRoomCode } from './membership-code.ts';

/** Sender index encoded in a KID (kid.ts layout), or -1 if the KID is outside the layout. */
function kidSender(kid: bigint): number {
  try {
    return splitKid(kid).sender;
  } catch {
    return -1;
  }
}

/**
 * The reducer. Never throws for bad input from the network: it raises `alert` effects instead. After every event the
 * room-code round moves on (membership-code.ts `codeStep`).
 */
export function reduce(config: MembershipConfig, state: MembershipState, event: MembershipEvent): ReduceResult {
  if (event.type !== 'local-join' && state.self === undefined) {
    return { state, effects: [{ kind: 'alert', reason: 'not-joined', detail: event.type }] };
  }
  const r = reduceEvent(config, state, event);
  const c = codeStep(config, r.state, event.now);
  return c.effects.length === 0 && c.state === r.state ? r : { state: c.state, effects: [...r.effects, ...c.effects] };
}

function reduceEvent(config: MembershipConfig, state: MembershipState, event: MembershipEvent): ReduceResult {
  switch (event.type) {
    case 'local-join': {
      if (state.self !== undefined) return { state, effects: [] };
      const self = event.self;
      const indices = assignSenderIndices([self.memberId]);
      const preexisting = new Set(event.existingMemberIds.filter((id) => id !== self.memberId));
      return {
        state: { ...state, self, preexisting, senderIndices: indices, sendEpoch: 1, lastFreshAt: event.now, joinedAt: event.now },
        effects: [
          { kind: 'switch-send-key', mode: 'initial', epoch: 1, senderIndex: indices.get(self.memberId)! },
          { kind: 'announce' },
          { kind: 'roster-changed' },
        ],
      };
    }

    case 'relay':
      return onRelay(config, state, event.now, event.from, event.bytes);

    case 'envelope-opened': {
      const m = state.members.get(event.from);
      if (m === undefined) return rejected(state, 'unknown-sender', event.from, 'envelope');
      const last = state.recvEpochs.get(event.from);
      if (last !== undefined && event.epoch <= last) return rejected(state, 'stale-epoch', event.from);
      const idx = state.senderIndices.get(event.from);
      // The KID's sender bits must be the sender's own index too, or an invited member could install a key under
      // another member's index and have its frames attributed to that member.
      if (idx === undefined || event.update.senderIndex !== idx || kidSender(event.update.kid) !== idx) {
        return rejected(state, 'sender-index-mismatch', event.from, `${event.update.senderIndex} != ${idx}`);
      }
      const recvEpochs = new Map(state.recvEpochs);
      recvEpochs.set(event.from, event.epoch);
      return { state: { ...state, recvEpochs }, effects: [{ kind: 'install-key', memberId: event.from, senderIndex: idx, update: event.update }] };
    }

    case 'envelope-failed': {
      const alert: MembershipEffect = { kind: 'alert', reason: 'envelope-rejected', memberId: event.from, detail: event.code };
      // A follow-up on a channel we never got (its setup message was lost): ask the sender for a new channel, once
      // per epoch.
      const asked = state.resetsRequested.get(event.from);
      if (event.code === 'state' && event.epoch !== undefined && state.members.has(event.from) && (asked === undefined || event.epoch > asked)) {
        const resetsRequested = new Map(state.resetsRequested);
        resetsRequested.set(event.from, event.epoch);
        return { state: { ...state, resetsRequested }, effects: [alert, { kind: 'request-channel-reset', to: event.from, epoch: event.epoch }] };
      }
      return { state, effects: [alert] };
    }

    case 'code-committed':
      return { state: onOwnCode(state, event.round, { commit: { round: event.round, rosterHash: event.rosterHash, commitment: event.commitment } }), effects: [] };

    case 'code-revealed':
      return { state: onOwnCode(state, event.round, { reveal: { round: event.round, value: event.value } }), effects: [] };

    case 'member-left': {
      const self = state.self!;
      const had = state.members.has(event.memberId);
      const preexisting = new Set(state.preexisting);
      preexisting.delete(event.memberId);
      const pending = new Map(state.pending);
      pending.delete(event.memberId);
      if (!had) return { state: { ...state, preexisting, pending }, effects: [] };
      const members = new Map(state.members);
      members.delete(event.memberId);
      const recvEpochs = new Map(state.recvEpochs);
      recvEpochs.delete(event.memberId);
      const indices = assignSenderIndices([self.memberId, ...members.keys()]);
      const departed = new Set(state.departed);
      departed.add(sessionTag(state.members.get(event.memberId)!.sessionPublicKey));
      const base: MembershipState = { ...state, members, pending, preexisting, recvEpochs, departed };
      const r = freshRekey(base, event.now, indices);
      return {
        state: r.state,
        effects: [
          { kind: 'forget-member', memberId: event.memberId, senderIndex: state.senderIndices.get(event.memberId) },
          ...indexEffects(state.senderIndices, indices, self.memberId),
          ...r.effects,
          { kind: 'roster-changed' },
        ],
      };
    }

    case 'tick': {
      const expired = expirePending(config, state, event.now);
      const rotation = config.rotationMs ?? DEFAULT_ROTATION_MS;
      if (event.now - expired.state.lastFreshAt < rotation) return expired;
      const r = freshRekey(expired.state, event.now, expired.state.senderIndices);
      return { state: r.state, effects: [...expired.effects, ...r.effects] };
    }
  }
}

function onRelay(config: MembershipConfig, state: MembershipState, now: number, from: string, bytes: Uint8Array): ReduceResult {
  let kind: RelayKind;
  let body: Uint8Array;
  try {
    ({ kind, body } = decodeRelay(bytes));
  } catch {
    return rejected(state, 'malformed', from, 'relay message');
  }
  switch (kind) {
    case 'announcement':
    case 'announce-back':
      return onAnnouncement(config, state, now, from, body, kind === 'announce-back');
    case 'liveness-proof':
      return onLivenessProof(config, state, now, from, body);
    case 'code-commit':
      return onCodeCommit(config, state, from, body);
    case 'code-reveal':
      return onCodeReveal(config, state, from, body);
    case 'metadata':
    case 'channel-reset':
    case 'key-batch': {
      const m = state.members.get(from);
      if (m === undefined) return rejected(state, 'unknown-sender', from, kind);
      if (kind === 'metadata') return { state, effects: [{ kind: 'metadata', from, bytes: body }] };
      if (kind === 'channel-reset') return onChannelReset(config, state, from, m, body);
      return {
        state,
        effects: [{ kind: 'open-key-batch', from, bytes: body, identityPublicKey: m.identityPublicKey, sessionPublicKey: m.sessionPublicKey, lastEpoch: state.recvEpochs.get(from) }],
      };
    }
    default: {
      const never: never = kind;
      return rejected(state, 'malformed', from, String(never));
    }
  }
}

function onChannelReset(config: MembershipConfig, state: MembershipState, from: string, m: MemberRecord, body: Uint8Array): ReduceResult {
  const self = state.self!;
  let r: ReturnType<typeof openChannelReset>;
  try {
    r = openChannelReset(body, m.identityPublicKey);
  } catch (e) {
    return { state, effects: [{ kind: 'alert', reason: 'bad-reset', memberId: from, detail: isE2eeError(e) ? e.code : 'malformed' }] };
  }
  if (r.roomId !== config.roomId || r.requesterId !== from || r.senderId !== self.memberId || r.epoch > state.sendEpoch) {
    return { state, effects: [{ kind: 'alert', reason: 'bad-reset', memberId: from, detail: 'wrong-context' }] };
  }
  const done = state.resetsHonoured.get(from);
  if (done !== undefined && r.epoch <= done) return { state, effects: [] }; // replayed or already handled
  const resetsHonoured = new Map(state.resetsHonoured);
  resetsHonoured.set(from, state.sendEpoch);
  return {
    state: { ...state, resetsHonoured },
    effects: [
      { kind: 'reset-channel', memberId: from },
      { kind: 'send-envelopes', to: [from], epoch: state.sendEpoch },
    ],
  };
}
