/**
 * Adversary: replayed announcements never become members (issue 13 §4). An announcement is signed once per join
 * and the server keeps every one it relayed; before any key is sealed to a member it must prove it is live in THIS
 * session (it signs our fresh join nonce, bound to room, both member ids and both session keys). The server replays
 * yesterday's announcement (and everything else the member sent) to a new joiner, and a whole meeting's worth of
 * messages to everyone after a forced rejoin: no key is sealed to the ghost, it is never a member, and it is flagged.
 *
 * Real KeyAgents and reducers over the scriptable relay (relay-sim.ts), real E2eeSessions over the in-memory relay
 * (session-sim.ts), and the reducer alone for the message-level cases.
 */
import { describe, expect, it } from 'vitest';
import { decodeKeyBatch } from '../../client/src/e2ee/envelope.ts';
import { DEFAULT_LIVENESS_TIMEOUT_MS, reduce, roster } from '../../client/src/e2ee/membership.ts';
import { decodeRelay, RELAY_KIND } from '../../client/src/e2ee/relay-framing.ts';
import { openRelay } from '../../client/src/e2ee/relay-envelope.ts';
import { keyAlert } from '../../client/src/session/trust-monitor.ts';
import { SessionRoom } from '../session/session-sim.ts';
import { reducerKit } from './reducer-kit.ts';
import { INVITE_KEYS, ROOM, Sim, type Packet, type SimMember } from './relay-sim.ts';

const ids = (m: SimMember): string[] => roster(m.agent.state).map((r) => r.memberId).sort();
const alertsOf = (m: SimMember): string[] => m.alerts.map((a) => `${a.reason}:${a.memberId ?? ''}${a.detail !== undefined ? `:${a.detail}` : ''}`);
const batchRecipients = (tap: readonly Packet[]): string[] =>
  tap.filter((p) => p.kind === 'key-batch').flatMap((p) => decodeKeyBatch(decodeRelay(p.bytes).body).entries.map((e) => e.recipientMemberId));
const TIMEOUT_ALERT = `no liveness proof within ${DEFAULT_LIVENESS_TIMEOUT_MS} ms`;

describe('property: a replayed announcement never becomes a member (relay-sim)', () => {
  it("yesterday's announcement replayed to a new joiner: answered, never admitted, no key sealed to it, flagged", async () => {
    // Yesterday: alice and dave met on this link; the server kept everything dave sent.
    const yesterday = new Sim();
    await yesterday.join('alice');
    await yesterday.join('dave');
    const fromDave = yesterday.tap.filter((p) => p.from === 'dave');
    expect(fromDave.map((p) => p.kind)).toEqual(expect.arrayContaining(['announcement', 'liveness-proof', 'key-batch', 'code-commit', 'code-reveal']));

    // Today: bob is in the room and carol joins. The server says dave is there too and replays all of dave's messages.
    const sim = new Sim();
    sim.joinResponse = (j, truth) => (j === 'carol' ? [...truth, 'dave'] : truth);
    await sim.join('bob');
    const tapBefore = sim.tap.length;
    await sim.join('carol');
    for (const p of fromDave) for (const to of ['bob', 'carol']) sim.inject({ from: 'dave', to, bytes: p.bytes });
    await sim.pump();
    for (const id of ['bob', 'carol']) {
      const m = sim.member(id);
      expect(ids(m), id).toEqual(['bob', 'carol']);
      expect(m.agent.state.pending.has('dave'), id).toBe(true); // answered, waiting for a proof that cannot come
      expect(alertsOf(m), id).toContain('not-live:dave:bad-proof'); // dave's old proof was for alice's old nonce
    }
    // Everything worked between the live members, and their code covers them alone.
    expect(sim.code('carol')).toBe(sim.code('bob'));

    // The liveness timeout passes: dave is dropped and flagged.
    sim.advance(DEFAULT_LIVENESS_TIMEOUT_MS + 1);
    await sim.tickAll();
    for (const id of ['bob', 'carol']) {
      const m = sim.member(id);
      expect(m.agent.state.pending.has('dave')).toBe(false);
      expect(alertsOf(m)).toContain(`not-live:dave:${TIMEOUT_ALERT}`);
      expect(ids(m)).toEqual(['bob', 'carol']);
    }
    // No key was ever sealed to dave (by either member, in any batch) and nothing dave sent was installed.
    expect(batchRecipients(sim.tap.slice(tapBefore))).not.toContain('dave');
    for (const id of ['bob', 'carol']) expect(sim.member(id).installed.filter((k) => k.from === 'dave')).toEqual([]);
    expect(sim.code('carol')).toBe(sim.code('bob'));
  });

  it("after a forced rejoin the old meeting's messages replayed to everyone: only the new sessions are members", async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol', 'dave']) await sim.join(id);
    const old = [...sim.tap];
    // The server forces a rejoin (worker died): every browser joins again as a new member with a new session; dave
    // does not come back. The server lists dave anyway and replays every message of the old meeting to everyone.
    for (const m of sim.members.values()) m.gone = true;
    sim.joinResponse = (_j, truth) => [...truth, 'dave'];
    const tapBefore = sim.tap.length;
    const fresh = ['alice2', 'bob2', 'carol2'];
    for (const id of fresh) {
      await sim.join(id);
      for (const p of old) sim.inject({ from: p.from, to: id, bytes: p.bytes });
      await sim.pump();
    }
    for (const id of fresh) expect(ids(sim.member(id)), id).toEqual(fresh);
    expect(new Set(fresh.map((id) => sim.code(id))).size).toBe(1);
    sim.advance(DEFAULT_LIVENESS_TIMEOUT_MS + 1);
    await sim.tickAll();
    for (const id of fresh) {
      const m = sim.member(id);
      expect(ids(m)).toEqual(fresh);
      expect(m.agent.state.pending.size).toBe(0);
      // every ghost of the old meeting was flagged: those that said nothing more than their announcement at the timeout
      for (const ghost of ['alice', 'bob', 'carol', 'dave']) expect(alertsOf(m).filter((a) => a.startsWith(`not-live:${ghost}:`)), `${id} flags ${ghost}`).not.toEqual([]);
      expect(m.installed.map((k) => k.from).every((f) => fresh.includes(f))).toBe(true);
    }
    const sealedTo = batchRecipients(sim.tap.slice(tapBefore));
    for (const ghost of ['alice', 'bob', 'carol', 'dave']) expect(sealedTo).not.toContain(ghost);
  });
});

describe('property: a replayed announcement never becomes a member (E2eeSessions)', () => {
  it("a new joiner's people list never shows yesterday's member as holding keys; it is flagged and sent no key", async () => {
    const yesterday = new SessionRoom();
    yesterday.add('alice');
    yesterday.add('dave');
    await yesterday.join('alice');
    await yesterday.join('dave');
    const fromDave = yesterday.tap.filter((p) => p.from === 'dave');

    const room = new SessionRoom();
    room.add('bob');
    const carol = room.add('carol');
    await room.join('bob');
    await room.join('carol');
    carol.session.listed('dave'); // the server says dave is in the room
    const tapBefore = room.tap.length;
    for (const p of fromDave) room.inject({ from: 'dave', to: 'carol', bytes: p.bytes });
    await room.settle();
    room.clock.advance(DEFAULT_LIVENESS_TIMEOUT_MS + 1_000);
    carol.session.refresh([]);
    const dave = carol.session.members.find((m) => m.peerId === 'dave');
    expect(dave?.presence).toBe('server-only'); // listed by the server, not in the key roster
    expect(dave?.fingerprint).toBe(''); // no verified identity shown for it
    expect(carol.session.bridge?.member('dave')).toBeUndefined();
    const alerts = carol.events.flatMap((e) => (e.kind === 'alert' ? [e.alert] : []));
    expect(alerts.map((a) => a.message).join('\n')).toMatch(/did not prove it is in this meeting now/);
    // Nothing carol sent to dave carried a key: she sealed no batch and no channel reset to it.
    const kinds: number[] = [];
    for (const p of room.tap.slice(tapBefore).filter((x) => x.from === 'carol' && x.to === 'dave')) kinds.push((await openRelay(INVITE_KEYS.metadataKey, ROOM, 'carol', p.bytes))[0]!);
    expect(kinds).toContain(RELAY_KIND['announce-back']); // she did answer (an answer proves nothing to anyone else)
    expect(kinds.filter((k) => k === RELAY_KIND['key-batch'] || k === RELAY_KIND['channel-reset'])).toEqual([]);
    // The alert is a roster warning that says what happened.
    expect(keyAlert('not-live', 'Dave', 'bad-proof')?.kind).toBe('roster');
  });
});

// ------------------------------------------------------------------------------------------------
// The reducer alone: which proofs count
// ------------------------------------------------------------------------------------------------

const { config: CONFIG, person, joined, annBytes, proofOf, backBytes, proofBytes, relay } = reducerKit(ROOM, INVITE_KEYS);

describe('liveness proofs (reducer)', () => {
  it('only a proof by the announced identity, for our session and nonce and its own session, admits; anything else is not-live and changes nothing', async () => {
    const alice = await person('alice');
    const bob = await person('bob');
    const carol = await person('carol');
    const s = joined(alice);
    const bad: [string, Uint8Array][] = [
      ['for another challenger', await proofOf(bob, carol)],
      ['for our id but an old session of ours', await proofOf(bob, await person('alice'))],
      ['signed by someone else', await proofOf(carol, alice, bob)],
      ['for another session of the responder', await proofOf(bob, alice, { ...(await person('bob')), identity: bob.identity })],
    ];
    for (const [what, p] of bad) {
      const r = relay(s, 'bob', await backBytes(bob, alice, p));
      expect(r.effects, what).toEqual([{ kind: 'alert', reason: 'not-live', memberId: 'bob', detail: 'bad-proof' }]);
      expect(r.state, what).toBe(s);
    }
    // and the same proofs alone, after we answered bob's announcement
    const answered = relay(s, 'bob', annBytes(bob)).state;
    for (const [what, p] of bad) {
      const r = relay(answered, 'bob', await proofBytes(bob, alice, p));
      expect(r.effects, what).toEqual([{ kind: 'alert', reason: 'not-live', memberId: 'bob', detail: 'bad-proof' }]);
      expect(roster(r.state).map((m) => m.memberId), what).toEqual(['alice']);
    }
    const ok = relay(answered, 'bob', await proofBytes(bob, alice));
    expect(roster(ok.state).map((m) => m.memberId).sort()).toEqual(['alice', 'bob']);
  });

  it('a proof from a member we never answered is unknown-sender; a malformed one is malformed', async () => {
    const alice = await person('alice');
    const bob = await person('bob');
    const s = joined(alice);
    expect(relay(s, 'bob', await proofBytes(bob, alice)).effects).toEqual([
      { kind: 'alert', reason: 'unknown-sender', memberId: 'bob', detail: 'liveness-proof' },
    ]);
    const answered = relay(s, 'bob', annBytes(bob)).state;
    expect(relay(answered, 'bob', await proofBytes(bob, alice, new Uint8Array(63))).effects).toEqual([
      { kind: 'alert', reason: 'malformed', memberId: 'bob', detail: 'liveness-proof' },
    ]);
  });

  it('an answered announcement expires after the timeout (not before) with an alert; one whose member leaves is just dropped', async () => {
    const alice = await person('alice');
    const s = joined(alice);
    const answered = relay(s, 'bob', annBytes(await person('bob')), 100).state;
    expect(reduce(CONFIG, answered, { type: 'tick', now: 100 + DEFAULT_LIVENESS_TIMEOUT_MS }).effects).toEqual([]);
    const t = reduce(CONFIG, answered, { type: 'tick', now: 101 + DEFAULT_LIVENESS_TIMEOUT_MS });
    expect(t.effects).toEqual([{ kind: 'alert', reason: 'not-live', memberId: 'bob', detail: TIMEOUT_ALERT }]);
    expect(t.state.pending.size).toBe(0);
    const left = reduce(CONFIG, answered, { type: 'member-left', now: 200, memberId: 'bob' });
    expect(left.effects).toEqual([]);
    expect(left.state.pending.size).toBe(0);
  });

  it('two answers that cross (both announced at once): each admits the other once, with no extra proof message', async () => {
    const alice = await person('alice');
    const bob = await person('bob');
    // each got the other's plain announcement and answered it
    const a = relay(joined(alice), 'bob', annBytes(bob)).state;
    const b = relay(joined(bob), 'alice', annBytes(alice)).state;
    const ra = relay(a, 'bob', await backBytes(bob, alice));
    const rb = relay(b, 'alice', await backBytes(alice, bob));
    for (const r of [ra, rb]) {
      expect(roster(r.state).length).toBe(2);
      expect(r.effects.map((e) => e.kind)).not.toContain('prove-liveness');
      expect(r.effects.map((e) => e.kind)).toContain('send-envelopes');
    }
  });
});
