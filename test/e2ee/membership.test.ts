import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { assignSenderIndices } from '../../client/src/e2ee/sender-index.ts';
import { decodeRelay, encodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { encodeSignedAnnouncement, openSignedAnnouncement } from '../../client/src/e2ee/membership-messages.ts';
import { reducerKit } from './reducer-kit.ts';
import { initialMembershipState, reduce, roster, currentRoomCode, type MembershipEffect, type MembershipEvent } from '../../client/src/e2ee/membership.ts';
import { KeyAgent } from '../../client/src/e2ee/key-agent.ts';
import { newSession, type Identity, type Session } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import { deriveInviteKeysSync, type InviteKeys } from '../../client/src/e2ee/invite.ts';
import { SendKeySlot } from '../../client/src/transform/send-key-slot.ts';
import { ReceiveKeyRings } from '../../client/src/e2ee/receive-rings.ts';
import { makeKid } from '../../client/src/e2ee/kid.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import { decodeKeyBatch } from '../../client/src/e2ee/envelope.ts';

const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';
const SECRET = new Uint8Array(32).fill(42);
const KEYS = deriveInviteKeysSync(SECRET, ROOM);
const { config: CONFIG, person, joined, localJoin, annBytes: annBlob, backBytes: backBlob, proofBytes: proofBlob, admitted } = reducerKit(ROOM, KEYS);
const kinds = (effects: MembershipEffect[]) => effects.map((e) => e.kind);

describe('announcements', () => {
  it('MAC + signature round trip; wrong MAC key -> bad-mac; wrong room -> wrong-context', async () => {
    const a = await person('alice');
    const bytes = encodeSignedAnnouncement(a.session, KEYS.membershipMacKey);
    expect(openSignedAnnouncement(bytes, KEYS.membershipMacKey, ROOM).memberId).toBe('alice');
    expect(() => openSignedAnnouncement(bytes, new Uint8Array(32), ROOM)).toThrow(/bad-mac/);
    const other = deriveInviteKeysSync(SECRET, 'AAAAAAAAAAAAAAAAAAAAAB');
    const b = await person('bob', 'AAAAAAAAAAAAAAAAAAAAAB');
    expect(() => openSignedAnnouncement(encodeSignedAnnouncement(b.session, KEYS.membershipMacKey), KEYS.membershipMacKey, ROOM)).toThrow(/wrong-context/);
    void other;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (g) => {
        try {
          openSignedAnnouncement(g, KEYS.membershipMacKey, ROOM);
          expect.unreachable();
        } catch (e) {
          expect(isE2eeError(e)).toBe(true);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('relay framing', () => {
    expect(decodeRelay(encodeRelay('key-batch', new Uint8Array([1, 2]))).kind).toBe('key-batch');
    expect(() => decodeRelay(new Uint8Array(0))).toThrow(/malformed/);
    expect(() => decodeRelay(Uint8Array.of(0))).toThrow(/malformed/);
    expect(() => decodeRelay(Uint8Array.of(0xff, 1))).toThrow(/malformed/);
  });
});

describe('sender indices', () => {
  it('deterministic, order independent, unique, stable when others join/leave (no collision)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), { minLength: 1, maxLength: 40 }), (ids) => {
        const a = assignSenderIndices(ids);
        const b = assignSenderIndices([...ids].reverse());
        expect([...a.entries()].sort()).toEqual([...b.entries()].sort());
        expect(new Set(a.values()).size).toBe(ids.length);
        const sub = assignSenderIndices(ids.slice(1));
        // without collisions in the set, indices do not move when a member leaves
        const hashes = new Set([...a.values()]);
        if (hashes.size === ids.length) for (const [id, i] of sub) if (a.get(id) !== i) expect([...a.values()]).toContain(i);
      }),
      { numRuns: 50 },
    );
  });
  it('resolves collisions by linear probing', () => {
    // brute force two ids whose hashes collide
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const id = `m${i}`;
      const idx = assignSenderIndices([id]).get(id)!;
      const prev = seen.get(idx);
      if (prev !== undefined) pair = [prev, id];
      else seen.set(idx, id);
    }
    const m = assignSenderIndices(pair);
    const [x, y] = [m.get(pair[0])!, m.get(pair[1])!];
    expect(Math.abs(x - y) === 1 || Math.abs(x - y) === 65535).toBe(true);
  });
});

describe('membership reducer', () => {
  it('local join: initial key, broadcast announce', async () => {
    const r = localJoin(await person('alice'));
    expect(kinds(r.effects)).toEqual(['switch-send-key', 'announce', 'roster-changed', 'commit-room-code']);
    expect(r.state.sendEpoch).toBe(1);
  });

  it('joiner after us: announce back (with our liveness proof), then once it proved liveness: ratchet, envelope only to the joiner, keyframe', async () => {
    const a = await person('alice');
    const b = await person('bob');
    const s = joined(a);
    const answered = reduce(CONFIG, s, { type: 'relay', now: 1, from: 'bob', bytes: annBlob(b) });
    expect(answered.effects).toEqual([
      { kind: 'announce-back', to: 'bob', challenge: { memberId: 'bob', sessionPublicKey: b.session.keyPair.publicKey, joinNonce: b.session.announcement.joinNonce } },
    ]);
    expect(roster(answered.state).map((m) => m.memberId)).toEqual(['alice']); // no keys, not in the roster yet
    const r = reduce(CONFIG, answered.state, { type: 'relay', now: 1, from: 'bob', bytes: await proofBlob(b, a) });
    expect(r.effects).toContainEqual(expect.objectContaining({ kind: 'switch-send-key', mode: 'ratchet', epoch: 2 }));
    expect(r.effects).toContainEqual({ kind: 'send-envelopes', to: ['bob'], epoch: 2 });
    expect(kinds(r.effects)).toContain('request-keyframe');
    expect(roster(r.state).map((m) => m.memberId).sort()).toEqual(['alice', 'bob']);
    // duplicate announcement or proof: nothing
    expect(reduce(CONFIG, r.state, { type: 'relay', now: 2, from: 'bob', bytes: annBlob(b) }).effects).toEqual([]);
    expect(reduce(CONFIG, r.state, { type: 'relay', now: 2, from: 'bob', bytes: await proofBlob(b, a) }).effects).toEqual([]);
  });

  it('pre-existing member answering our announcement (with its proof): our proof back, current key, no ratchet', async () => {
    const a = await person('alice');
    const b = await person('bob');
    const s = joined(b, ['alice']);
    const r = reduce(CONFIG, s, { type: 'relay', now: 1, from: 'alice', bytes: await backBlob(a, b) });
    // (our room-code commitment waited for the member listed at our join)
    expect(kinds(r.effects)).toEqual(['prove-liveness', 'send-envelopes', 'roster-changed', 'commit-room-code']);
    expect(r.effects[0]).toEqual({ kind: 'prove-liveness', to: 'alice', challenge: { memberId: 'alice', sessionPublicKey: a.session.keyPair.publicKey, joinNonce: a.session.announcement.joinNonce } });
    expect(r.effects[1]).toEqual({ kind: 'send-envelopes', to: ['alice'], epoch: 1 });
  });

  it('pre-existing claim expires after the window: treated as a joiner (ratchet)', async () => {
    const a = await person('alice');
    const b = await person('bob');
    const s = joined(b, ['alice'], 0);
    const r = reduce(CONFIG, s, { type: 'relay', now: 60_001, from: 'alice', bytes: await backBlob(a, b) });
    expect(r.effects).toContainEqual(expect.objectContaining({ kind: 'switch-send-key', mode: 'ratchet' }));
    expect(r.effects).toContainEqual(expect.objectContaining({ kind: 'prove-liveness', to: 'alice' }));
  });

  it('a departed session\'s replayed announcement is refused with an alert', async () => {
    const a = await person('alice');
    const b = await person('bob');
    let s = joined(a);
    s = (await admitted(s, a, b)).state;
    s = reduce(CONFIG, s, { type: 'member-left', now: 2, memberId: 'bob' }).state;
    const r = reduce(CONFIG, s, { type: 'relay', now: 3, from: 'bob', bytes: annBlob(b) });
    expect(r.effects).toEqual([{ kind: 'alert', reason: 'replayed-announcement', memberId: 'bob' }]);
    expect(r.state.members.has('bob')).toBe(false);
  });

  it('after maxRatchetsPerKey joins, the next join makes a fresh key for everyone', async () => {
    const a = await person('alice');
    let s = joined(a);
    const modes: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = await person(`j${i}`);
      const r = await admitted(s, a, p, 1 + i);
      const sw = r.effects.find((e) => e.kind === 'switch-send-key') as { mode: string } | undefined;
      modes.push(sw!.mode);
      if (sw!.mode === 'fresh') expect(r.effects).toContainEqual(expect.objectContaining({ kind: 'send-envelopes', to: expect.arrayContaining([`j${i}`, 'j0']) }));
      s = r.state;
    }
    expect(modes).toEqual(['ratchet', 'ratchet', 'ratchet', 'ratchet', 'fresh', 'ratchet']);
  });

  it('injected / forged announcements are ignored with alerts and never get keys', async () => {
    const a = await person('alice');
    const s = joined(a);
    const m = await person('mallory');
    const cases: [string, Uint8Array, string][] = [
      ['mallory', annBlob(m, new Uint8Array(32).fill(7)), 'bad-mac'], // no invite secret
      ['eve', annBlob(m), 'member-id-mismatch'], // server re-attributes
      ['mallory', Uint8Array.of(0, 0, 0), 'malformed'],
      ['alice', annBlob(await person('alice')), 'impersonation'],
    ];
    for (const [from, bytes, reason] of cases) {
      const r = reduce(CONFIG, s, { type: 'relay', now: 1, from, bytes });
      expect(r.effects).toEqual([expect.objectContaining({ kind: 'alert', reason })]);
      expect(r.state).toBe(s);
    }
    // forged signature (MAC valid over a body whose signature is wrong: an insider re-signing someone else's body)
    const body = m.session.body;
    const badSig = new Uint8Array(64);
    const mac = encodeSignedAnnouncement({ body, signature: badSig }, KEYS.membershipMacKey);
    expect(reduce(CONFIG, s, { type: 'relay', now: 1, from: 'mallory', bytes: encodeRelay('announcement', mac) }).effects).toEqual([
      expect.objectContaining({ kind: 'alert', reason: 'bad-signature' }),
    ]);
    // key batch / metadata from an unverified member
    expect(reduce(CONFIG, s, { type: 'relay', now: 1, from: 'mallory', bytes: encodeRelay('key-batch', new Uint8Array(3)) }).effects).toEqual([
      expect.objectContaining({ kind: 'alert', reason: 'unknown-sender' }),
    ]);
    // session change for a known member id
    const b = await person('bob');
    const s2 = (await admitted(s, a, b)).state;
    expect(reduce(CONFIG, s2, { type: 'relay', now: 2, from: 'bob', bytes: annBlob(await person('bob')) }).effects).toEqual([
      expect.objectContaining({ kind: 'alert', reason: 'session-changed' }),
    ]);
  });

  it('leave: forget, fresh key to all remaining; unknown leaver: nothing; timer rotation', async () => {
    const a = await person('alice');
    let s = joined(a);
    for (const p of [await person('bob'), await person('carol')]) s = (await admitted(s, a, p)).state;
    expect(s.sendEpoch).toBe(3);
    const r = reduce(CONFIG, s, { type: 'member-left', now: 5, memberId: 'bob' });
    expect(kinds(r.effects)).toEqual(expect.arrayContaining(['forget-member', 'switch-send-key', 'send-envelopes', 'request-keyframe', 'roster-changed']));
    expect(r.effects).toContainEqual(expect.objectContaining({ kind: 'switch-send-key', mode: 'fresh', epoch: 4 }));
    expect(r.effects).toContainEqual({ kind: 'send-envelopes', to: ['carol'], epoch: 4 });
    expect(reduce(CONFIG, r.state, { type: 'member-left', now: 6, memberId: 'nobody' }).effects).toEqual([]);
    expect(reduce(CONFIG, r.state, { type: 'tick', now: 5 + 599_999 }).effects).toEqual([]);
    const t = reduce(CONFIG, r.state, { type: 'tick', now: 5 + 600_000 });
    expect(t.effects).toContainEqual(expect.objectContaining({ kind: 'switch-send-key', mode: 'fresh', epoch: 5 }));
    expect(t.effects).toContainEqual({ kind: 'send-envelopes', to: ['carol'], epoch: 5 });
  });

  it('envelope results: installs with the right index; mismatched index / KID / stale epoch alert', async () => {
    const a = await person('alice');
    const b = await person('bob');
    let s = joined(a);
    s = (await admitted(s, a, b)).state;
    const idx = s.senderIndices.get('bob')!;
    const upd = (senderIndex: number, kid = makeKid(senderIndex, 0)) => ({ reason: 'initial' as const, senderIndex, generation: 0, step: 0, kid, baseKey: new Uint8Array(16) });
    const ok = reduce(CONFIG, s, { type: 'envelope-opened', now: 2, from: 'bob', epoch: 1, update: upd(idx) });
    expect(ok.effects).toEqual([expect.objectContaining({ kind: 'install-key', memberId: 'bob', senderIndex: idx })]);
    expect(reduce(CONFIG, ok.state, { type: 'envelope-opened', now: 3, from: 'bob', epoch: 1, update: upd(idx) }).effects[0]).toMatchObject({ reason: 'stale-epoch' });
    expect(reduce(CONFIG, s, { type: 'envelope-opened', now: 2, from: 'bob', epoch: 1, update: upd((idx + 1) & 0xffff) }).effects[0]).toMatchObject({ reason: 'sender-index-mismatch' });
    const aliceIdx = s.senderIndices.get('alice')!;
    expect(reduce(CONFIG, s, { type: 'envelope-opened', now: 2, from: 'bob', epoch: 1, update: upd(idx, makeKid(aliceIdx, 0)) }).effects[0]).toMatchObject({ reason: 'sender-index-mismatch' });
    expect(reduce(CONFIG, s, { type: 'envelope-failed', now: 2, from: 'bob', code: 'replay' }).effects[0]).toMatchObject({ reason: 'envelope-rejected', detail: 'replay' });
  });

  it('events before local join only alert', async () => {
    const r = reduce(CONFIG, initialMembershipState(), { type: 'tick', now: 0 });
    expect(r.effects).toEqual([{ kind: 'alert', reason: 'not-joined', detail: 'tick' }]);
  });
});

// ------------------------------------------------------------------------------------------------
// Integration: KeyAgent x N over a fake relay, the worker's real SendKeySlot, real ReceiveKeyRings and SFrame.
// ------------------------------------------------------------------------------------------------

interface Node {
  memberId: string;
  identity: Identity;
  session: Session;
  agent: KeyAgent;
  send: SendKeySlot;
  recv: ReceiveKeyRings;
  alerts: string[];
}

function network(keysFor: (id: string) => InviteKeys = () => KEYS, drop: (m: { from: string; to?: string; bytes: Uint8Array }) => boolean = () => false) {
  const nodes = new Map<string, Node>();
  const queue: { from: string; to?: string; bytes: Uint8Array }[] = [];
  const tap: Uint8Array[] = [];
  const sentKeys: Uint8Array[] = [];
  let now = 1000;
  async function add(memberId: string): Promise<Node> {
    const identity = await createIdentity();
    const session = await newSession(identity, ROOM, memberId);
    const node: Node = { memberId, identity, session, send: new SendKeySlot(), recv: new ReceiveKeyRings(), alerts: [], agent: undefined as unknown as KeyAgent };
    node.agent = new KeyAgent(
      { roomId: ROOM, memberId, inviteKeys: keysFor(memberId), identity, session },
      {
        send: (m) => queue.push({ from: memberId, ...m }),
        sendKeyChanged: (k, senderIndex) => {
          sentKeys.push(k.baseKey.slice());
          node.send.install({ senderIndex, generation: k.generation, step: k.step, kid: k.kid, baseKey: k.baseKey });
        },
        sendKeyFailed: () => node.send.clear(),
        installReceiveKey: async (_m, _i, u, t) => {
          await node.recv.addKey(u.kid, u.baseKey, t);
        },
        onEffect: (e) => {
          if (e.kind === 'alert') node.alerts.push(`${e.reason}:${e.memberId ?? ''}`);
        },
      },
    );
    nodes.set(memberId, node);
    return node;
  }
  async function pump(): Promise<void> {
    while (queue.length) {
      const m = queue.shift()!;
      tap.push(m.bytes);
      if (drop(m)) continue;
      const targets = m.to !== undefined ? [m.to] : [...nodes.keys()].filter((k) => k !== m.from);
      for (const t of targets) await nodes.get(t)?.agent.relay(now, m.from, m.bytes);
    }
  }
  async function join(memberId: string): Promise<Node> {
    const existing = [...nodes.keys()];
    const n = await add(memberId);
    await n.agent.join(now, existing);
    await pump();
    return n;
  }
  async function leave(memberId: string): Promise<void> {
    const n = nodes.get(memberId)!;
    nodes.delete(memberId);
    for (const o of nodes.values()) await o.agent.memberLeft(now, memberId);
    await pump();
    void n;
  }
  return { nodes, join, leave, pump, tap, add, sentKeys, advance: (ms: number) => (now += ms), get now() { return now; } };
}

async function frame(from: Node, text: string): Promise<Uint8Array> {
  return from.send.key!.seal(new Uint8Array(0), new TextEncoder().encode(text));
}
async function canRead(to: Node, sf: Uint8Array, now: number): Promise<boolean> {
  const r = await to.recv.open(sf, new Uint8Array(0), now);
  return r.status === 'ok';
}

describe('KeyAgent integration (3-5 members, real key rings and SFrame)', () => {
  it('everyone reads everyone; joiner cannot read earlier frames; leaver cannot read later frames; injected member gets nothing', async () => {
    const net = network();
    const alice = await net.join('alice');
    const bob = await net.join('bob');
    const oldFrame = await frame(alice, 'before carol');
    expect(await canRead(bob, oldFrame, net.now)).toBe(true);
    const carol = await net.join('carol');
    for (const s of [alice, bob, carol]) for (const r of [alice, bob, carol]) if (s !== r) expect(await canRead(r, await frame(s, `${s.memberId}->${r.memberId}`), net.now), `${s.memberId}->${r.memberId}`).toBe(true);
    // property 6: no back-reading on join
    expect(await canRead(carol, oldFrame, net.now + 5000)).toBe(false);
    // rosters agree, and so do room codes (property 4)
    for (const n of [alice, bob, carol]) expect(roster(n.agent.state).map((m) => m.memberId).sort()).toEqual(['alice', 'bob', 'carol']);
    const codes = [alice, bob, carol].map((n) => currentRoomCode(n.agent.state)?.digits);
    expect(codes[0]).toMatch(/^\d{12}$/); // the round completed
    expect(new Set(codes).size).toBe(1);

    // property 2: an injected member (server adds it; it does not hold the invite) gets no keys and is flagged
    const wrong = deriveInviteKeysSync(new Uint8Array(32).fill(1), ROOM);
    const netKeys = new Map<string, InviteKeys>([['mallory', wrong]]);
    void netKeys;
    const mallory = await net.add('mallory');
    (mallory as unknown as { agent: KeyAgent }).agent = new KeyAgent(
      { roomId: ROOM, memberId: 'mallory', inviteKeys: wrong, identity: mallory.identity, session: mallory.session },
      {
        send: (m) => void m,
        sendKeyChanged: (k, senderIndex) => mallory.send.install({ senderIndex, generation: k.generation, step: k.step, kid: k.kid, baseKey: k.baseKey }),
        sendKeyFailed: () => mallory.send.clear(),
        installReceiveKey: () => expect.unreachable(),
      },
    );
    const tapBefore = net.tap.length;
    await mallory.agent.join(net.now, ['alice', 'bob', 'carol']);
    // deliver mallory's announcement to everyone by hand (its agent's send was muted above)
    const { encodeSignedAnnouncement: enc } = await import('../../client/src/e2ee/membership-messages.ts');
    const ann = encodeRelay('announcement', enc(mallory.session, wrong.membershipMacKey));
    for (const n of [alice, bob, carol]) await n.agent.relay(net.now, 'mallory', ann);
    await net.pump();
    for (const n of [alice, bob, carol]) expect(n.alerts).toContain('bad-mac:mallory');
    const batchesToMallory = net.tap.slice(tapBefore).filter((b) => {
      const r = decodeRelay(b);
      return r.kind === 'key-batch' && decodeKeyBatch(r.body).entries.some((e) => e.recipientMemberId === 'mallory');
    });
    expect(batchesToMallory).toEqual([]);
    net.nodes.delete('mallory');

    // property 6: forward secrecy on leave
    const bobRecv = bob.recv;
    await net.leave('bob');
    net.advance(3000);
    const afterLeave = await frame(alice, 'after bob left');
    expect(await canRead(carol, afterLeave, net.now)).toBe(true);
    expect(await canRead({ ...bob, recv: bobRecv }, afterLeave, net.now)).toBe(false);

    // timer rotation
    net.advance(600_000);
    for (const n of [alice, carol]) await n.agent.tick(net.now);
    await net.pump();
    expect(await canRead(carol, await frame(alice, 'rotated'), net.now)).toBe(true);
    // a partition (bob still thinks he is in a 3-member room) shows a different code
    const aliceCode = currentRoomCode(alice.agent.state)?.digits;
    expect(aliceCode).toMatch(/^\d{12}$/);
    expect(currentRoomCode(bob.agent.state)?.digits).not.toBe(aliceCode);
    expect(currentRoomCode(carol.agent.state)?.digits).toBe(aliceCode);
    expect(await canRead(alice, await frame(carol, 'rotated'), net.now)).toBe(true);
    expect(alice.alerts).toEqual(['bad-mac:mallory']);
    expect(carol.alerts).toEqual(['bad-mac:mallory']);
  });

  it('property 1: a server tap of every relay blob contains no media base key and no invite-derived secret', async () => {
    const net = network();
    const [a, b, c] = [await net.join('alice'), await net.join('bob'), await net.join('carol')];
    await net.leave('bob');
    void a, b, c;
    expect(net.sentKeys.length).toBeGreaterThan(5);
    const tapBytes = net.tap.map((t) => Buffer.from(t));
    const secrets = [...net.sentKeys, SECRET, KEYS.psk, KEYS.pskId, KEYS.membershipMacKey, KEYS.metadataKey, Buffer.from(KEYS.accessToken, 'base64url')];
    for (const s of secrets) for (const t of tapBytes) expect(t.includes(Buffer.from(s))).toBe(false);
  });

  it('a lost channel setup is recovered by a signed channel reset at the next rekey', async () => {
    let dropped = 0;
    const net = network(undefined, (m) => m.from === 'alice' && m.to === 'carol' && decodeRelay(m.bytes).kind === 'key-batch' && dropped++ === 0);
    const alice = await net.join('alice');
    await net.join('bob');
    const carol = await net.join('carol');
    expect(dropped).toBe(1);
    expect(await canRead(carol, await frame(alice, 'x'), net.now)).toBe(false);
    net.advance(600_000);
    await alice.agent.tick(net.now); // fresh rekey: carol gets a follow-up it cannot open -> asks for a reset
    await net.pump();
    expect(carol.alerts).toContain('envelope-rejected:alice');
    expect(await canRead(carol, await frame(alice, 'y'), net.now)).toBe(true);
    // a replayed reset request does nothing
    const resets = net.tap.filter((b) => decodeRelay(b).kind === 'channel-reset');
    expect(resets.length).toBe(1);
    const before = net.tap.length;
    await alice.agent.relay(net.now, 'carol', resets[0]!);
    await net.pump();
    expect(net.tap.length).toBe(before);
    // a reset attributed to another member fails its signature
    await alice.agent.relay(net.now, 'bob', resets[0]!);
    expect(alice.alerts).toContain('bad-reset:bob');
  });

  it('server replaying every key batch again is rejected (alerts), keys still work', async () => {
    const net = network();
    const alice = await net.join('alice');
    const bob = await net.join('bob');
    const replays = net.tap.filter((b) => decodeRelay(b).kind === 'key-batch');
    expect(replays.length).toBeGreaterThan(0);
    for (const b of replays) {
      await bob.agent.relay(net.now, 'alice', b);
      await alice.agent.relay(net.now, 'bob', b);
    }
    expect([...bob.alerts, ...alice.alerts].every((a) => a.startsWith('envelope-rejected'))).toBe(true);
    expect(bob.alerts.length + alice.alerts.length).toBeGreaterThan(0);
    expect(await canRead(bob, await frame(alice, 'x'), net.now)).toBe(true);
  });
});

describe('relay framing interop with metadata.ts', () => {
  it('a bare sealed metadata blob is a metadata relay message, delivered only from verified members', async () => {
    const { sealMetadata } = await import('../../client/src/e2ee/metadata.ts');
    const sealed = await sealMetadata(KEYS.metadataKey, ROOM, 'bob', new TextEncoder().encode('{"t":"profile"}'));
    const blob = encodeRelay('metadata', sealed);
    expect(blob).toEqual(sealed);
    expect(decodeRelay(blob)).toEqual({ kind: 'metadata', body: sealed });
    expect(() => encodeRelay('metadata', new Uint8Array([2]))).toThrow(/malformed/);
    const a = await person('alice');
    const b = await person('bob');
    let s = joined(a);
    expect(reduce(CONFIG, s, { type: 'relay', now: 1, from: 'bob', bytes: blob }).effects[0]).toMatchObject({ kind: 'alert', reason: 'unknown-sender' });
    s = reduce(CONFIG, s, { type: 'relay', now: 1, from: 'bob', bytes: annBlob(b) }).state;
    // answered, not yet live: still no metadata
    expect(reduce(CONFIG, s, { type: 'relay', now: 1, from: 'bob', bytes: blob }).effects[0]).toMatchObject({ kind: 'alert', reason: 'unknown-sender' });
    s = reduce(CONFIG, s, { type: 'relay', now: 1, from: 'bob', bytes: await proofBlob(b, a) }).state;
    expect(reduce(CONFIG, s, { type: 'relay', now: 2, from: 'bob', bytes: blob }).effects).toEqual([{ kind: 'metadata', from: 'bob', bytes: sealed }]);
  });
});

describe('KeyAgent robustness', () => {
  it('a failing hook raises internal-error and the remaining effects still run', async () => {
    const alerts: string[] = [];
    const seen: string[] = [];
    const a = await person('alice');
    const agent = new KeyAgent(
      { roomId: ROOM, memberId: 'alice', inviteKeys: KEYS, identity: a.identity, session: a.session },
      {
        send: () => {
          throw new Error('boom');
        },
        sendKeyChanged: (k) => void seen.push(`key ${k.generation}/${k.step}`),
        sendKeyFailed: () => expect.unreachable(),
        installReceiveKey: () => undefined,
        onEffect: (e) => {
          if (e.kind === 'alert') alerts.push(`${e.reason}:${e.detail ?? ''}`);
          else seen.push(e.kind);
        },
      },
    );
    await agent.join(0, []);
    expect(alerts).toEqual(['internal-error:announce: Error', 'internal-error:commit-room-code: Error']);
    expect(seen).toEqual(['key 0/0', 'roster-changed']); // the effects around the failing ones still ran
    agent.destroy();
  });

  it('dispatch runs events one at a time in order; a failing event rejects only its own promise', async () => {
    const a = await person('alice');
    const log: string[] = [];
    const agent = new KeyAgent(
      { roomId: ROOM, memberId: 'alice', inviteKeys: KEYS, identity: a.identity, session: a.session },
      {
        send: (m) => void log.push(`send ${decodeRelay(m.bytes).kind}`),
        sendKeyChanged: (k) => void log.push(`key ${k.generation}/${k.step}`),
        sendKeyFailed: () => expect.unreachable(),
        installReceiveKey: () => undefined,
      },
    );
    // fired without awaiting: the second (not a membership event: the reducer throws) must not stop the third
    const results = await Promise.allSettled([agent.join(0, []), agent.dispatch({ type: 'bogus', now: 1 } as unknown as MembershipEvent), agent.tick(600_001)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // alone in the room, the room-code round completes at once: commit, then reveal
    expect(log).toEqual(['key 0/0', 'send announcement', 'send code-commit', 'send code-reveal', 'key 1/0']);
    expect(currentRoomCode(agent.state)).not.toBeNull();
    expect(agent.state.sendEpoch).toBe(2);
    agent.destroy();
  });
});
