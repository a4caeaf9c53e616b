/**
 * Adversary: the server replays, duplicates, re-attributes and reorders profiles and chat (issue 13 §6). Names and chat
 * are signed by the sender's identity for its current session and numbered; receivers show each once, under the
 * name the sender signed, and only from the session that signed it. Real E2eeSessions over the scriptable relay.
 */
import { describe, expect, it } from 'vitest';
import { utf8 } from '../../client/src/e2ee/bytes.ts';
import { signMessage } from '../../client/src/e2ee/signed-message.ts';
import { RelayChannel } from '../../client/src/session/relay-channel.ts';
import { eventsOf, INVITE_KEYS, ROOM, SessionRoom, type RelayPacket } from '../session/session-sim.ts';

const chats = (b: Parameters<typeof eventsOf>[0]) => eventsOf(b, 'chat').map((e) => `${e.from}: ${e.text}`);

describe('property: a chat message is shown once, from the member who sent it', () => {
  it('the server delivering the same chat blob three times shows it once', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice');
    const bob = room.add('bob');
    await room.join('alice');
    await room.join('bob');
    const mark = room.tap.length;
    await alice.session.sendChat('only once');
    const sent = room.tap.slice(mark).filter((p) => p.to === 'bob');
    expect(sent).toHaveLength(1);
    room.inject(sent[0]!);
    room.inject(sent[0]!);
    await room.settle();
    expect(chats(bob)).toEqual(['alice: only once']);
  });

  it('a chat blob re-attributed to another member is not shown under that member', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice');
    const bob = room.add('bob');
    const carol = room.add('carol');
    for (const n of ['alice', 'bob', 'carol']) await room.join(n);
    const mark = room.tap.length;
    await alice.session.sendChat('from alice');
    await room.settle();
    const toBob = room.tap.slice(mark).find((p) => p.to === 'bob')!;
    room.inject({ ...toBob, from: 'carol' });
    await room.settle();
    expect(chats(bob)).toEqual(['alice: from alice']);
    expect(eventsOf(carol, 'alert').length + eventsOf(bob, 'alert').length).toBeGreaterThan(0);
  });
});

describe('property: a display name is the one its member signed in this session', () => {
  it('a departed member’s profile replayed under a recycled member id does not name the newcomer', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice', { displayName: 'Alice' });
    room.add('bob', { displayName: 'Bob the Treasurer' });
    await room.join('alice');
    await room.join('bob');
    expect(alice.session.nameOf('bob')).toBe('Bob the Treasurer');
    const bobsPackets = room.tap.filter((p) => p.from === 'bob' && p.to === 'alice');
    await room.leave('bob');
    // An invite holder joins, and the server hands her Bob's old member id, then replays everything Bob ever sent.
    room.add('mallory', { displayName: 'Mallory' });
    await room.join('mallory', 'bob');
    for (const p of bobsPackets) room.inject(p);
    await room.settle();
    expect(alice.session.nameOf('bob')).toBe('Mallory');
    expect(alice.session.members.find((m) => m.peerId === 'bob')?.name).toBe('Mallory');
  });

  it('another invite holder cannot sign a profile for someone else', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice', { displayName: 'Alice' });
    room.add('bob', { displayName: 'Bob' });
    const eve = room.add('eve', { displayName: 'Eve' });
    for (const n of ['alice', 'bob', 'eve']) await room.join(n);
    // Eve holds the invite's metadata key, so she can seal a profile that claims to come from Bob, with a high sequence
    // number — but she can only sign it with her own identity.
    const forged: Uint8Array[] = [];
    const asBob = new RelayChannel({ roomId: ROOM, metadataKey: INVITE_KEYS.metadataKey }, { send: async (b) => void forged.push(b) }, () => undefined);
    asBob.bind('bob');
    const ctx = { roomId: ROOM, memberId: 'bob', sessionPublicKey: new Uint8Array(1216) };
    await asBob.sendProfile('Bob (send the wire now)', { seq: 1000, sig: await signMessage(await eve.store.loadIdentity(), 'profile', ctx, 1000, utf8('Bob (send the wire now)')) });
    room.inject({ from: 'bob', to: 'alice', bytes: forged[0]! });
    await room.settle();
    expect(alice.session.relayStats.foreign).toBe(0); // the envelope opened: only the signature stops it
    expect(alice.session.nameOf('bob')).toBe('Bob');
  });

  it('profiles go only to admitted members: a member with a wrong invite is sent none', async () => {
    const room = new SessionRoom();
    room.add('alice', { displayName: 'Alice' });
    room.add('mallory', { inviteKeys: (await import('../../client/src/e2ee/invite.ts')).deriveInviteKeysSync(new Uint8Array(32).fill(9), (await import('./relay-sim.ts')).ROOM) });
    await room.join('alice');
    await room.join('mallory');
    expect(room.tap.filter((p) => p.from === 'alice' && p.to === 'mallory')).toEqual([]);
  });

  it('a profile that overtakes its sender’s admission waits and is shown once the sender is admitted', async () => {
    const room = new SessionRoom();
    room.add('alice', { displayName: 'Alice' });
    const bob = room.add('bob', { displayName: 'Bob' });
    await room.join('alice');
    await room.join('bob');
    await room.leave('alice');
    // Alice rejoins as alice-2. The server passes her announcement to Bob, holds everything she sends him after it,
    // then delivers that in reverse order: her profile reaches Bob before what admits her.
    const held: RelayPacket[] = [];
    let first = true;
    room.rules.push((p) => {
      if (p.from !== 'alice-2' || p.to !== 'bob') return 'pass';
      if (first) return (first = false), 'pass';
      held.push(p);
      return 'drop';
    });
    await room.join('alice', 'alice-2');
    expect(held.length).toBeGreaterThanOrEqual(2);
    expect(bob.session.nameOf('alice-2')).toBeUndefined();
    room.rules.length = 0;
    for (const p of [...held].reverse()) room.inject(p);
    await room.settle();
    expect(bob.session.nameOf('alice-2')).toBe('Alice');
  });
});
