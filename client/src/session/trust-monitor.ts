/**
 * Trust monitor: what the UI shows about each member's keys and identity, and the alerts that follow from it.
 * Pure functions over numbers and records (the caller reads `getStats` and the worker's counts):
 * - `memberViews(input, memory)`: the people list — everyone the server lists and everyone the key exchange admitted
 *   (whom we seal keys to) — with verification and key state, plus the alerts it implies (identity changed, decryption
 *   failing, a listed member that never joined the key exchange, an admitted member the server does not list);
 * - `keyAlert(reason, who, detail)`: the alert for a key-exchange rejection from membership.ts;
 * - `BypassDetector`: bytes on the wire must come with sealed frames.
 *
 * Building a view never raises anything by itself: alerts are returned, the caller raises them.
 *
 * @module
 */
import { hex } from '@scure/base';
import { fingerprint as identityFingerprint } from '../e2ee/identity.ts';
import type { MemberRecord } from '../e2ee/membership.ts';
import { check as checkVerification, isCreator, type Verifications } from '../e2ee/verification.ts';
import type { SenderCount } from '../transform/protocol.ts';

export type VerificationState = 'verified' | 'unverified' | 'changed' | 'creator';
export type MemberKeyState = 'waiting' | 'encrypted' | 'verified' | 'failing';
export type AlertKind =
  | 'misattributed'
  | 'creator-absent'
  | 'injected-member'
  | 'identity-changed'
  | 'bypass'
  | 'roster'
  | 'decrypt-failing'
  | 'codec-refused'
  | 'key-exchange'
  | 'internal';

export interface TrustAlert {
  kind: AlertKind;
  message: string;
}

/**
 * Where a member appears: in the server's list and the key exchange (`both`), only in the server's list (it gets no
 * keys), or only in the key exchange (`keys-only`: it holds our keys while the server does not show it).
 */
export type Presence = 'both' | 'server-only' | 'keys-only';

export interface E2eeMember {
  peerId: string;
  name?: string;
  presence: Presence;
  /** Identity fingerprint, shown as hex groups (empty until the member's announcement verified). */
  fingerprint: string;
  verification: VerificationState;
  keyState: MemberKeyState;
  /** Frames of this member dropped by reason (auth, unknown-kid, expired, …). */
  drops: Record<string, number>;
  /** Frames of this member opened. */
  opened: number;
}

/** A listed member that has not joined the key exchange after this long raises a roster alert. */
export const ROSTER_GRACE_MS = 5_000;
/** An invite naming its creator, with members present but none of them the creator, after this long: say so. */
export const CREATOR_GRACE_MS = 10_000;
/**
 * A member admitted by the key exchange that the server does not list after this long raises a roster alert. The
 * server announces a join before the joiner can relay anything, so an honest server lists it first; the grace only
 * covers our own event processing.
 */
export const UNLISTED_GRACE_MS = 2_000;
/** Drop reasons that mean "frames arrive under this sender's key and do not open" (not merely early or late). */
const BAD_REASONS = ['auth', 'expired', 'overflow', 'malformed'] as const;

/** Fingerprint as shown: the first 20 bytes as 40 hex digits in groups of 4. */
export const fingerprintDisplay = (fp: Uint8Array): string => hex.encode(fp).slice(0, 40).replace(/(.{4})(?=.)/g, '$1 ');
export const identityDisplay = (identityPublicKey: Uint8Array): string => fingerprintDisplay(identityFingerprint(identityPublicKey));

export interface MemberInput {
  peerId: string;
  name: string | undefined;
  /** The server lists it. */
  listed: boolean;
  /** Verified key-exchange record; undefined: no valid announcement yet. */
  record: MemberRecord | undefined;
  senderIndex: number | undefined;
  /** Its receive key arrived. */
  keyed: boolean;
}

export interface ViewsInput {
  members: readonly MemberInput[];
  /** The worker's per-sender receive counts. */
  senders: readonly SenderCount[];
  verifications: Verifications | null;
  creatorFingerprint: Uint8Array | undefined;
  now: number;
}

/** What memberViews remembers between calls (returned anew; the input is not changed). */
export interface MonitorMemory {
  /** Per member: frames opened and bad drops at the last call (a rise in bad with no rise in opened = failing). */
  readonly last: ReadonlyMap<string, { opened: number; bad: number }>;
  /** Per member: when it was first listed without a key-exchange record. */
  readonly unannouncedSince: ReadonlyMap<string, number>;
  /** Per member: when it was first admitted by the key exchange without being listed. */
  readonly unlistedSince: ReadonlyMap<string, number>;
  /** The display name the invite's creator (matched by fingerprint) used in this meeting, once seen. */
  readonly creatorName?: string | undefined;
  /** Since when members are in the key exchange but none is the creator the invite names. */
  readonly creatorAbsentSince?: number | undefined;
}

export const emptyMemory = (): MonitorMemory => ({ last: new Map(), unannouncedSince: new Map(), unlistedSince: new Map() });

/** Keeps the first time a condition was seen while it holds; true once it has held longer than `grace`. */
function heldFor(since: ReadonlyMap<string, number>, next: Map<string, number>, id: string, now: number, grace: number): boolean {
  const t = since.get(id) ?? now;
  next.set(id, t);
  return now - t > grace;
}

function verificationOf(m: MemberInput, input: ViewsInput): VerificationState {
  const rec = m.record;
  if (!rec) return 'unverified';
  if (isCreator(input.creatorFingerprint, rec.identityPublicKey)) return 'creator';
  if (!m.name || !input.verifications) return 'unverified';
  try {
    return checkVerification(input.verifications, m.name, rec.fingerprint).status;
  } catch {
    return 'unverified';
  }
}

export function memberViews(input: ViewsInput, memory: MonitorMemory): { members: E2eeMember[]; alerts: TrustAlert[]; memory: MonitorMemory } {
  const senders = new Map(input.senders.map((s) => [s.senderIndex, s]));
  const last = new Map<string, { opened: number; bad: number }>();
  const unannouncedSince = new Map<string, number>();
  const unlistedSince = new Map<string, number>();
  const alerts: TrustAlert[] = [];
  const members = input.members.map((m): E2eeMember => {
    const display = m.name ?? 'Participant';
    const verification = verificationOf(m, input);
    if (verification === 'changed') alerts.push({ kind: 'identity-changed', message: `${display}'s identity key is not the one you verified before.` });
    const presence: Presence = !m.record ? 'server-only' : m.listed ? 'both' : 'keys-only';
    if (presence === 'server-only' && heldFor(memory.unannouncedSince, unannouncedSince, m.peerId, input.now, ROSTER_GRACE_MS)) {
      alerts.push({ kind: 'roster', message: `A participant the server lists (${m.peerId.slice(0, 8)}) has not joined the key exchange: it receives no keys.` });
    }
    if (presence === 'keys-only' && heldFor(memory.unlistedSince, unlistedSince, m.peerId, input.now, UNLISTED_GRACE_MS)) {
      alerts.push({ kind: 'roster', message: `${display} holds the meeting keys, but the server does not show them in the meeting: someone may be listening without being seen.` });
    }
    const sc = m.senderIndex !== undefined ? senders.get(m.senderIndex) : undefined;
    const drops: Record<string, number> = {};
    for (const [k, v] of Object.entries(sc?.dropped ?? {})) if (v > 0) drops[k] = v;
    const bad = BAD_REASONS.reduce((n, r) => n + (sc?.dropped[r] ?? 0), 0);
    const opened = sc?.opened ?? 0;
    const prev = memory.last.get(m.peerId);
    const failing = !!prev && bad > prev.bad && opened === prev.opened;
    last.set(m.peerId, { opened, bad });
    if (failing) alerts.push({ kind: 'decrypt-failing', message: `Media from ${display} does not decrypt (frames are dropped).` });
    const keyState: MemberKeyState = !m.keyed ? 'waiting' : failing ? 'failing' : verification === 'verified' || verification === 'creator' ? 'verified' : 'encrypted';
    return {
      peerId: m.peerId,
      ...(m.name ? { name: m.name } : {}),
      presence,
      fingerprint: m.record ? fingerprintDisplay(m.record.fingerprint) : '',
      verification,
      keyState,
      drops,
      opened,
    };
  });
  const creator = creatorChecks(input, members, memory, alerts);
  return { members, alerts, memory: { last, unannouncedSince, unlistedSince, ...creator } };
}

/**
 * When the invite names its creator (by fingerprint): say so if members are here but none of them is the creator, and
 * if someone uses the creator's display name with another identity key.
 */
function creatorChecks(
  input: ViewsInput,
  members: readonly E2eeMember[],
  memory: MonitorMemory,
  alerts: TrustAlert[],
): { creatorName?: string | undefined; creatorAbsentSince?: number | undefined } {
  if (input.creatorFingerprint === undefined) return {};
  const creator = members.find((m) => m.verification === 'creator');
  const creatorName = creator?.name ?? memory.creatorName;
  if (creatorName !== undefined) {
    for (const m of members) {
      if (m.verification !== 'creator' && m.name !== undefined && m.name.toLowerCase() === creatorName.toLowerCase() && m.fingerprint !== '') {
        alerts.push({ kind: 'identity-changed', message: `${m.name} uses the name of the person who created this meeting, but not their identity key.` });
      }
    }
  }
  const inExchange = members.some((m) => m.fingerprint !== '');
  let creatorAbsentSince: number | undefined;
  if (!creator && inExchange) {
    creatorAbsentSince = memory.creatorAbsentSince ?? input.now;
    if (input.now - creatorAbsentSince > CREATOR_GRACE_MS) {
      alerts.push({ kind: 'creator-absent', message: 'Nobody here has the identity key of the person who created your invite link. If they should be here, ask them whether the link is really theirs.' });
    }
  }
  return { creatorName, creatorAbsentSince };
}

/** The alert for a key-exchange problem the membership reducer reported (null: nothing to show). */
export function keyAlert(reason: string, who: string, detail: string | undefined): TrustAlert | null {
  switch (reason) {
    case 'bad-mac':
      return { kind: 'injected-member', message: `${who} tried to join the key exchange without the invite key. It gets no keys and cannot see or hear anyone.` };
    case 'session-changed':
    case 'impersonation':
      return { kind: 'identity-changed', message: `${who} presented a different identity or session key; it was ignored.` };
    case 'replayed-announcement':
      return { kind: 'roster', message: 'The server replayed the key announcement of someone who already left; it was refused.' };
    case 'not-live':
      return {
        kind: 'roster',
        message: `${who} announced itself but did not prove it is in this meeting now (a replayed old announcement?): it was refused and gets no keys.`,
      };
    case 'internal-error':
      return { kind: 'internal', message: `Key handling failed (${detail ?? 'error'}); the next key rotation repairs it.` };
    case 'send-key-failed':
      return {
        kind: 'internal',
        message: `Our media key could not be switched (${detail ?? 'error'}). Nothing more is sent under the old key: our audio and video stop until we rejoin the meeting with a fresh key.`,
      };
    case 'not-joined':
      return null;
    default:
      return { kind: 'key-exchange', message: `A key message was rejected (${reason}${detail ? `: ${detail}` : ''}).` };
  }
}

/** The alert for relay traffic whose outer envelope did not open under the invite's metadata key. */
export function foreignAlert(who: string): TrustAlert {
  return { kind: 'injected-member', message: `${who} sent key-exchange traffic without the invite key. It gets no keys and cannot see or hear anyone.` };
}

/** One receive pipeline's counts as the worker reports them (transform/protocol.ts FrameCount). */
export interface PipelineCounts {
  key: string;
  direction: 'send' | 'recv';
  opened: number;
  dropped: Partial<Record<string, number>>;
}

export interface AttributionState {
  opened: number;
  wrong: number;
  misattributed: boolean;
}

/**
 * Media attribution per receive pipeline (transform/attribution.ts drops frames whose KID names another sender than
 * the member the pipeline carries): `wrong-sender` drops rising while nothing opens means the server routed someone
 * else's media into this tile. Frames opening again clear it. Returns the next state and the pipelines that just
 * became misattributed (to raise an alert once).
 */
export function attribution(prev: ReadonlyMap<string, AttributionState>, counts: Iterable<PipelineCounts>): { next: Map<string, AttributionState>; flagged: string[] } {
  const next = new Map<string, AttributionState>();
  const flagged: string[] = [];
  for (const c of counts) {
    if (c.direction !== 'recv') continue;
    const wrong = c.dropped['wrong-sender'] ?? 0;
    const p = prev.get(c.key) ?? { opened: 0, wrong: 0, misattributed: false };
    const misattributed = c.opened > p.opened ? false : wrong > p.wrong ? true : p.misattributed;
    if (misattributed && !p.misattributed) flagged.push(c.key);
    next.set(c.key, { opened: c.opened, wrong, misattributed });
  }
  return { next, flagged };
}

/** Bytes a producer may send with no sealed frame in one period before it counts (RTX of earlier frames, probing). */
export const BYPASS_SLACK_BYTES = 4000;
/** Periods in a row with bytes but no sealed frame before a producer is called a bypass. */
export const BYPASS_STRIKES = 2;
/**
 * Periods in a row without fresh counts (the transform worker did not answer) that count as one period with nothing
 * sealed: a loaded machine may delay a report, but a worker that never answers while bytes go out still fails closed.
 */
export const BYPASS_STALE_ROUNDS = 3;

/**
 * Bypass detector: fed every period with each producer's outbound RTP bytes and the frames the worker sealed for
 * it. Bytes rising by more than the slack while nothing was sealed, BYPASS_STRIKES periods in a row, means frames
 * reach the wire without our transform. `sealed: null` = the counts are stale this period (the worker did not answer
 * in time): such a period proves nothing and is left out (the next fresh one compares over the longer window), but
 * BYPASS_STALE_ROUNDS of them in a row count as one period in which nothing was sealed.
 */
export class BypassDetector {
  readonly #last = new Map<string, { bytes: number; sealed: number; strikes: number; stale: number }>();

  /** True when `producerId` is bypassing the transform. */
  observe(producerId: string, bytes: number, sealed: number | null): boolean {
    const last = this.#last.get(producerId);
    if (!last) {
      // No fresh count yet: nothing sealed so far, as far as we know.
      this.#last.set(producerId, { bytes, sealed: sealed ?? 0, strikes: 0, stale: sealed === null ? 1 : 0 });
      return false;
    }
    if (sealed === null && last.stale + 1 < BYPASS_STALE_ROUNDS) {
      this.#last.set(producerId, { ...last, stale: last.stale + 1 });
      return false;
    }
    const now = sealed ?? last.sealed;
    const suspicious = bytes - last.bytes > BYPASS_SLACK_BYTES && now === last.sealed;
    const strikes = suspicious ? last.strikes + 1 : 0;
    this.#last.set(producerId, { bytes, sealed: now, strikes, stale: 0 });
    return strikes >= BYPASS_STRIKES;
  }

  forget(producerId: string): void {
    this.#last.delete(producerId);
  }

  clear(): void {
    this.#last.clear();
  }
}
