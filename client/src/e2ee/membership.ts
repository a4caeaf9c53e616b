/**
 * Membership: who is in the meeting (as far as cryptography can tell), who gets which send key, and when keys
 * change. A pure, synchronous reducer `reduce(config, state, event) -> { state, effects }`:
 *
 * - no I/O, no timers (time arrives in events), no randomness, no async;
 * - the sync crypto it needs is deterministic and done inside (HMAC-SHA256 of announcements, Ed25519 verification);
 * - async crypto (HPKE open/seal, key ring changes) is done by a driver (key-agent.ts) that executes the effects and
 *   feeds results back as events (`envelope-opened` / `envelope-failed`).
 * - the state holds no secrets (the membership MAC key lives in the config; base keys only pass through effects).
 *
 * Rules (design brief, properties 2, 3, 6):
 * - An announcement must carry a valid membership MAC (invite key) and a valid identity signature for this room and
 *   for the member id the server says sent it; otherwise it is ignored and an `alert` is raised: an injected member
 *   gets no keys, and its key batches are dropped.
 * - Local join: fresh initial send key (epoch 1), broadcast own announcement.
 * - A member who joins after us (announces, and was not in the join response's member list): we ratchet our send
 *   key (RFC 9605 §5.1), send the ratcheted key only to the joiner, and announce ourselves to it. Existing members
 *   derive the ratcheted key themselves from the KID.
 * - A member that was already there when we joined (listed in `existingMemberIds`) gets our current key, no
 *   ratchet (it is entitled to everything we sent since we joined).
 * - A member leaves, or `rotationMs` (default 10 min) passes since our last fresh key: new random send key to every
 *   remaining member.
 * - Sender index (16 bits, used in SFrame KIDs, see kid.ts `makeKid`): see sender-index.ts `assignSenderIndices`.
 *
 * The messages it reads are framed by relay-framing.ts and checked by membership-messages.ts; sender indices come
 * from sender-index.ts.
 *
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { roomCode, type RoomCode } from './codes.ts';
import { equalBytes, toBase64url } from './bytes.ts';
import type { KeyUpdate } from './envelope.ts';
import { fingerprint, type Announcement } from './identity.ts';
import { isE2eeError, type E2eeErrorCode } from './errors.ts';
import { splitKid } from './kid.ts';
import { openChannelReset, openSignedAnnouncement } from './membership-messages.ts';
import { decodeRelay, type RelayKind } from './relay-framing.ts';
import { assignSenderIndices } from './sender-index.ts';

/** Sender index encoded in a KID (kid.ts layout), or -1 if the KID is outside the layout. */
function kidSender(kid: bigint): number {
  try {
    return splitKid(kid).sender;
  } catch {
    return -1;
  }
}

export const DEFAULT_ROTATION_MS = 10 * 60 * 1000;

// ------------------------------------------------------------------------------------------------
// State, events, effects
// ------------------------------------------------------------------------------------------------

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
}

export const DEFAULT_PREEXISTING_WINDOW_MS = 60_000;
/**
 * Ratchets (joins) allowed on one fresh key before the next join makes a fresh key for everyone instead. Receivers
 * derive ratchet steps locally only a few steps ahead of the newest key they saw (receive-rings.ts `maxRatchetAhead`), and
 * the KID carries the step in 4 bits; 4 stays inside both even when no frame flows between joins.
 */
export const DEFAULT_MAX_RATCHETS_PER_KEY = 4;

export interface SelfInfo {
  memberId: string;
  identityPublicKey: Uint8Array;
  sessionPublicKey: Uint8Array;
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

export interface MembershipState {
  readonly self: SelfInfo | undefined;
  /** Verified members, excluding self. */
  readonly members: ReadonlyMap<string, MemberRecord>;
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
  /** SHA-256 (hex) of the session public keys of members that left: their announcements are never re-admitted. */
  readonly departed: ReadonlySet<string>;
  /** Per sender: highest batch epoch for which we asked for a channel reset. */
  readonly resetsRequested: ReadonlyMap<string, number>;
  /** Per requester: highest epoch for which we honoured a channel reset. */
  readonly resetsHonoured: ReadonlyMap<string, number>;
  /** Highest epoch accepted per sender. */
  readonly recvEpochs: ReadonlyMap<string, number>;
}

export type MembershipEvent =
  | { type: 'local-join'; now: number; self: SelfInfo; existingMemberIds: readonly string[] }
  /** A membership message (relay-framing.ts bytes) from the server (`from` is the server-asserted sender). */
  | { type: 'relay'; now: number; from: string; bytes: Uint8Array }
  /** Driver result of an `open-key-batch` effect. */
  | { type: 'envelope-opened'; now: number; from: string; epoch: number; update: KeyUpdate }
  | { type: 'envelope-failed'; now: number; from: string; code: E2eeErrorCode; epoch?: number }
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
  | 'impersonation' // someone announced our own member id
  | 'unknown-sender' // key batch / metadata from a member that has not been verified
  | 'envelope-rejected' // a key batch for us failed (code in detail)
  | 'sender-index-mismatch' // envelope's sender index differs from the one we computed
  | 'stale-epoch' // envelope epoch not newer than the last one
  | 'bad-reset' // channel reset request that does not verify or is not for us
  | 'internal-error' // raised by the driver (key-agent.ts) when executing an effect failed
  | 'send-key-failed' // raised by the driver: switching our send key failed; nothing is sent until we rejoin
  | 'not-joined'; // event before local-join

export type MembershipEffect =
  /** Send our signed + MACed announcement (`encodeSignedAnnouncement`) to `to`, or to everyone if omitted. */
  | { kind: 'announce'; to?: string }
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
  /** Verified roster changed (recompute the room code, update UI). */
  | { kind: 'roster-changed' }
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
  };
}

/** Roster (self + verified members) for the room code (codes.ts `roomCode`). */
export function roster(state: MembershipState): { memberId: string; identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array }[] {
  const out = [...state.members.values()].map((m) => ({ memberId: m.memberId, identityPublicKey: m.identityPublicKey, sessionPublicKey: m.sessionPublicKey }));
  if (state.self) out.push({ memberId: state.self.memberId, identityPublicKey: state.self.identityPublicKey, sessionPublicKey: state.self.sessionPublicKey });
  return out;
}

/**
 * Room epoch used in the room code. v1 uses 0: every join creates a fresh session key (and join nonce), so the
 * roster of (member id, identity key, session key) already changes with every join and leave, and a counter
 * that late joiners cannot know would make honest members show different codes.
 */
export const ROOM_CODE_EPOCH = 0;

/** The room code of the current verified roster (self included). */
export function currentRoomCode(state: MembershipState): RoomCode {
  return roomCode(roster(state), ROOM_CODE_EPOCH);
}

function sessionTag(sessionPublicKey: Uint8Array): string {
  return toBase64url(sha256(sessionPublicKey));
}

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

function indexEffects(prev: ReadonlyMap<string, number>, next: ReadonlyMap<string, number>, selfId: string): MembershipEffect[] {
  const out: MembershipEffect[] = [];
  for (const [id, to] of next) {
    const from = prev.get(id);
    if (from !== undefined && from !== to && id !== selfId) out.push({ kind: 'sender-index-changed', memberId: id, from, to });
  }
  return out;
}

function freshRekey(state: MembershipState, now: number, indices: ReadonlyMap<string, number>): { state: MembershipState; effects: MembershipEffect[] } {
  const self = state.self!;
  const epoch = state.sendEpoch + 1;
  const to = [...state.members.keys()].sort();
  const effects: MembershipEffect[] = [{ kind: 'switch-send-key', mode: 'fresh', epoch, senderIndex: indices.get(self.memberId)! }];
  if (to.length) effects.push({ kind: 'send-envelopes', to, epoch });
  effects.push({ kind: 'request-keyframe' });
  return { state: { ...state, sendEpoch: epoch, lastFreshAt: now, senderIndices: indices, ratchetsSinceFresh: 0 }, effects };
}

/** The reducer. Never throws for bad input from the network: it raises `alert` effects instead. */
export function reduce(config: MembershipConfig, state: MembershipState, event: MembershipEvent): ReduceResult {
  if (event.type !== 'local-join' && state.self === undefined) {
    return { state, effects: [{ kind: 'alert', reason: 'not-joined', detail: event.type }] };
  }
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

    case 'relay': {
      let kind: RelayKind;
      let body: Uint8Array;
      try {
        ({ kind, body } = decodeRelay(event.bytes));
      } catch {
        return { state, effects: [{ kind: 'alert', reason: 'malformed', memberId: event.from, detail: 'relay message' }] };
      }
      if (kind === 'announcement') return onAnnouncement(config, state, event.now, event.from, body);
      const m = state.members.get(event.from);
      if (m === undefined) return { state, effects: [{ kind: 'alert', reason: 'unknown-sender', memberId: event.from, detail: kind }] };
      if (kind === 'metadata') return { state, effects: [{ kind: 'metadata', from: event.from, bytes: body }] };
      if (kind === 'channel-reset') return onChannelReset(config, state, event.from, m, body);
      return {
        state,
        effects: [
          {
            kind: 'open-key-batch',
            from: event.from,
            bytes: body,
            identityPublicKey: m.identityPublicKey,
            sessionPublicKey: m.sessionPublicKey,
            lastEpoch: state.recvEpochs.get(event.from),
          },
        ],
      };
    }

    case 'envelope-opened': {
      const m = state.members.get(event.from);
      if (m === undefined) return { state, effects: [{ kind: 'alert', reason: 'unknown-sender', memberId: event.from, detail: 'envelope' }] };
      const last = state.recvEpochs.get(event.from);
      if (last !== undefined && event.epoch <= last) return { state, effects: [{ kind: 'alert', reason: 'stale-epoch', memberId: event.from }] };
      const idx = state.senderIndices.get(event.from);
      // The KID's sender bits must be the sender's own index too, or an invited member could install a key under
      // another member's index and have its frames attributed to that member.
      if (idx === undefined || event.update.senderIndex !== idx || kidSender(event.update.kid) !== idx) {
        return { state, effects: [{ kind: 'alert', reason: 'sender-index-mismatch', memberId: event.from, detail: `${event.update.senderIndex} != ${idx}` }] };
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

    case 'member-left': {
      const self = state.self!;
      const had = state.members.has(event.memberId);
      const preexisting = new Set(state.preexisting);
      preexisting.delete(event.memberId);
      if (!had) return { state: { ...state, preexisting }, effects: [] };
      const members = new Map(state.members);
      members.delete(event.memberId);
      const recvEpochs = new Map(state.recvEpochs);
      recvEpochs.delete(event.memberId);
      const indices = assignSenderIndices([self.memberId, ...members.keys()]);
      const departed = new Set(state.departed);
      departed.add(sessionTag(state.members.get(event.memberId)!.sessionPublicKey));
      const base: MembershipState = { ...state, members, preexisting, recvEpochs, departed };
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
      const rotation = config.rotationMs ?? DEFAULT_ROTATION_MS;
      if (event.now - state.lastFreshAt < rotation) return { state, effects: [] };
      return freshRekey(state, event.now, state.senderIndices);
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

function onAnnouncement(config: MembershipConfig, state: MembershipState, now: number, from: string, body: Uint8Array): ReduceResult {
  const self = state.self!;
  let a: Announcement;
  try {
    a = openSignedAnnouncement(body, config.membershipMacKey, config.roomId);
  } catch (e) {
    const code: E2eeErrorCode = isE2eeError(e) ? e.code : 'malformed';
    return { state, effects: [{ kind: 'alert', reason: alertFor(code), memberId: from }] };
  }
  if (a.memberId !== from) return { state, effects: [{ kind: 'alert', reason: 'member-id-mismatch', memberId: from, detail: a.memberId }] };
  if (a.memberId === self.memberId) {
    if (equalBytes(a.sessionPublicKey, self.sessionPublicKey) && equalBytes(a.identityPublicKey, self.identityPublicKey)) return { state, effects: [] };
    return { state, effects: [{ kind: 'alert', reason: 'impersonation', memberId: from }] };
  }
  if (state.departed.has(sessionTag(a.sessionPublicKey))) {
    return { state, effects: [{ kind: 'alert', reason: 'replayed-announcement', memberId: from }] };
  }
  const known = state.members.get(a.memberId);
  if (known !== undefined) {
    if (equalBytes(known.sessionPublicKey, a.sessionPublicKey) && equalBytes(known.identityPublicKey, a.identityPublicKey) && equalBytes(known.joinNonce, a.joinNonce)) {
      return { state, effects: [] }; // duplicate
    }
    return { state, effects: [{ kind: 'alert', reason: 'session-changed', memberId: from }] };
  }
  const preexisting =
    state.preexisting.has(a.memberId) && now - state.joinedAt <= (config.preexistingWindowMs ?? DEFAULT_PREEXISTING_WINDOW_MS);
  const rec: MemberRecord = {
    memberId: a.memberId,
    identityPublicKey: a.identityPublicKey,
    sessionPublicKey: a.sessionPublicKey,
    joinNonce: a.joinNonce,
    fingerprint: fingerprint(a.identityPublicKey),
    verifiedAt: now,
    preexisting,
  };
  const members = new Map(state.members);
  members.set(a.memberId, rec);
  const pre = new Set(state.preexisting);
  pre.delete(a.memberId);
  const indices = assignSenderIndices([self.memberId, ...members.keys()]);
  const myIdxChanged = indices.get(self.memberId) !== state.senderIndices.get(self.memberId);
  const base: MembershipState = { ...state, members, preexisting: pre, senderIndices: indices };
  const effects: MembershipEffect[] = [...indexEffects(state.senderIndices, indices, self.memberId)];
  if (!preexisting) effects.push({ kind: 'announce', to: a.memberId });
  if (myIdxChanged || state.ratchetsSinceFresh >= (config.maxRatchetsPerKey ?? DEFAULT_MAX_RATCHETS_PER_KEY)) {
    // Our KID sender index moved (collision chain), or another ratchet could leave receivers behind / wrap the
    // KID step: a fresh key for everyone, the joiner included.
    const r = freshRekey(base, now, indices);
    return { state: r.state, effects: [...effects, ...r.effects, { kind: 'roster-changed' }] };
  }
  if (preexisting) {
    effects.push({ kind: 'send-envelopes', to: [a.memberId], epoch: state.sendEpoch });
    return { state: base, effects: [...effects, { kind: 'roster-changed' }] };
  }
  const epoch = state.sendEpoch + 1;
  effects.push(
    { kind: 'switch-send-key', mode: 'ratchet', epoch, senderIndex: indices.get(self.memberId)! },
    { kind: 'send-envelopes', to: [a.memberId], epoch },
    { kind: 'request-keyframe' },
    { kind: 'roster-changed' },
  );
  return { state: { ...base, sendEpoch: epoch, ratchetsSinceFresh: state.ratchetsSinceFresh + 1 }, effects };
}
