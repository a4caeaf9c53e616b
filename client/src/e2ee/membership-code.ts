/**
 * Room-code rounds (issue 13 §3): a hash commitment before the reveal, as ZRTP does for its SAS (RFC 6189 §4.4.1:
 * the initiator's hash commitment "allows the responder to be sure that the initiator did not choose its value
 * after seeing the responder's").
 *
 * Every roster (self + members that proved liveness) is one round. When our roster changes we start a new round:
 * the driver draws a fresh 32-byte value v, broadcasts only its signed commitment C = H(room, us, round, R, v)
 * (codes.ts `roomCodeCommitment`, R = `rosterHash(roster)`), and feeds C back. We reveal v only once we hold a
 * commitment for the same R from every member of our roster, and those commitments are then fixed for the round:
 * the code of the round is H(R, every member's v) (codes.ts `roomCode`) over exactly the values that open them,
 * shown once all did. A commitment that arrives after our value is public never counts for the round (else a fake
 * member could re-commit to a value ground against ours). Until then the code is pending (`currentRoomCode` null).
 *
 * Why that holds against a man in the middle (docs/protocol.md B §10 states and argues the bound): an attacker that
 * gives two members different rosters R1 ≠ R2 must fix its fake members' values (by commitment) before each honest
 * member reveals, and each honest member's fresh value enters its own code; so whichever of the two codes is fixed
 * last is uniform given everything the attacker chose: it equals the other with probability 2^-36 (emoji) or
 * 10^-12 (digits) per round, and a new round needs a roster change, which members see.
 *
 * A joiner holds its first commitment while members listed at its join have not announced yet (within the
 * preexisting window), so a join costs each member one commitment and one reveal, not one per admission.
 *
 * Pure functions over the reducer state; no secrets (our value stays in the driver until it is revealed).
 *
 * @module
 */
import { equalBytes } from './bytes.ts';
import { roomCode, roomCodeCommitment, rosterHash, type RoomCode } from './codes.ts';
import { decodeCodeReveal, openCodeCommit, type CodeCommit } from './membership-messages.ts';
import {
  DEFAULT_PREEXISTING_WINDOW_MS,
  rejected,
  roster,
  type CodeReveal,
  type CodeRoundState,
  type MembershipConfig,
  type MembershipEffect,
  type MembershipState,
  type ReduceResult,
} from './membership-state.ts';

/** R of the roster, memoised per (members map, self) (the reducer replaces the map on every change). */
const rosterHashes = new WeakMap<MembershipState['members'], { self: MembershipState['self']; R: Uint8Array }>();
function currentRosterHash(state: MembershipState): Uint8Array {
  const hit = rosterHashes.get(state.members);
  if (hit !== undefined && hit.self === state.self) return hit.R;
  const R = rosterHash(roster(state));
  rosterHashes.set(state.members, { self: state.self, R });
  return R;
}

/** The room code of the current round, or null while it is pending. */
export function currentRoomCode(state: MembershipState): RoomCode | null {
  return state.code.code;
}

/** A record of whose commitments and reveals we can check: members and answered announcements. */
function signerOf(state: MembershipState, id: string): { memberId: string; identityPublicKey: Uint8Array; sessionPublicKey: Uint8Array } | undefined {
  return state.members.get(id) ?? state.pending.get(id)?.record;
}

/** A signed room-code commitment from `from`: kept if it is its newest. */
export function onCodeCommit(config: MembershipConfig, state: MembershipState, from: string, body: Uint8Array): ReduceResult {
  const signer = signerOf(state, from);
  if (signer === undefined) return rejected(state, 'unknown-sender', from, 'code-commit');
  let c: CodeCommit;
  try {
    c = openCodeCommit(body, config.roomId, signer);
  } catch (e) {
    return rejected(state, 'bad-room-code', from, e instanceof Error ? e.message : 'malformed');
  }
  const prev = state.code.commits.get(from);
  if (prev !== undefined && c.round <= prev.round) return { state, effects: [] }; // replayed or reordered
  const commits = new Map(state.code.commits);
  commits.set(from, c);
  const reveals = new Map(state.code.reveals);
  // its value for an older commitment is stale, unless that commitment is fixed in our round
  if (reveals.get(from)?.round !== state.code.fixed?.get(from)?.round) reveals.delete(from);
  return { state: { ...state, code: { ...state.code, commits, reveals } }, effects: [] };
}

/** A revealed value from `from`: kept if it opens its newest commitment or the one fixed in our round. */
export function onCodeReveal(config: MembershipConfig, state: MembershipState, from: string, body: Uint8Array): ReduceResult {
  if (signerOf(state, from) === undefined) return rejected(state, 'unknown-sender', from, 'code-reveal');
  let r: CodeReveal;
  try {
    r = decodeCodeReveal(body);
  } catch {
    return rejected(state, 'malformed', from, 'code-reveal');
  }
  const c = [state.code.fixed?.get(from), state.code.commits.get(from)].find((x) => x?.round === r.round);
  if (c === undefined || state.code.reveals.get(from)?.round === r.round) return { state, effects: [] }; // stale, early or repeated
  if (!equalBytes(roomCodeCommitment(config.roomId, from, r.round, c.rosterHash, r.value), c.commitment)) {
    return rejected(state, 'bad-room-code', from, 'the revealed value does not open its commitment');
  }
  const reveals = new Map(state.code.reveals);
  reveals.set(from, r);
  return { state: { ...state, code: { ...state.code, reveals } }, effects: [] };
}

/** The driver sent our commitment (`code-committed`) or our value (`code-revealed`) for `round`. */
export function onOwnCode(state: MembershipState, round: number, own: { commit: CodeCommit } | { reveal: CodeReveal }): MembershipState {
  const self = state.self!;
  if (round !== state.code.round) return state; // a round that ended meanwhile
  if ('commit' in own) {
    const commits = new Map(state.code.commits);
    commits.set(self.memberId, own.commit);
    return { ...state, code: { ...state.code, commits } };
  }
  const reveals = new Map(state.code.reveals);
  reveals.set(self.memberId, own.reveal);
  return { ...state, code: { ...state.code, reveals } };
}

/** While members listed at our join may still announce (and make our roster change again), we hold our commitment. */
function holdCommit(config: MembershipConfig, state: MembershipState, now: number): boolean {
  return state.preexisting.size > 0 && now - state.joinedAt <= (config.preexistingWindowMs ?? DEFAULT_PREEXISTING_WINDOW_MS);
}

/**
 * Runs after every event: starts a round when the roster changed, commits, reveals once every commitment is in,
 * and completes the code once every value is.
 */
export function codeStep(config: MembershipConfig, state: MembershipState, now: number): ReduceResult {
  const self = state.self;
  if (self === undefined) return { state, effects: [] };
  const ids = [self.memberId, ...state.members.keys()];
  const R = currentRosterHash(state);
  const effects: MembershipEffect[] = [];
  let code: CodeRoundState = state.code;
  if (code.rosterHash === undefined || !equalBytes(code.rosterHash, R)) {
    // A new roster, a new round: our value of the last one may be public, and nobody's old values count.
    const keep = new Set([...state.members.keys(), ...state.pending.keys()]);
    const commits = new Map([...code.commits].filter(([id]) => keep.has(id)));
    const reveals = new Map([...code.reveals].filter(([id]) => keep.has(id)));
    if (code.code !== null) effects.push({ kind: 'room-code-changed' });
    code = { round: code.round + 1, rosterHash: R, committing: false, fixed: null, commits, reveals, code: null };
  }
  if (!code.committing && !holdCommit(config, state, now)) {
    effects.push({ kind: 'commit-room-code', round: code.round, rosterHash: R });
    code = { ...code, committing: true };
  }
  const committedFor = (id: string): CodeCommit | undefined => {
    const c = code.commits.get(id);
    return c !== undefined && equalBytes(c.rosterHash, R) && (id !== self.memberId || c.round === code.round) ? c : undefined;
  };
  if (code.committing && code.fixed === null && ids.every((id) => committedFor(id) !== undefined)) {
    effects.push({ kind: 'reveal-room-code', round: code.round });
    code = { ...code, fixed: new Map(ids.map((id) => [id, committedFor(id)!])) };
  }
  const fixed = code.fixed;
  if (code.code === null && fixed !== null) {
    const values = ids.map((id) => {
      const r = code.reveals.get(id);
      return r !== undefined && r.round === fixed.get(id)?.round ? { memberId: id, value: r.value } : undefined;
    });
    if (values.every((v) => v !== undefined)) {
      code = { ...code, code: roomCode(R, values) };
      effects.push({ kind: 'room-code-changed' });
    }
  }
  return { state: code === state.code ? state : { ...state, code }, effects };
}
