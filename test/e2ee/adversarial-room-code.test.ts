/**
 * Adversary: a room code that a man in the middle cannot grind (issue 13 §3).
 *
 * Before: the room code was a function of the roster alone, whose member ids the server chooses and whose fake
 * members' keys the attacker chooses, so an offline birthday search over two partitions finds two rosters with the
 * same code (36 / ~40 bits: under a minute on one core; here on a 24-bit truncation, in well under a second).
 * Now: a commit-then-reveal round per roster (membership-code.ts): every member's fresh value is committed before
 * anyone reveals, and the code covers the roster and all values. The attacker's fake members are bound before the
 * honest values are known, so each attempt succeeds with probability 2^-(code bits) and needs a new round, i.e. a
 * roster change the members see.
 *
 * Real codes.ts functions for the grind; real KeyAgents and reducers over the scriptable relay for the partitions;
 * real E2eeSessions for the honest run.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from '../../client/src/e2ee/bytes.ts';
import { displayCode, roomCode, roomCodeCommitment, rosterHash, type RosterEntry } from '../../client/src/e2ee/codes.ts';
import { encodeCodeCommit, encodeCodeReveal } from '../../client/src/e2ee/membership-messages.ts';
import { reduce, roster, currentRoomCode, type MembershipState } from '../../client/src/e2ee/membership.ts';
import { encodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { SessionRoom } from '../session/session-sim.ts';
import { reducerKit, type Person } from './reducer-kit.ts';
import { INVITE_KEYS, ROOM, Sim } from './relay-sim.ts';

/** The code bits a test grinds against: the first 24 bits of the code hash (4 of the 6 emoji). */
const trunc = (hash: Uint8Array): number => (hash[0]! << 16) | (hash[1]! << 8) | hash[2]!;
/** The code as it was before the commit-reveal round: a function of the roster alone. */
const rosterOnlyCode = (r: readonly RosterEntry[]) => displayCode(rosterHash(r));

const entry = (memberId: string, identityPublicKey: Uint8Array, sessionPublicKey: Uint8Array): RosterEntry => ({ memberId, identityPublicKey, sessionPublicKey });
const keys = () => ({ identity: randomBytes(32), session: randomBytes(1216) });

/**
 * The MITM partition: alice sees {alice, "bob" (the attacker's key), x_i}, bob sees {"alice" (the attacker's key), bob,
 * y_j}; x_i and y_j are fake members whose ids the server chooses freely.
 */
function partitions() {
  const alice = keys();
  const bob = keys();
  const mallory = keys();
  return {
    a: (i: number): RosterEntry[] => [entry('alice', alice.identity, alice.session), entry('bob', mallory.identity, mallory.session), entry(`x${i}`, mallory.identity, mallory.session)],
    b: (j: number): RosterEntry[] => [entry('alice', mallory.identity, mallory.session), entry('bob', bob.identity, bob.session), entry(`y${j}`, mallory.identity, mallory.session)],
  };
}

/** Birthday search: 2^13 fake ids on alice's side, then fake ids on bob's side until one collides. */
function grind(code: (r: readonly RosterEntry[]) => Uint8Array, p: ReturnType<typeof partitions>): { i: number; j: number } | null {
  const seen = new Map<number, number>();
  for (let i = 0; i < 1 << 13; i++) seen.set(trunc(code(p.a(i))), i);
  for (let j = 0; j < 1 << 16; j++) {
    const i = seen.get(trunc(code(p.b(j))));
    if (i !== undefined) return { i, j };
  }
  return null;
}

describe('property: a man in the middle cannot grind the room code', () => {
  it('the birthday search finds two partitions with equal roster-only codes (the old code), offline, in seconds', () => {
    const p = partitions();
    const hit = grind((r) => rosterOnlyCode(r).hash, p);
    expect(hit).not.toBeNull();
    const [ra, rb] = [p.a(hit!.i), p.b(hit!.j)];
    expect(Buffer.from(rosterHash(ra)).equals(Buffer.from(rosterHash(rb)))).toBe(false); // different rosters ...
    expect(trunc(rosterOnlyCode(ra).hash)).toBe(trunc(rosterOnlyCode(rb).hash)); // ... same (truncated) code
  });

  it('the same colliding partitions under the commit-reveal round: the codes differ, and each further attempt is one fresh round', () => {
    const p = partitions();
    const hit = grind((r) => rosterOnlyCode(r).hash, p)!;
    const [ra, rb] = [p.a(hit.i), p.b(hit.j)];
    const [Ra, Rb] = [rosterHash(ra), rosterHash(rb)];
    // The attacker commits its fake members' values first (any values it likes: here chosen, not random) ...
    const fakeValue = (id: string) => new Uint8Array(32).fill(id.length);
    const codeA = (aliceValue: Uint8Array) => roomCode(Ra, [{ memberId: 'alice', value: aliceValue }, ...ra.slice(1).map((m) => ({ memberId: m.memberId, value: fakeValue(m.memberId) }))]);
    const codeB = (bobValue: Uint8Array) => roomCode(Rb, [{ memberId: 'bob', value: bobValue }, ...[rb[0]!, rb[2]!].map((m) => ({ memberId: m.memberId, value: fakeValue(m.memberId) }))]);
    // ... and only then do alice and bob reveal their fresh values: the codes are unrelated.
    expect(trunc(codeA(randomBytes(32)).hash)).not.toBe(trunc(codeB(randomBytes(32)).hash));
    // Its only way on: another round on one side (a roster change there, so a fresh honest value), hoping the new code
    // equals the other side's current one: 2^-24 per attempt on these 24 bits; 256 attempts, 256 visible changes.
    let current = { a: codeA(randomBytes(32)), b: codeB(randomBytes(32)) };
    let matches = 0;
    for (let attempt = 0; attempt < 256; attempt++) {
      current = attempt % 2 ? { ...current, a: codeA(randomBytes(32)) } : { ...current, b: codeB(randomBytes(32)) };
      if (trunc(current.a.hash) === trunc(current.b.hash)) matches++;
    }
    expect(matches).toBe(0);
  });

  it('in the protocol: two views the server keeps apart, fakes run by the attacker, show different codes (real agents)', async () => {
    // Two views the server keeps apart. In each the attacker runs real agents (holding the invite) for the fakes.
    const viewA = new Sim();
    const viewB = new Sim();
    for (const id of ['alice', 'bob', 'x']) await viewA.join(id); // alice real; "bob" and x the attacker's
    for (const id of ['alice', 'bob', 'y']) await viewB.join(id); // bob real; "alice" and y the attacker's
    const aliceCode = viewA.code('alice');
    const bobCode = viewB.code('bob');
    expect(aliceCode).not.toBe(bobCode);
    // Within each view every member shows the same code (the attacker's agents are members of that view's round).
    expect(viewA.code('bob')).toBe(aliceCode);
    expect(viewB.code('alice')).toBe(bobCode);
    // (That alice reveals only once every member of her round committed is the reducer's rule, tested below.)
  });

  it('fast-check: over random partitions of the honest members (each side with the attacker standing in for the other), codes agree within a side and never across', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 2, maxLength: 4 }),
        fc.nat(),
        fc.uniqueArray(fc.stringMatching(/^z[0-9]{1,3}$/), { maxLength: 1 }),
        fc.uniqueArray(fc.stringMatching(/^w[0-9]{1,3}$/), { maxLength: 1 }),
        async (honest, cut, fakesA, fakesB) => {
          const k = 1 + (cut % (honest.length - 1)); // both sides non-empty
          const [sideA, sideB] = [honest.slice(0, k), honest.slice(k)];
          // Every view holds all honest ids (the attacker impersonates the other side's) plus its own fake members.
          const viewA = new Sim();
          const viewB = new Sim();
          for (const id of [...honest, ...fakesA]) await viewA.join(id);
          for (const id of [...honest, ...fakesB]) await viewB.join(id);
          const a = sideA.map((id) => viewA.code(id));
          const b = sideB.map((id) => viewB.code(id));
          expect(new Set(a).size).toBe(1);
          expect(new Set(b).size).toBe(1);
          expect(a[0]).not.toBe(b[0]);
        },
      ),
      { numRuns: 6 },
    );
  }, 120_000);
});

describe('property: any roster change starts a new round; until it completes the code is pending', () => {
  it('three members over the session layer: pending while a commitment is missing, then equal codes everywhere', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice');
    const bob = room.add('bob');
    const carol = room.add('carol');
    await room.join('alice');
    await room.join('bob');
    const before = alice.session.roomCode;
    expect(before).not.toBeNull();
    expect(bob.session.roomCode).toEqual(before);
    // The server holds everything alice sends while carol joins: bob and carol get on, alice's commitment is missing.
    const held: { from: string; to: string; bytes: Uint8Array }[] = [];
    room.rules.push((p) => (p.from === 'alice' ? (held.push(p), 'drop') : undefined));
    await room.join('carol');
    expect(bob.session.roomCode).toBeNull();
    expect(carol.session.roomCode).toBeNull();
    // Delivered late, in order: one round over the three of them completes at all three, with one code.
    room.rules.length = 0;
    for (const p of held) room.inject(p);
    await room.settle();
    const after = alice.session.roomCode;
    expect(after).not.toBeNull();
    expect(after).not.toEqual(before);
    expect(bob.session.roomCode).toEqual(after);
    expect(carol.session.roomCode).toEqual(after);
  });

  it('rounds move only with the roster: rotation ticks and replayed commitments and reveals get no new value from alice; a join gets exactly one', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    await sim.join('alice');
    await sim.join('bob');
    const alice = sim.member('alice');
    const round = alice.agent.state.code.round;
    const reveals = () => new Set(sim.tap.filter((p) => p.from === 'alice' && p.kind === 'code-reveal').map((p) => p.id)).size; // broadcasts, not copies
    const revealed = reveals();
    const code = sim.code('alice');
    // time passes (a fresh send key for everyone), and the server replays every room-code message it saw
    sim.advance(60_000);
    await sim.tickAll();
    for (const p of sim.tap.filter((x) => x.kind === 'code-commit' || x.kind === 'code-reveal')) sim.inject({ from: p.from, to: p.to, bytes: p.bytes });
    await sim.pump();
    expect(alice.agent.state.code.round).toBe(round);
    expect(reveals()).toBe(revealed);
    expect(sim.code('alice')).toBe(code);
    // a join is a roster change: a new round, and exactly one more reveal from alice
    await sim.join('carol');
    expect(alice.agent.state.code.round).toBe(round + 1);
    expect(reveals()).toBe(revealed + 1);
    expect(sim.code('alice')).not.toBe(code);
    expect(sim.code('carol')).toBe(sim.code('alice'));
  });
});

// ------------------------------------------------------------------------------------------------
// The reducer alone: when we reveal, what a reveal must open
// ------------------------------------------------------------------------------------------------

const { config: CONFIG, person, joined, admitted, relay } = reducerKit(ROOM, INVITE_KEYS);

/** alice's reducer with bob admitted, and alice's own commitment for the round fed back. */
async function aliceWithBob(): Promise<{ s: MembershipState; alice: Person; bob: Person }> {
  const alice = await person('alice');
  const bob = await person('bob');
  const r = await admitted(joined(alice), alice, bob);
  const commit = r.effects.find((e) => e.kind === 'commit-room-code');
  expect(commit).toBeDefined();
  const R = rosterHash(roster(r.state));
  const mine = randomBytes(32);
  const s = reduce(CONFIG, r.state, { type: 'code-committed', now: 1, round: r.state.code.round, rosterHash: R, commitment: roomCodeCommitment(ROOM, 'alice', r.state.code.round, R, mine) }).state;
  return { s, alice, bob };
}

const bobCommit = async (bob: Person, round: number, R: Uint8Array, value: Uint8Array) =>
  encodeRelay('code-commit', await encodeCodeCommit(bob.identity, ROOM, 'bob', bob.session.keyPair.publicKey, { round, rosterHash: R, commitment: roomCodeCommitment(ROOM, 'bob', round, R, value) }));

describe('room-code round (reducer)', () => {
  it('we reveal only once every roster member committed to our roster hash; a wrong or unsigned commitment does not count', async () => {
    const { s, alice, bob } = await aliceWithBob();
    const R = s.code.rosterHash!;
    const reveals = (r: { effects: { kind: string }[] }) => r.effects.filter((e) => e.kind === 'reveal-room-code').length;
    // bob's commitment for another roster (he sees someone else too): no reveal
    expect(reveals(relay(s, 'bob', await bobCommit(bob, 1, rosterHash([{ memberId: 'bob', identityPublicKey: bob.identity.publicKey, sessionPublicKey: bob.session.keyPair.publicKey }]), randomBytes(32))))).toBe(0);
    // a commitment for our roster signed by someone else (the server, an invite holder): refused
    const forged = encodeRelay('code-commit', await encodeCodeCommit(alice.identity, ROOM, 'bob', bob.session.keyPair.publicKey, { round: 1, rosterHash: R, commitment: new Uint8Array(32) }));
    const rf = relay(s, 'bob', forged);
    expect(rf.effects).toEqual([expect.objectContaining({ kind: 'alert', reason: 'bad-room-code', memberId: 'bob' })]);
    expect(reveals(rf)).toBe(0);
    // bob's real commitment for our roster: now we reveal, once
    const ok = relay(s, 'bob', await bobCommit(bob, 1, R, randomBytes(32)));
    expect(reveals(ok)).toBe(1);
    expect(reveals(relay(ok.state, 'bob', await bobCommit(bob, 1, R, randomBytes(32))))).toBe(0); // replay / same round: ignored
  });

  it('a reveal that does not open its commitment is refused and the code stays pending; the right one completes it', async () => {
    const { s, bob } = await aliceWithBob();
    const R = s.code.rosterHash!;
    const value = randomBytes(32);
    let st = relay(s, 'bob', await bobCommit(bob, 1, R, value)).state;
    st = reduce(CONFIG, st, { type: 'code-revealed', now: 1, round: st.code.round, value: randomBytes(32) }).state;
    const wrong = relay(st, 'bob', encodeRelay('code-reveal', encodeCodeReveal(1, randomBytes(32))));
    expect(wrong.effects).toEqual([{ kind: 'alert', reason: 'bad-room-code', memberId: 'bob', detail: 'the revealed value does not open its commitment' }]);
    expect(currentRoomCode(wrong.state)).toBeNull();
    expect(relay(st, 'bob', encodeRelay('code-reveal', encodeCodeReveal(0, value))).effects).toEqual([]); // another round: ignored
    const right = relay(st, 'bob', encodeRelay('code-reveal', encodeCodeReveal(1, value)));
    expect(right.effects).toEqual([{ kind: 'room-code-changed' }]);
    expect(currentRoomCode(right.state)?.digits).toMatch(/^\d{12}$/);
  });

  it('a commitment that arrives after our reveal never counts: a member re-committing to a value ground against ours gets nowhere', async () => {
    const { s, bob } = await aliceWithBob();
    const R = s.code.rosterHash!;
    const v1 = randomBytes(32);
    let st = relay(s, 'bob', await bobCommit(bob, 1, R, v1)).state; // every commitment is in: alice reveals, they are fixed
    expect(st.code.fixed?.get('bob')?.round).toBe(1);
    const mine = randomBytes(32);
    st = reduce(CONFIG, st, { type: 'code-revealed', now: 1, round: st.code.round, value: mine }).state;
    // alice's value is public now; "bob" commits again for the same roster, to a value chosen after seeing it, and reveals it
    const v2 = randomBytes(32);
    st = relay(st, 'bob', await bobCommit(bob, 2, R, v2)).state;
    const late = relay(st, 'bob', encodeRelay('code-reveal', encodeCodeReveal(2, v2)));
    expect(currentRoomCode(late.state)).toBeNull();
    // only the value of the fixed commitment completes the round
    const done = relay(late.state, 'bob', encodeRelay('code-reveal', encodeCodeReveal(1, v1)));
    expect(currentRoomCode(done.state)?.hash).toEqual(roomCode(R, [{ memberId: 'alice', value: mine }, { memberId: 'bob', value: v1 }]).hash);
  });
});
