/**
 * Adversarial membership tests: 3+ simulated members, each with the real KeyAgent + reducer, real key rings and real
 * SFrame, talking through a scriptable malicious relay (relay-sim.ts). Design brief properties 2, 3, 4, 6, 7.
 */
import { describe, expect, it } from 'vitest';
import { decodeKeyBatch, encodeKeyBatch } from '../../client/src/e2ee/envelope.ts';
import { newSession, SIGNATURE_LEN } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import { deriveInviteKeysSync } from '../../client/src/e2ee/invite.ts';
import { decodeRelay, encodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { encodeSignedAnnouncement, MAC_LEN } from '../../client/src/e2ee/membership-messages.ts';
import { roster } from '../../client/src/e2ee/membership.ts';
import { bruteOpen, hex, INVITE_KEYS, keysHeldBy, ROOM, rewriteBlob, Sim, vp8Frame, type Packet, type SimMember } from './relay-sim.ts';

const ids = (m: SimMember): string[] => roster(m.agent.state).map((r) => r.memberId).sort();
const alertsOf = (m: SimMember): string[] => m.alerts.map((a) => `${a.reason}:${a.memberId ?? ''}${a.detail !== undefined ? `:${a.detail}` : ''}`);

/** Every recipient id named in key batches the relay saw. */
function batchRecipients(tap: readonly Packet[]): string[] {
  return tap.filter((p) => p.kind === 'key-batch').flatMap((p) => decodeKeyBatch(decodeRelay(p.bytes).body).entries.map((e) => e.recipientMemberId));
}

/** All ordered pairs read each other's fresh frames. */
async function allRead(sim: Sim, members: string[]): Promise<void> {
  for (const s of members)
    for (const r of members) {
      if (s === r) continue;
      const f = vp8Frame(false);
      expect(await sim.reads(r, await sim.sendFrame(s, f), f), `${s} -> ${r}`).toBe(true);
    }
}

describe('adversarial relay: membership and key transport', () => {
  it('happy path: 3 join, all read all; a 4th joins (ratchet), one leaves (fresh keys), the rest still read each other', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    for (const id of ['alice', 'bob', 'carol']) expect(ids(sim.member(id))).toEqual(['alice', 'bob', 'carol']);
    await allRead(sim, ['alice', 'bob', 'carol']);

    await sim.join('dave');
    // existing members switched by ratchet (same generation, step + 1) and derive each other's new keys locally
    for (const id of ['alice', 'bob', 'carol']) expect(sim.member(id).sendKeys.at(-1)!.kid & 0xfn).toBeGreaterThan(0n);
    await allRead(sim, ['alice', 'bob', 'carol', 'dave']);

    sim.advance(100);
    await sim.leave('bob');
    for (const id of ['alice', 'carol', 'dave']) expect(ids(sim.member(id))).toEqual(['alice', 'carol', 'dave']);
    await allRead(sim, ['alice', 'carol', 'dave']);
    sim.advance(5000); // past the grace period of the superseded keys
    await allRead(sim, ['alice', 'carol', 'dave']);
    for (const m of sim.members.values()) expect(m.alerts, m.memberId).toEqual([]);
    expect(new Set(['alice', 'carol', 'dave'].map((id) => sim.code(id))).size).toBe(1);
  });

  it('property 2: a member injected by the server without the invite secret gets no keys and is flagged by every honest member', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    const tapBefore = sim.tap.length;
    // valid identity and session key, but an invite secret it guessed: wrong membership MAC key and PSK
    const wrong = deriveInviteKeysSync(crypto.getRandomValues(new Uint8Array(32)), ROOM);
    const mallory = await sim.join('mallory', wrong);
    // the server also replays the honest members' announcements to it, as if it were a real member
    for (const p of sim.tap.slice(0, tapBefore).filter((x) => x.kind === 'announcement')) sim.inject({ from: p.from, to: 'mallory', bytes: p.bytes });
    await sim.pump();
    sim.advance(1000);
    await sim.tickAll();

    for (const id of ['alice', 'bob', 'carol']) {
      const m = sim.member(id);
      expect(alertsOf(m)).toContain('bad-mac:mallory');
      expect(ids(m)).toEqual(['alice', 'bob', 'carol']);
      expect(m.agent.state.members.has('mallory')).toBe(false);
    }
    // nobody sealed a key for it, and it installed nothing
    expect(batchRecipients(sim.tap.slice(tapBefore))).not.toContain('mallory');
    expect(mallory.installed).toEqual([]);
    expect(ids(mallory)).toEqual(['mallory']);

    // its key batches and metadata are refused before any crypto (unknown sender)
    for (const to of ['alice', 'bob', 'carol']) {
      sim.inject({ from: 'mallory', to, bytes: encodeRelay('key-batch', new Uint8Array(40)) });
      sim.inject({ from: 'mallory', to, bytes: encodeRelay('metadata', Uint8Array.of(1, ...new Uint8Array(39))) });
    }
    await sim.pump();
    for (const id of ['alice', 'bob', 'carol']) expect(alertsOf(sim.member(id))).toEqual(expect.arrayContaining(['unknown-sender:mallory:key-batch', 'unknown-sender:mallory:metadata']));

    // and its media never reaches a decoder: its frames are dropped (its sender index was never admitted)
    const frames = [await sim.sendFrame('mallory', vp8Frame()), await sim.sendFrame('mallory', vp8Frame(false))];
    for (const id of ['alice', 'bob', 'carol']) {
      for (const f of frames) expect((await sim.receiveFrame(id, f)).status).toBe('dropped');
      // honest traffic is unaffected
    }
    await allRead(sim, ['alice', 'bob', 'carol']);
    // the honest members' room codes agree and do not include mallory
    expect(new Set(['alice', 'bob', 'carol'].map((id) => sim.code(id))).size).toBe(1);
  });

  it('property 3: a swapped session key in an announcement fails the MAC (outsider relay) and the signature (relay that knows the invite)', async () => {
    const attackerSession = (await newSession(await createIdentity(), ROOM, 'bob')).keyPair.publicKey;
    const swap = (bytes: Uint8Array, macKey?: Uint8Array): Uint8Array =>
      rewriteBlob(bytes, (b) => {
        const ann = b.subarray(1);
        const body = ann.slice(0, ann.length - SIGNATURE_LEN - MAC_LEN);
        const sig = ann.slice(ann.length - SIGNATURE_LEN - MAC_LEN, ann.length - MAC_LEN);
        // body = 0x01 || lp16(room) || lp16(member) || identity(32) || session(1216) || nonce(16)
        const off = 1 + 2 + ROOM.length + 2 + (body[3 + ROOM.length]! << 8 | body[4 + ROOM.length]!) + 32;
        body.set(attackerSession, off);
        if (macKey === undefined) {
          ann.set(body, 0); // MAC left as it was
          return b;
        }
        return Uint8Array.of(b[0]!, ...encodeSignedAnnouncement({ body, signature: sig }, macKey));
      });

    for (const [label, macKey, reason] of [
      ['outsider', undefined, 'bad-mac'],
      ['insider', INVITE_KEYS.membershipMacKey, 'bad-signature'],
    ] as const) {
      const sim = new Sim();
      await sim.join('alice');
      await sim.join('carol');
      // every announcement bob sends is rewritten with the attacker's session key
      sim.rules.push((p) => (p.from === 'bob' && p.kind === 'announcement' ? { replace: [{ ...p, bytes: swap(p.bytes, macKey) }] } : undefined));
      const tapBefore = sim.tap.length;
      await sim.join('bob');
      for (const id of ['alice', 'carol']) {
        expect(alertsOf(sim.member(id)), label).toContain(`${reason}:bob`);
        expect(sim.member(id).agent.state.members.has('bob'), label).toBe(false);
      }
      // no key was ever sealed to bob (and so none to the attacker's key)
      expect(batchRecipients(sim.tap.slice(tapBefore)), label).not.toContain('bob');
      expect(sim.member('bob').installed, label).toEqual([]);
    }
  });

  it('property 3: replayed key batches and announcements are rejected or idempotent; no extra key is installed', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    sim.advance(60_000);
    await sim.tickAll(); // fresh keys: follow-up envelopes on existing channels
    const installedBefore = [...sim.members.values()].map((m) => m.installed.length);
    const batches = sim.delivered.filter((p) => p.kind === 'key-batch');
    expect(batches.length).toBeGreaterThanOrEqual(6);
    for (const p of batches) sim.inject({ from: p.from, to: p.to, bytes: p.bytes });
    const anns = sim.delivered.filter((p) => p.kind === 'announcement');
    for (const p of anns) sim.inject({ from: p.from, to: p.to, bytes: p.bytes });
    await sim.pump();
    expect([...sim.members.values()].map((m) => m.installed.length)).toEqual(installedBefore);
    for (const m of sim.members.values()) {
      expect(m.alerts.length).toBeGreaterThan(0);
      for (const a of m.alerts) {
        expect(a.reason).toBe('envelope-rejected');
        expect(['replay', 'state']).toContain(a.detail);
      }
    }
    // replayed announcements changed nothing
    for (const id of ['alice', 'bob', 'carol']) expect(ids(sim.member(id))).toEqual(['alice', 'bob', 'carol']);
    await allRead(sim, ['alice', 'bob', 'carol']);
  });

  it('property 3: an envelope re-addressed to another recipient, or re-attributed to another sender, installs nothing', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol', 'dave']) await sim.join(id);
    // dave's join: alice sent a batch to dave only (ratchet); take it
    const toDave = sim.delivered.find((p) => p.kind === 'key-batch' && p.from === 'alice' && p.to === 'dave')!;
    expect(toDave).toBeDefined();
    const before = sim.member('carol').installed.length;

    // 1. delivered unchanged to carol: carol has no entry in it, ignores it
    await sim.deliver({ ...toDave, to: 'carol', forged: true });
    expect(sim.member('carol').installed.length).toBe(before);

    // 2. the entry's recipient rewritten from "dave" to "carol" (same length ids would be easier; any id works)
    const b = decodeKeyBatch(decodeRelay(toDave.bytes).body);
    const readdressed = encodeRelay('key-batch', encodeKeyBatch({ ...b, entries: b.entries.map((e) => ({ ...e, recipientMemberId: 'carol' })) }));
    await sim.deliver({ ...toDave, to: 'carol', bytes: readdressed, forged: true });
    expect(sim.member('carol').installed.length).toBe(before);
    expect(alertsOf(sim.member('carol')).at(-1)).toMatch(/^envelope-rejected:alice:(bad-signature|auth|state|replay)$/);

    // 3. the relay claims bob sent alice's batch (re-attribution): wrong-context
    await sim.deliver({ ...toDave, from: 'bob', forged: true });
    expect(alertsOf(sim.member('dave')).at(-1)).toBe('envelope-rejected:bob:wrong-context');
    // 4. announcement re-attributed (alice's answer to carol's announcement)
    const ann = sim.delivered.find((p) => p.kind === 'announce-back' && p.from === 'alice')!;
    await sim.deliver({ ...ann, from: 'bob', to: 'carol', forged: true });
    expect(alertsOf(sim.member('carol')).at(-1)).toBe('member-id-mismatch:bob:alice');
    // 5. a batch for another room (cross-room replay) is refused
    const other = { ...b, roomId: 'OtherRoomOtherRoomOthe' };
    await sim.deliver({ ...toDave, bytes: encodeRelay('key-batch', encodeKeyBatch(other)), forged: true });
    expect(alertsOf(sim.member('dave')).at(-1)).toBe('envelope-rejected:alice:wrong-context');

    for (const id of ['alice', 'bob', 'carol', 'dave']) expect(ids(sim.member(id))).toEqual(['alice', 'bob', 'carol', 'dave']);
    await allRead(sim, ['alice', 'bob', 'carol', 'dave']);
  });

  it('property 4: a partitioned roster shows no room code (its rounds never complete); the same roster shows the same code everywhere', async () => {
    const sim = new Sim();
    // the server keeps alice and carol apart: it never forwards their blobs to each other and lies in join responses
    const apart = (a: string, b: string): boolean => (a === 'alice' && b === 'carol') || (a === 'carol' && b === 'alice');
    sim.rules.push((p) => (apart(p.from, p.to) ? 'hold' : undefined));
    sim.joinResponse = (j, truth) => truth.filter((t) => !apart(j, t));
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    expect(ids(sim.member('alice'))).toEqual(['alice', 'bob']);
    expect(ids(sim.member('bob'))).toEqual(['alice', 'bob', 'carol']);
    expect(ids(sim.member('carol'))).toEqual(['bob', 'carol']);
    // A round completes only with a commitment for the same roster from every member of it. Bob's round over
    // {alice, bob, carol} and carol's over {bob, carol} never do: neither shows a code. (Alice's roster has not changed
    // since she and bob agreed on {alice, bob}, so she still shows that round's code, which bob no longer shows.)
    expect(sim.roomCode('bob')).toBeNull();
    expect(sim.roomCode('carol')).toBeNull();
    // alice and carol cannot read each other, but both read bob and bob reads both
    const fa = vp8Frame(false);
    expect(await sim.reads('carol', await sim.sendFrame('alice', fa), fa)).toBe(false);
    await allRead(sim, ['alice', 'bob']);
    await allRead(sim, ['bob', 'carol']);

    // heal: the held messages go through; now all three see one roster and one code
    sim.rules.length = 0;
    await sim.release();
    for (const id of ['alice', 'bob', 'carol']) expect(ids(sim.member(id))).toEqual(['alice', 'bob', 'carol']);
    expect(new Set(['alice', 'bob', 'carol'].map((id) => sim.code(id))).size).toBe(1);
    await allRead(sim, ['alice', 'bob', 'carol']);

    // the server tells only alice that bob left: alice's roster (and code) now differ; the others still agree
    await sim.fakeLeave('bob', 'alice');
    expect(ids(sim.member('alice'))).toEqual(['alice', 'carol']);
    expect(sim.roomCode('alice')).toBeNull(); // a new round carol never joins
    expect(sim.code('bob')).toBe(sim.code('carol'));
    // and alice's fresh key went to carol only: bob (still present) can no longer read alice (fail closed)
    const f = vp8Frame(false);
    expect(await sim.reads('bob', await sim.sendFrame('alice', f), f)).toBe(false);
  });

  it('property 6: a member who left cannot open frames sealed after the rekey, with every key it ever held', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol', 'dave']) await sim.join(id);
    const f0 = vp8Frame(false);
    const pre = await sim.sendFrame('alice', f0);
    const bob = sim.member('bob');
    // sanity: bob's keys open pre-leave frames
    expect(await bruteOpen(pre, keysHeldBy(bob))).toBeGreaterThan(0);
    sim.advance(10);
    await sim.leave('bob');
    sim.advance(10);
    const keys = keysHeldBy(bob, 16);
    const allKids = [...new Set([...bob.installed.map((k) => k.kid), ...bob.sendKeys.map((k) => k.kid)])];
    expect(keys.length).toBeGreaterThan(40);
    for (const s of ['alice', 'carol', 'dave']) {
      for (const key of [true, false]) {
        const f = vp8Frame(key);
        const data = await sim.sendFrame(s, f);
        // the remaining members read it ...
        for (const r of ['alice', 'carol', 'dave']) if (r !== s) expect(await sim.reads(r, data, f)).toBe(true);
        // ... the leaver does not, with any key it held, ratcheted up to 16 steps, under the frame's KID or any KID it knew
        expect(await bruteOpen(data, keys, 'vp8', allKids), `${s} frame opened by a leaver key`).toBe(0);
        // nor through its own (stale) key rings
        expect((await sim.receiveFrame('bob', data)).status).not.toBe('ok');
      }
    }
  });

  it('property 6: a joiner cannot open frames sealed before it joined (tapped by the relay), with every key it got', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    const preJoin: Uint8Array[] = [];
    for (const s of ['alice', 'bob', 'carol']) for (const key of [true, false]) preJoin.push(await sim.sendFrame(s, vp8Frame(key)));
    sim.advance(10);
    const dave = await sim.join('dave');
    expect(dave.installed.map((k) => k.from).sort()).toEqual(['alice', 'bob', 'carol']);
    const keys = keysHeldBy(dave, 16);
    const kids = dave.installed.map((k) => k.kid);
    // sanity: its keys open post-join frames
    for (const s of ['alice', 'bob', 'carol']) {
      const f = vp8Frame(false);
      const d = await sim.sendFrame(s, f);
      expect(await sim.reads('dave', d, f)).toBe(true);
      expect(await bruteOpen(d, keys)).toBeGreaterThan(0);
    }
    for (const data of preJoin) {
      expect(await bruteOpen(data, keys, 'vp8', kids)).toBe(0);
      expect((await sim.receiveFrame('dave', data)).status).not.toBe('ok');
    }
    expect(dave.recv.totals().opened).toBe(3);
  });

  it('drop: a dropped key batch leaves the recipient waiting; frames are buffered, then dropped and counted as expired, never opened', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    await sim.join('alice');
    await sim.join('bob');
    sim.rules.push((p) => (p.kind === 'key-batch' && p.from === 'alice' && p.to === 'carol' ? 'drop' : undefined));
    await sim.join('carol');
    expect(ids(sim.member('carol'))).toEqual(['alice', 'bob', 'carol']); // alice is verified, her key never came
    expect(sim.member('carol').installed.map((k) => k.from)).toEqual(['bob']);
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await sim.sendFrame('alice', vp8Frame(i === 0)));
    for (const d of frames) expect((await sim.receiveFrame('carol', d)).status).toBe('buffered');
    expect(sim.member('carol').recv.totals().buffered).toBe(5);
    sim.advance(999);
    expect(sim.member('carol').recv.tick(sim.now)).toBe(0);
    sim.advance(1);
    expect(sim.member('carol').recv.tick(sim.now)).toBe(5);
    const t = sim.member('carol').recv.totals();
    expect(t.dropped.expired).toBe(5);
    expect(t.opened).toBe(0);
    // bob is unaffected
    await allRead(sim, ['bob', 'carol']);
  });

  it('reorder: two key batches from one sender delivered in reverse order never install the wrong key; the stale one is refused', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    await sim.join('alice');
    await sim.join('bob');
    // hold alice -> bob batches of two rotations, then deliver them newest first
    sim.rules.push((p) => (p.kind === 'key-batch' && p.from === 'alice' && p.to === 'bob' ? 'hold' : undefined));
    for (let i = 0; i < 2; i++) {
      sim.advance(60_000);
      await sim.member('alice').agent.tick(sim.now);
      await sim.pump();
    }
    expect(sim.held.length).toBe(2);
    const aliceKeys = new Map(sim.member('alice').sendKeys.map((k) => [hex(k.baseKey), k.kid]));
    sim.rules.length = 0;
    await sim.release(() => true, (ps) => [...ps].reverse());
    const bob = sim.member('bob');
    // whatever was installed is exactly a key alice used, under its own KID
    for (const k of bob.installed.filter((x) => x.from === 'alice')) expect(aliceKeys.get(hex(k.baseKey))).toBe(k.kid);
    // and the stale/out-of-order one was refused with a typed reason
    expect(bob.alerts.map((a) => `${a.reason}:${a.detail}`)).toEqual(expect.arrayContaining([expect.stringMatching(/^envelope-rejected:(state|replay)$/)]));
    // frames under alice's current key: opened only if bob holds exactly that key, never wrongly
    const f = vp8Frame(false);
    const r = await sim.receiveFrame('bob', await sim.sendFrame('alice', f));
    expect(['ok', 'buffered']).toContain(r.status);
    if (r.status === 'ok') expect(hex(new Uint8Array([...r.metadata, ...r.plaintext]))).toBe(hex(f));
  });
});
