/**
 * Admission: how a verified announcement becomes a member we seal keys to (membership.ts reducer, issue 13 §4).
 *
 * An announcement is signed once per join and can be replayed by the server forever (to a late joiner, or to everyone
 * after a forced rejoin), so a valid announcement alone proves nothing about *now*. Before we seal any key to a
 * member, it proves it is live in this session: it signs OUR fresh join nonce, bound to the room, both member ids
 * and both session keys (membership-messages.ts `livenessInput`). Per pair of members, once:
 *
 *   J (joins)                             B (already there)
 *   announcement  ──────────────────────▶ valid: B answers, J is pending (no keys, not in the roster)
 *                 ◀────────────────────── announce-back = B's announcement || B's proof for J's nonce
 *   valid proof: B is admitted
 *   liveness proof (J's proof for B's nonce) ──▶ valid: J is admitted
 *
 * The announce-back replaces the plain answer B sent before; the liveness proof is the one extra message per pair.
 * A replayed announcement is answered (the answer reaches nobody who can prove anything) and stays pending until
 * `livenessTimeoutMs`, then it is dropped with a `not-live` alert; a replayed announce-back or proof carries a proof
 * for another session's nonce and is refused at once (`not-live`, 'bad-proof'). Everything after admission (ratchet
 * or current key, fresh key when the index moves or the ratchet budget is used) is as before.
 *
 * @module
 */
import { equalBytes } from './bytes.ts';
import { isE2eeError, type E2eeErrorCode } from './errors.ts';
import { fingerprint, type Announcement } from './identity.ts';
import { decodeLivenessProof, openSignedAnnouncement, splitAnnounceBack, verifyLiveness } from './membership-messages.ts';
import {
  DEFAULT_LIVENESS_TIMEOUT_MS,
  DEFAULT_MAX_RATCHETS_PER_KEY,
  DEFAULT_PREEXISTING_WINDOW_MS,
  freshRekey,
  indexEffects,
  rejected,
  sessionTag,
  type AlertReason,
  type LivenessChallenge,
  type MemberRecord,
  type MembershipConfig,
  type MembershipEffect,
  type MembershipState,
  type PendingMember,
  type ReduceResult,
} from './membership-state.ts';
import { assignSenderIndices } from './sender-index.ts';

function alertFor(code: E2eeErrorCode): AlertReason {
  switch (code) {
    case 'bad-mac':
      return 'bad-mac';
    case 'bad-signature':
      return 'bad-signature';
    case 'wrong-context':
      return 'wrong-room';
    default:
      return 'malformed';
  }
}

const sameSession = (r: MemberRecord, a: Announcement): boolean =>
  equalBytes(r.sessionPublicKey, a.sessionPublicKey) && equalBytes(r.identityPublicKey, a.identityPublicKey) && equalBytes(r.joinNonce, a.joinNonce);

/** The challenge a member sets us: its session and its fresh join nonce. */
const challengeOf = (r: MemberRecord): LivenessChallenge => ({ memberId: r.memberId, sessionPublicKey: r.sessionPublicKey, joinNonce: r.joinNonce });

/**
 * The record of a verified announcement. `preexisting`: listed in our join response and announced within the window
 * (it gets our current key rather than a ratchet; see `MembershipConfig.preexistingWindowMs`).
 */
function recordOf(config: MembershipConfig, state: MembershipState, now: number, a: Announcement): MemberRecord {
  return {
    memberId: a.memberId,
    identityPublicKey: a.identityPublicKey,
    sessionPublicKey: a.sessionPublicKey,
    joinNonce: a.joinNonce,
    fingerprint: fingerprint(a.identityPublicKey),
    verifiedAt: now,
    preexisting: state.preexisting.has(a.memberId) && now - state.joinedAt <= (config.preexistingWindowMs ?? DEFAULT_PREEXISTING_WINDOW_MS),
  };
}

/** Did `r` sign our join nonce for our session and its own? */
function provesLiveness(config: MembershipConfig, state: MembershipState, r: MemberRecord, proof: Uint8Array): boolean {
  const self = state.self!;
  return verifyLiveness(
    r.identityPublicKey,
    {
      roomId: config.roomId,
      challenger: { memberId: self.memberId, sessionPublicKey: self.sessionPublicKey, joinNonce: self.joinNonce },
      responder: { memberId: r.memberId, sessionPublicKey: r.sessionPublicKey },
    },
    proof,
  );
}

/**
 * An announcement (`proof` undefined) or an announce-back (its `proof` for our nonce) from `from`.
 */
export function onAnnouncement(config: MembershipConfig, state: MembershipState, now: number, from: string, body: Uint8Array, withProof: boolean): ReduceResult {
  const self = state.self!;
  let a: Announcement;
  let proof: Uint8Array | undefined;
  try {
    if (withProof) {
      const parts = splitAnnounceBack(body);
      a = openSignedAnnouncement(parts.announcement, config.membershipMacKey, config.roomId);
      proof = parts.proof;
    } else {
      a = openSignedAnnouncement(body, config.membershipMacKey, config.roomId);
    }
  } catch (e) {
    return rejected(state, alertFor(isE2eeError(e) ? e.code : 'malformed'), from);
  }
  if (a.memberId !== from) return rejected(state, 'member-id-mismatch', from, a.memberId);
  if (a.memberId === self.memberId) {
    if (equalBytes(a.sessionPublicKey, self.sessionPublicKey) && equalBytes(a.identityPublicKey, self.identityPublicKey)) return { state, effects: [] };
    return rejected(state, 'impersonation', from);
  }
  if (state.departed.has(sessionTag(a.sessionPublicKey))) return rejected(state, 'replayed-announcement', from);
  const known = state.members.get(a.memberId);
  if (known !== undefined) return sameSession(known, a) ? { state, effects: [] } : rejected(state, 'session-changed', from);
  const waiting = state.pending.get(a.memberId);
  if (waiting !== undefined && !sameSession(waiting.record, a)) return rejected(state, 'session-changed', from);

  if (proof === undefined) {
    if (waiting !== undefined) return { state, effects: [] }; // answered already
    const record = recordOf(config, state, now, a);
    const pending = new Map(state.pending);
    pending.set(a.memberId, { record, since: now });
    const preexisting = new Set(state.preexisting);
    preexisting.delete(a.memberId);
    return { state: { ...state, pending, preexisting }, effects: [{ kind: 'announce-back', to: a.memberId, challenge: challengeOf(record) }] };
  }

  // An answer to our announcement, with its proof for our nonce.
  const record = waiting?.record ?? recordOf(config, state, now, a);
  if (!provesLiveness(config, state, record, proof)) return rejected(state, 'not-live', from, 'bad-proof');
  // It needs our proof too, unless we sent it already (we answered its announcement and both answers crossed).
  const lead: MembershipEffect[] = waiting === undefined ? [{ kind: 'prove-liveness', to: a.memberId, challenge: challengeOf(record) }] : [];
  return admit(config, state, now, record, lead);
}

/** A liveness proof from `from`, whose announcement we answered. */
export function onLivenessProof(config: MembershipConfig, state: MembershipState, now: number, from: string, body: Uint8Array): ReduceResult {
  if (state.members.has(from)) return { state, effects: [] }; // admitted already: a duplicate or a replay
  const waiting = state.pending.get(from);
  if (waiting === undefined) return rejected(state, 'unknown-sender', from, 'liveness-proof');
  let proof: Uint8Array;
  try {
    proof = decodeLivenessProof(body);
  } catch {
    return rejected(state, 'malformed', from, 'liveness-proof');
  }
  if (!provesLiveness(config, state, waiting.record, proof)) return rejected(state, 'not-live', from, 'bad-proof');
  return admit(config, state, now, waiting.record, []);
}

/** Answered announcements that did not prove liveness in time: dropped and flagged. */
export function expirePending(config: MembershipConfig, state: MembershipState, now: number): ReduceResult {
  const timeout = config.livenessTimeoutMs ?? DEFAULT_LIVENESS_TIMEOUT_MS;
  const expired = [...state.pending.values()].filter((p: PendingMember) => now - p.since > timeout);
  if (expired.length === 0) return { state, effects: [] };
  const pending = new Map(state.pending);
  for (const p of expired) pending.delete(p.record.memberId);
  return {
    state: { ...state, pending },
    effects: expired.map((p): MembershipEffect => ({ kind: 'alert', reason: 'not-live', memberId: p.record.memberId, detail: `no liveness proof within ${timeout} ms` })),
  };
}

/** `rec` proved liveness: it becomes a member and gets our key (ratchet, current key, or a fresh key for all). */
function admit(config: MembershipConfig, state: MembershipState, now: number, rec: MemberRecord, lead: MembershipEffect[]): ReduceResult {
  const self = state.self!;
  const members = new Map(state.members);
  members.set(rec.memberId, { ...rec, verifiedAt: now });
  const pending = new Map(state.pending);
  pending.delete(rec.memberId);
  const preexistingIds = new Set(state.preexisting);
  preexistingIds.delete(rec.memberId);
  const indices = assignSenderIndices([self.memberId, ...members.keys()]);
  const myIdxChanged = indices.get(self.memberId) !== state.senderIndices.get(self.memberId);
  const base: MembershipState = { ...state, members, pending, preexisting: preexistingIds, senderIndices: indices };
  const effects: MembershipEffect[] = [...lead, ...indexEffects(state.senderIndices, indices, self.memberId)];
  if (myIdxChanged || state.ratchetsSinceFresh >= (config.maxRatchetsPerKey ?? DEFAULT_MAX_RATCHETS_PER_KEY)) {
    // Our KID sender index moved (collision chain), or another ratchet could leave receivers behind / wrap the
    // KID step: a fresh key for everyone, the joiner included.
    const r = freshRekey(base, now, indices);
    return { state: r.state, effects: [...effects, ...r.effects, { kind: 'roster-changed' }] };
  }
  if (rec.preexisting) {
    effects.push({ kind: 'send-envelopes', to: [rec.memberId], epoch: state.sendEpoch });
    return { state: base, effects: [...effects, { kind: 'roster-changed' }] };
  }
  const epoch = state.sendEpoch + 1;
  effects.push(
    { kind: 'switch-send-key', mode: 'ratchet', epoch, senderIndex: indices.get(self.memberId)! },
    { kind: 'send-envelopes', to: [rec.memberId], epoch },
    { kind: 'request-keyframe' },
    { kind: 'roster-changed' },
  );
  return { state: { ...base, sendEpoch: epoch, ratchetsSinceFresh: state.ratchetsSinceFresh + 1 }, effects };
}
