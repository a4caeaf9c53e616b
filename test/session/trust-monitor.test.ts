/**
 * Trust monitor (client/src/session/trust-monitor.ts): the key state and verification each member shows, the alerts
 * they imply, and the bypass detector. Pure functions fed with numbers, as the call feeds them from getStats.
 */
import { describe, expect, it } from 'vitest';
import { fingerprint } from '../../client/src/e2ee/identity.ts';
import { rawIdentity } from '../../client/src/e2ee/identity-key.ts';
import type { MemberRecord } from '../../client/src/e2ee/membership.ts';
import { emptyVerifications, markVerified } from '../../client/src/e2ee/verification.ts';
import {
  BYPASS_SLACK_BYTES,
  BYPASS_STRIKES,
  BypassDetector,
  BYPASS_STALE_ROUNDS,
  CREATOR_GRACE_MS,
  emptyMemory,
  keyAlert,
  memberViews,
  ROSTER_GRACE_MS,
  type MemberInput,
  type ViewsInput,
} from '../../client/src/session/trust-monitor.ts';
import type { SenderCount } from '../../client/src/transform/protocol.ts';

function record(memberId: string): MemberRecord {
  const id = rawIdentity();
  return {
    memberId,
    identityPublicKey: id.publicKey,
    sessionPublicKey: new Uint8Array(1216),
    joinNonce: new Uint8Array(16),
    fingerprint: fingerprint(id.publicKey),
    verifiedAt: 0,
    preexisting: false,
  };
}

const member = (peerId: string, over: Partial<MemberInput> = {}): MemberInput => ({ peerId, name: peerId, listed: true, record: record(peerId), senderIndex: 7, keyed: true, ...over });
const counts = (opened: number, auth: number): SenderCount[] => [{ senderIndex: 7, opened, buffered: 0, dropped: { auth }, keyed: true }];
const input = (members: MemberInput[], senders: SenderCount[] = [], now = 0, over: Partial<ViewsInput> = {}): ViewsInput => ({
  members,
  senders,
  verifications: emptyVerifications(),
  creatorFingerprint: undefined,
  now,
  ...over,
});

describe('memberViews', () => {
  it('key state follows the keys: waiting until keyed, then encrypted; verified only for a verified fingerprint', () => {
    const bob = member('bob', { keyed: false });
    expect(memberViews(input([bob]), emptyMemory()).members[0]!.keyState).toBe('waiting');
    const keyed = { ...bob, keyed: true };
    expect(memberViews(input([keyed]), emptyMemory()).members[0]!.keyState).toBe('encrypted');
    const ver = markVerified(emptyVerifications(), 'bob', keyed.record!.fingerprint, 1);
    const v = memberViews(input([keyed], [], 0, { verifications: ver }), emptyMemory()).members[0]!;
    expect([v.keyState, v.verification]).toEqual(['verified', 'verified']);
  });

  it('a verified name with another identity key shows "changed" and returns an identity-changed alert (it raises nothing itself)', () => {
    const bob = member('bob');
    const ver = markVerified(emptyVerifications(), 'bob', fingerprint(rawIdentity().publicKey), 1);
    const r = memberViews(input([bob], [], 0, { verifications: ver }), emptyMemory());
    expect(r.members[0]!.verification).toBe('changed');
    expect(r.members[0]!.keyState).toBe('encrypted');
    expect(r.alerts.map((a) => a.kind)).toEqual(['identity-changed']);
  });

  it('the creator named in the invite is shown as verified', () => {
    const bob = member('bob');
    const r = memberViews(input([bob], [], 0, { creatorFingerprint: bob.record!.fingerprint }), emptyMemory());
    expect(r.members[0]!.verification).toBe('creator');
    expect(r.members[0]!.keyState).toBe('verified');
  });

  it('frames that stop opening while auth failures rise turn the member to "failing" with an alert', () => {
    const bob = member('bob');
    const first = memberViews(input([bob], counts(100, 0)), emptyMemory());
    expect(first.members[0]!.keyState).toBe('encrypted');
    const second = memberViews(input([bob], counts(100, 5)), first.memory);
    expect(second.members[0]!.keyState).toBe('failing');
    expect(second.members[0]!.drops).toEqual({ auth: 5 });
    expect(second.alerts.map((a) => a.kind)).toEqual(['decrypt-failing']);
    // Opening again: back to encrypted, no alert.
    const third = memberViews(input([bob], counts(150, 5)), second.memory);
    expect(third.members[0]!.keyState).toBe('encrypted');
    expect(third.alerts).toEqual([]);
  });

  it('a listed member that never joins the key exchange raises a roster alert after the grace period, not before', () => {
    const ghost = member('ghost', { record: undefined, keyed: false, senderIndex: undefined });
    const t0 = memberViews(input([ghost], [], 1000), emptyMemory());
    expect(t0.alerts).toEqual([]);
    const early = memberViews(input([ghost], [], 1000 + ROSTER_GRACE_MS), t0.memory);
    expect(early.alerts).toEqual([]);
    const late = memberViews(input([ghost], [], 1001 + ROSTER_GRACE_MS), early.memory);
    expect(late.alerts.map((a) => a.kind)).toEqual(['roster']);
  });
});

describe('the creator named in the invite', () => {
  it('members present but none of them the creator: a notice after the grace period, not before', () => {
    const bob = member('bob');
    const creatorFingerprint = fingerprint(rawIdentity().publicKey);
    const t0 = memberViews(input([bob], [], 1000, { creatorFingerprint }), emptyMemory());
    expect(t0.alerts).toEqual([]);
    const early = memberViews(input([bob], [], 1000 + CREATOR_GRACE_MS, { creatorFingerprint }), t0.memory);
    expect(early.alerts).toEqual([]);
    const late = memberViews(input([bob], [], 1001 + CREATOR_GRACE_MS, { creatorFingerprint }), early.memory);
    expect(late.alerts.map((a) => a.kind)).toEqual(['creator-absent']);
    // The creator arrives: no more notice.
    const alice = member('alice');
    const withCreator = memberViews(input([bob, alice], [], 2000 + CREATOR_GRACE_MS, { creatorFingerprint: alice.record!.fingerprint }), late.memory);
    expect(withCreator.alerts).toEqual([]);
  });

  it('someone using the creator’s display name with another identity key is called out', () => {
    const alice = member('alice', { name: 'Alice' });
    const seen = memberViews(input([alice], [], 0, { creatorFingerprint: alice.record!.fingerprint }), emptyMemory());
    expect(seen.members[0]!.verification).toBe('creator');
    const impostor = member('alice-2', { name: 'alice' });
    const r = memberViews(input([impostor], [], 1, { creatorFingerprint: alice.record!.fingerprint }), seen.memory);
    expect(r.alerts.map((a) => a.message)).toEqual(['alice uses the name of the person who created this meeting, but not their identity key.']);
  });
});

describe('keyAlert', () => {
  it('maps each reducer reason to the alert the user sees', () => {
    expect(keyAlert('bad-mac', 'Bob', undefined)?.kind).toBe('injected-member');
    expect(keyAlert('session-changed', 'Bob', undefined)?.kind).toBe('identity-changed');
    expect(keyAlert('impersonation', 'Bob', undefined)?.kind).toBe('identity-changed');
    expect(keyAlert('replayed-announcement', 'Bob', undefined)?.kind).toBe('roster');
    expect(keyAlert('internal-error', 'Bob', 'x')?.kind).toBe('internal');
    expect(keyAlert('not-joined', 'Bob', undefined)).toBeNull();
    expect(keyAlert('stale-epoch', 'Bob', 'd')).toEqual({ kind: 'key-exchange', message: 'A key message was rejected (stale-epoch: d).' });
  });
});

describe('BypassDetector', () => {
  it('fires after BYPASS_STRIKES periods of bytes without sealed frames, not before', () => {
    const d = new BypassDetector();
    let bytes = 0;
    expect(d.observe('p', bytes, 10)).toBe(false);
    const verdicts: boolean[] = [];
    for (let i = 0; i < BYPASS_STRIKES; i++) {
      bytes += BYPASS_SLACK_BYTES + 1;
      verdicts.push(d.observe('p', bytes, 10));
    }
    expect(verdicts).toEqual([...Array(BYPASS_STRIKES - 1).fill(false), true]);
  });

  it('sealed frames rising with the bytes, or bytes within the slack, never fire', () => {
    const d = new BypassDetector();
    let bytes = 0;
    let sealed = 0;
    d.observe('p', bytes, sealed);
    for (let i = 0; i < 20; i++) {
      bytes += 50_000;
      sealed += 30;
      expect(d.observe('p', bytes, sealed)).toBe(false);
    }
    for (let i = 0; i < 20; i++) {
      bytes += BYPASS_SLACK_BYTES;
      expect(d.observe('p', bytes, sealed)).toBe(false);
    }
  });

  it('stale counts (the worker answered late) between fresh ones never fire while frames are sealed', () => {
    const d = new BypassDetector();
    let bytes = 0;
    let sealed = 0;
    d.observe('p', bytes, sealed);
    for (let i = 0; i < 30; i++) {
      bytes += 50_000;
      sealed += 30;
      // Two of every three periods stale: below BYPASS_STALE_ROUNDS in a row.
      expect(d.observe('p', bytes, i % 3 === 2 ? sealed : null)).toBe(false);
    }
  });

  it('a worker that never answers while bytes go out still fires: BYPASS_STALE_ROUNDS stale periods count as one strike', () => {
    const d = new BypassDetector();
    let bytes = 0;
    d.observe('p', bytes, 10);
    const verdicts: boolean[] = [];
    for (let i = 0; i < BYPASS_STALE_ROUNDS * BYPASS_STRIKES; i++) {
      bytes += BYPASS_SLACK_BYTES + 1;
      verdicts.push(d.observe('p', bytes, null));
    }
    expect(verdicts).toEqual([...Array(BYPASS_STALE_ROUNDS * BYPASS_STRIKES - 1).fill(false), true]);
    // Not one fresh count from the start: the same (the first period is a stale one too).
    const e = new BypassDetector();
    const first: boolean[] = [];
    for (let i = 0; i < BYPASS_STALE_ROUNDS * BYPASS_STRIKES; i++) first.push(e.observe('q', i * 100_000, null));
    expect(first).toEqual([...Array(BYPASS_STALE_ROUNDS * BYPASS_STRIKES - 1).fill(false), true]);
  });

  it('one clean period resets the strikes', () => {
    const d = new BypassDetector();
    d.observe('p', 0, 0);
    expect(d.observe('p', 10_000, 0)).toBe(false);
    expect(d.observe('p', 20_000, 5)).toBe(false);
    expect(d.observe('p', 30_000, 5)).toBe(false);
    expect(d.observe('p', 40_000, 5)).toBe(true);
  });
});
