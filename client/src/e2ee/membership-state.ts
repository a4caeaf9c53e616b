/**
 * The membership reducer's types (config, state, events, effects, alert reasons) and the helpers its parts share
 * (membership.ts reduce, membership-admission.ts announcements and liveness, membership-code.ts room-code rounds).
 *
 * The state holds no secrets: the membership MAC key lives in the config, our room-code value in the driver until
 * it is revealed (and public), base keys only pass through effects.
 *
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { toBase64url } from './bytes.ts';
import type { RoomCode } from './codes.ts';
import type { KeyUpdate } from './envelope.ts';
import type { E2eeErrorCode } from './errors.ts';
import type { CodeCommit } from './membership-messages.ts';

export const DEFAULT_ROTATION_MS = 10 * 60 * 1000;
export const DEFAULT_PREEXISTING_WINDOW_MS = 60_000;
/**
 * Ratchets (joins) allowed on one fresh key before the next join makes a fresh key for everyone instead. Receivers
 * derive ratchet steps locally only a few steps ahead of the newest key they saw (receive-rings.ts `maxRatchetAhead`), and
 * the KID carries the step in 4 bits; 4 stays inside both even when no frame flows between joins.
 */
export const DEFAULT_MAX_RATCHETS_PER_KEY = 4;
/** A member whose announcement we answered must prove liveness within this long, or it is dropped and flagged. */
export const DEFAULT_LIVENESS_TIMEOUT_MS = 10_000;

export interface MembershipConfig {
  roomId: string;
  /** Invite-derived membership MAC key (secret; kept out of the state). */
  membershipMacKey: Uint8Array;
  /** Fresh send key after this long (default 10 min). */
  rotationMs?: number;
  /**
   * A member listed as already present at our join is treated as such (our current key, no ratchet) only if its
   * announcement arrives within this long after our join (default 60 s). The list comes from the untrusted server;
   * the window bounds what a lie can expose (frames we sent since our own join, at most this long).
   */
  preexistingWindowMs?: number;
  /** See `DEFAULT_MAX_RATCHETS_PER_KEY`. */
  maxRatchetsPerKey?: number;
  /** See `DEFAULT_LIVENESS_TIMEOUT_MS`. */
  livenessTimeoutMs?: number;
}

export interface SelfInfo {
  memberId: string;
  identityPublicKey: Uint8Array;
  sessionPublicKey: Uint8Array;
  /** Fresh per join: the challenge every other member's liveness proof must sign. */
  joinNonce: Uint8Array;
}

export interface MemberRecord {
  memberId: string;
  identityPublicKey: Uint8Array;
  sessionPublicKey: Uint8Array;
  joinNonce: Uint8Array;
  /** identity.ts `fingerprint(identityPublicKey)`. */
  fingerprint: Uint8Array;
  /** When we verified its announcement. */
  verifiedAt: number;
  /** True if it was already in the room when we joined. */
  preexisting: boolean;
}

/** A verified announcement we answered (announce-back with our proof) whose sender has not proven liveness yet. */
export interface PendingMember {
  readonly record: MemberRecord;
  /** When we answered it. */
  readonly since: number;
}

/** One member's room-code value, revealed and checked against its commitment. */
export interface CodeReveal {
  round: number;
  value: Uint8Array;
}

/** Our room-code round (membership-code.ts): one per roster, restarted by every roster change. */
export interface CodeRoundState {
  /** Our round counter: +1 per roster change (0 before the first round). */
  readonly round: number;
  /** R (codes.ts `rosterHash`) of the roster this round is for. */
  readonly rosterHash: Uint8Array | undefined;
  /** We asked the driver to commit for this round. */
  readonly committing: boolean;
  /**
   * The commitments of every roster member we held when we asked the driver to reveal (null before): the round's
   * code is computed from these only, so no commitment that arrives after our value is public can count.
   */
  readonly fixed: ReadonlyMap<string, CodeCommit> | null;
  /** Newest signed commitment per member (ours too, once the driver fed it back). */
  readonly commits: ReadonlyMap<string, CodeCommit>;
  /** Per member: its value for its newest commitment, if revealed and matching. */
  readonly reveals: ReadonlyMap<string, CodeReveal>;
  /** The code of this round once every roster member revealed; null while it is pending. */
  readonly code: RoomCode | null;
}

export interface MembershipState {
  readonly self: SelfInfo | undefined;
  /** Verified members that proved liveness, excluding self: the members we seal keys to. */
  readonly members: ReadonlyMap<string, MemberRecord>;
  /** Verified announcements awaiting their liveness proof: no keys, not in the roster. */
  readonly pending: ReadonlyMap<string, PendingMember>;
  /** Member ids from the join response that have not announced yet. */
  readonly preexisting: ReadonlySet<string>;
  /** Sender indices of self + verified members. */
  readonly senderIndices: ReadonlyMap<string, number>;
  /** Our send key epoch: +1 per new send key (initial, ratchet, fresh). 0 before joining. */
  readonly sendEpoch: number;
  /** When our last fresh (random) send key was made. */
  readonly lastFreshAt: number;
  /** When we joined (local-join time). */
  readonly joinedAt: number;
  /** Ratchets of our send key since the last fresh one. */
  readonly ratchetsSinceFresh: number;
  /** SHA-256 (base64url) of the session public keys of members that left: their announcements are never re-admitted. */
  readonly departed: ReadonlySet<string>;
  /** Per sender: highest batch epoch for which we asked for a channel reset. */
  readonly resetsRequested: ReadonlyMap<string, number>;
  /** Per requester: highest epoch for which we honoured a channel reset. */
  readonly resetsHonoured: ReadonlyMap<string, number>;
  /** Highest epoch accepted per sender. */
  readonly recvEpochs: ReadonlyMap<string, number>;
  readonly code: CodeRoundState;
}

export type MembershipEvent =
  | { type: 'local-join'; now: number; self: SelfInfo; existingMemberIds: readonly string[] }
  /** A membership message (relay-framing.ts bytes) from the server (`from` is the server-asserted sender). */
  | { type: 'relay'; now: number; from: string; bytes: Uint8Array }
  /** Driver result of an `open-key-batch` effect. */
  | { type: 'envelope-opened'; now: number; from: string; epoch: number; update: KeyUpdate }
  | { type: 'envelope-failed'; now: number; from: string; code: E2eeErrorCode; epoch?: number }
  /** Driver result of `commit-room-code`: our commitment was sent. */
  | { type: 'code-committed'; now: number; round: number; rosterHash: Uint8Array; commitment: Uint8Array }
  /** Driver result of `reveal-room-code`: our value was sent (it is public from now on). */
  | { type: 'code-revealed'; now: number; round: number; value: Uint8Array }
  /** The server says this member left (or its socket closed). */
  | { type: 'member-left'; now: number; memberId: string }
  | { type: 'tick'; now: number };

export type AlertReason =
  | 'malformed' // undecodable relay message / announcement
  | 'bad-mac' // announcement without the invite's MAC: injected member, gets no keys
  | 'bad-signature' // announcement signature invalid
  | 'wrong-room' // announcement for another room
  | 'member-id-mismatch' // announcement's member id is not the relay sender
  | 'session-changed' // a known member id announced a different identity/session key
  | 'replayed-announcement' // announcement of a session that already left (replayed by the server)
  | 'not-live' // an announcement whose sender did not prove liveness for our session (a replay?): no keys, not a member
  | 'impersonation' // someone announced our own member id
  | 'unknown-sender' // key batch / metadata from a member that has not been verified
  | 'envelope-rejected' // a key batch for us failed (code in detail)
  | 'sender-index-mismatch' // envelope's sender index differs from the one we computed
  | 'stale-epoch' // envelope epoch not newer than the last one
  | 'bad-reset' // channel reset request that does not verify or is not for us
  | 'bad-room-code' // a room-code commitment that does not verify, or a reveal that does not open it
  | 'internal-error' // raised by the driver (key-agent.ts) when executing an effect failed
  | 'send-key-failed' // raised by the driver: switching our send key failed; nothing is sent until we rejoin
  | 'not-joined'; // event before local-join

/** The member a liveness proof is for (its session and its fresh join nonce, the challenge). */
export interface LivenessChallenge {
  memberId: string;
  sessionPublicKey: Uint8Array;
  joinNonce: Uint8Array;
}

export type MembershipEffect =
  /** Broadcast our signed + MACed announcement (`encodeSignedAnnouncement`). */
  | { kind: 'announce' }
  /** Answer an announcement: our announcement and our liveness proof for `challenge`, to `to` only. */
  | { kind: 'announce-back'; to: string; challenge: LivenessChallenge }
  /** Our liveness proof for `challenge` alone (it already has our announcement). */
  | { kind: 'prove-liveness'; to: string; challenge: LivenessChallenge }
  /** Change our send key: 'initial'/'fresh' = new random key (new generation), 'ratchet' = RFC 9605 ratchet. */
  | { kind: 'switch-send-key'; mode: 'initial' | 'ratchet' | 'fresh'; epoch: number; senderIndex: number }
  /** Seal our current send key for these members (envelope.ts `sealKeyBatch`) and relay the batch(es). */
  | { kind: 'send-envelopes'; to: string[]; epoch: number }
  /** Open a key batch from a verified member; feed back `envelope-opened` / `envelope-failed`. */
  | { kind: 'open-key-batch'; from: string; bytes: Uint8Array; identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array; lastEpoch: number | undefined }
  /** Install a receive key for a member's sender index (receive-rings.ts `ReceiveKeyRings.addKey`). */
  | { kind: 'install-key'; memberId: string; senderIndex: number; update: KeyUpdate }
  /** Ask `to` for a new channel (we missed its setup): send a signed channel reset for `epoch`. */
  | { kind: 'request-channel-reset'; to: string; epoch: number }
  /** Drop our sender channel to this member (a new one is set up by the next send-envelopes). */
  | { kind: 'reset-channel'; memberId: string }
  /** Drop everything about this member (channels, receive ring). */
  | { kind: 'forget-member'; memberId: string; senderIndex: number | undefined }
  | { kind: 'sender-index-changed'; memberId: string; from: number; to: number }
  /** Make our encoder send a keyframe (after a send-key switch). */
  | { kind: 'request-keyframe' }
  /** Verified roster changed (update UI; the room code is pending until the new round completes). */
  | { kind: 'roster-changed' }
  /** Draw a fresh room-code value for this round, broadcast its signed commitment, feed back `code-committed`. */
  | { kind: 'commit-room-code'; round: number; rosterHash: Uint8Array }
  /** Broadcast our value of this round, feed back `code-revealed`. */
  | { kind: 'reveal-room-code'; round: number }
  /** The room code completed or became pending (`currentRoomCode`). */
  | { kind: 'room-code-changed' }
  /** Metadata blob from a verified member: open it with metadata.ts. */
  | { kind: 'metadata'; from: string; bytes: Uint8Array }
  | { kind: 'alert'; reason: AlertReason; memberId?: string; detail?: string };

export interface ReduceResult {
  state: MembershipState;
  effects: MembershipEffect[];
}

export function initialMembershipState(): MembershipState {
  return {
    self: undefined,
    members: new Map(),
    pending: new Map(),
    preexisting: new Set(),
    senderIndices: new Map(),
    sendEpoch: 0,
    lastFreshAt: 0,
    joinedAt: 0,
    ratchetsSinceFresh: 0,
    departed: new Set(),
    resetsRequested: new Map(),
    resetsHonoured: new Map(),
    recvEpochs: new Map(),
    code: { round: 0, rosterHash: undefined, committing: false, fixed: null, commits: new Map(), reveals: new Map(), code: null },
  };
}

/** Roster (self + members that proved liveness), the one the room code covers (codes.ts `rosterHash`). */
export function roster(state: MembershipState): { memberId: string; identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array }[] {
  const out = [...state.members.values()].map((m) => ({ memberId: m.memberId, identityPublicKey: m.identityPublicKey, sessionPublicKey: m.sessionPublicKey }));
  if (state.self) out.push({ memberId: state.self.memberId, identityPublicKey: state.self.identityPublicKey, sessionPublicKey: state.self.sessionPublicKey });
  return out;
}

/** Tombstone key of a session (membership `departed`). */
export function sessionTag(sessionPublicKey: Uint8Array): string {
  return toBase64url(sha256(sessionPublicKey));
}

export function indexEffects(prev: ReadonlyMap<string, number>, next: ReadonlyMap<string, number>, selfId: string): MembershipEffect[] {
  const out: MembershipEffect[] = [];
  for (const [id, to] of next) {
    const from = prev.get(id);
    if (from !== undefined && from !== to && id !== selfId) out.push({ kind: 'sender-index-changed', memberId: id, from, to });
  }
  return out;
}

/** A fresh random send key for everyone (new generation). */
export function freshRekey(state: MembershipState, now: number, indices: ReadonlyMap<string, number>): ReduceResult {
  const self = state.self!;
  const epoch = state.sendEpoch + 1;
  const to = [...state.members.keys()].sort();
  const effects: MembershipEffect[] = [{ kind: 'switch-send-key', mode: 'fresh', epoch, senderIndex: indices.get(self.memberId)! }];
  if (to.length) effects.push({ kind: 'send-envelopes', to, epoch });
  effects.push({ kind: 'request-keyframe' });
  return { state: { ...state, sendEpoch: epoch, lastFreshAt: now, senderIndices: indices, ratchetsSinceFresh: 0 }, effects };
}

/** A membership message from `from` that we reject: state unchanged, one alert. */
export function rejected(state: MembershipState, reason: AlertReason, memberId: string | undefined, detail?: string): ReduceResult {
  return { state, effects: [{ kind: 'alert', reason, ...(memberId !== undefined ? { memberId } : {}), ...(detail !== undefined ? { detail } : {}) }] };
}
