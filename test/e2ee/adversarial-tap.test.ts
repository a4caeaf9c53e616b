/**
 * What the server sees, and what an insider colluding with it can do (design brief properties 1, 4, 5).
 */
import { describe, expect, it } from 'vitest';
import { safetyNumber } from '../../client/src/e2ee/codes.ts';
import { fromUtf8, utf8 } from '../../client/src/e2ee/bytes.ts';
import { newSession } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import { encodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { encodeSignedAnnouncement, proveLiveness } from '../../client/src/e2ee/membership-messages.ts';
import { roster } from '../../client/src/e2ee/membership.ts';
import { openMetadata, sealMetadata } from '../../client/src/e2ee/metadata.ts';
import { hex, INVITE_KEYS, INVITE_SECRET, ROOM, Sim, vp8Frame, type SimMember } from './relay-sim.ts';

const ids = (m: SimMember): string[] => roster(m.agent.state).map((r) => r.memberId).sort();

/** True if any `len`-byte window of `needle` occurs in `hay`. */
function leaks(hay: Uint8Array, needle: Uint8Array, len = 12): boolean {
  const h = hex(hay);
  for (let i = 0; i + len <= needle.length; i += 4) if (h.includes(hex(needle.subarray(i, i + len)))) return true;
  return false;
}

describe('what the server sees', () => {
  it('property 1: a tap of everything the relay and SFU forwarded holds no key, no media plaintext, no display name', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    const names = new Map([
      ['alice', 'Alice Liddell, secret agenda'],
      ['bob', 'Bob the Builder of Bridges'],
      ['carol', 'Carol Danvers from Accounting'],
    ]);
    for (const [id, name] of names) await sim.send(id, encodeRelay('metadata', await sealMetadata(INVITE_KEYS.metadataKey, ROOM, id, utf8(name))));
    // the other members get the names (metadata effect from verified members, opened with the invite's key)
    for (const m of ['alice', 'bob', 'carol'].map((id) => sim.member(id))) {
      const got = new Map<string, string>();
      for (const e of m.effects) if (e.kind === 'metadata') got.set(e.from, fromUtf8(await openMetadata(INVITE_KEYS.metadataKey, ROOM, e.from, e.bytes)));
      expect(got.size).toBe(2);
      for (const [from, name] of got) expect(name).toBe(names.get(from));
    }
    await sim.join('dave');
    sim.advance(60_000);
    await sim.tickAll();
    await sim.leave('carol');
    const plain: Uint8Array[] = [];
    for (const s of ['alice', 'bob', 'dave'])
      for (let i = 0; i < 4; i++) {
        const f = vp8Frame(i === 0, 400);
        plain.push(f.subarray(10));
        await sim.sendFrame(s, f);
      }
    const tapped = [...sim.tap.map((p) => p.bytes), ...sim.frameTap.map((f) => f.data)];
    const all = new Uint8Array(tapped.reduce((n, b) => n + b.length, 0));
    let o = 0;
    for (const b of tapped) {
      all.set(b, o);
      o += b.length;
    }
    const secrets: [string, Uint8Array][] = [
      ['invite secret', INVITE_SECRET],
      ['membership MAC key', INVITE_KEYS.membershipMacKey],
      ['metadata key', INVITE_KEYS.metadataKey],
      ['psk', INVITE_KEYS.psk],
      ...[...names.values()].map((n): [string, Uint8Array] => [`name ${n}`, new TextEncoder().encode(n)]),
      ...plain.map((p, i): [string, Uint8Array] => [`frame ${i}`, p]),
    ];
    for (const m of sim.members.values()) {
      secrets.push([`${m.memberId} identity secret`, m.identity.secretKey], [`${m.memberId} session secret`, m.session.keyPair.secretKey]);
      for (const k of m.sendKeys) secrets.push([`${m.memberId} base key ${k.kid}`, k.baseKey]);
    }
    expect(secrets.length).toBeGreaterThan(40);
    for (const [what, s] of secrets) expect(leaks(all, s), what).toBe(false);
    // sanity: the check does find what is public (session public keys are in announcements)
    expect(leaks(all, sim.member('alice').session.keyPair.publicKey)).toBe(true);
  });

  it('property 1: a metadata blob the relay re-attributes to another member or replays into another room fails to open', async () => {
    const sealed = await sealMetadata(INVITE_KEYS.metadataKey, ROOM, 'alice', utf8('Alice'));
    await expect(openMetadata(INVITE_KEYS.metadataKey, ROOM, 'bob', sealed)).rejects.toThrow(/auth/);
    await expect(openMetadata(INVITE_KEYS.metadataKey, 'OtherRoomOtherRoomOthe', 'alice', sealed)).rejects.toThrow(/auth/);
    expect(fromUtf8(await openMetadata(INVITE_KEYS.metadataKey, ROOM, 'alice', sealed))).toBe('Alice');
  });

  it('properties 4, 5: an invited insider colluding with the server to stand in for bob is caught by the room code and the safety number', async () => {
    const sim = new Sim();
    await sim.join('alice');
    await sim.join('carol');
    // mallory holds the invite (valid MAC) and signs an announcement for member id "bob" with its own identity and session
    const mallory = await createIdentity();
    const fake = await newSession(mallory, ROOM, 'bob');
    const fakeBlob = encodeRelay('announcement', encodeSignedAnnouncement(fake, INVITE_KEYS.membershipMacKey));
    const alice = sim.member('alice');
    // mallory's liveness proof for alice's session (she holds the fake session, so she can answer alice's challenge)
    const fakeProof = encodeRelay(
      'liveness-proof',
      await proveLiveness(mallory, {
        roomId: ROOM,
        challenger: { memberId: 'alice', sessionPublicKey: alice.session.keyPair.publicKey, joinNonce: alice.session.announcement.joinNonce },
        responder: { memberId: 'bob', sessionPublicKey: fake.keyPair.publicKey },
      }),
    );
    // the server swaps bob's announcement for mallory's, towards alice only, and answers alice's challenge for her
    sim.rules.push((p) => (p.from === 'bob' && p.to === 'alice' && p.kind === 'announcement' ? { replace: [{ ...p, bytes: fakeBlob, forged: true }] } : undefined));
    sim.rules.push((p) => (p.from === 'alice' && p.to === 'bob' && p.kind === 'announce-back' ? { replace: [{ ...p, from: 'bob', to: 'alice', bytes: fakeProof, forged: true }] } : undefined));
    await sim.join('bob');
    expect(ids(sim.member('alice'))).toEqual(['alice', 'bob', 'carol']); // alice believes bob is there ...
    const aliceSeesBob = sim.member('alice').agent.state.members.get('bob')!;
    expect(hex(aliceSeesBob.identityPublicKey)).toBe(hex(mallory.publicKey)); // ... but it is mallory's key
    // room codes: alice's roster is not bob's or carol's, so no round completes anywhere: there is no code to read
    // aloud (the check "read me your code" fails) — and never two equal codes over different rosters
    expect(['alice', 'bob', 'carol'].map((id) => sim.roomCode(id))).toEqual([null, null, null]);
    // safety number alice <-> "bob" differs from the one bob computes with the real alice
    const bob = sim.member('bob');
    const aliceView = safetyNumber(sim.member('alice').identity.publicKey, aliceSeesBob.identityPublicKey).digits;
    const bobView = safetyNumber(bob.identity.publicKey, sim.member('alice').identity.publicKey).digits;
    expect(aliceView).not.toBe(bobView);
    // and bob's real announcement, if the server lets it through later, is flagged as a changed session
    await sim.deliver({ ...sim.tap.find((p) => p.from === 'bob' && p.kind === 'announcement')!, to: 'alice' });
    expect(sim.member('alice').alerts.map((a) => `${a.reason}:${a.memberId}`)).toContain('session-changed:bob');
    // the real bob never got alice's key, and alice's frames stay closed to it
    expect(bob.installed.some((k) => k.from === 'alice')).toBe(false);
    const f = vp8Frame(false);
    expect(await sim.reads('bob', await sim.sendFrame('alice', f), f)).toBe(false);
  });
});
