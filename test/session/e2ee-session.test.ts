/**
 * The call session layer end to end in Node: three real E2eeSessions over an in-memory relay (the untrusted
 * server), a recording fake of the transform worker and a manual clock. Each test names the property it defends.
 */
import { describe, expect, it, vi } from 'vitest';
import { deriveInviteKeysSync } from '../../client/src/e2ee/invite.ts';
import { sealRelay } from '../../client/src/e2ee/relay-envelope.ts';
import { KeyBridge } from '../../client/src/session/key-bridge.ts';
import { eventsOf, ROOM, SessionRoom, type Browser, type RelayPacket } from './session-sim.ts';

async function threeWay(): Promise<{ room: SessionRoom; a: Browser; b: Browser; c: Browser }> {
  const room = new SessionRoom();
  const a = room.add('alice');
  const b = room.add('bob');
  const c = room.add('carol');
  await room.join('alice');
  await room.join('bob');
  await room.join('carol');
  return { room, a, b, c };
}

/** The sender index a browser's worker seals under (from its last set-send-key). */
const senderIndexOf = (x: Browser): number => x.frames.sendKeys.at(-1)!.senderIndex;

describe('session layer: three members over an in-memory relay', () => {
  it('everyone holds everyone else’s current key and all see the same room code and names', async () => {
    const { a, b, c } = await threeWay();
    for (const x of [a, b, c]) {
      expect(x.session.sending).toBe(true);
      expect(x.session.members.map((m) => m.peerId).sort()).toEqual(['alice', 'bob', 'carol'].filter((id) => id !== x.id).sort());
      for (const m of x.session.members) expect(m.name).toBe(m.peerId);
    }
    expect(a.session.roomCode).not.toBeNull();
    expect(b.session.roomCode).toEqual(a.session.roomCode);
    expect(c.session.roomCode).toEqual(a.session.roomCode);
  });

  it('the KIDs and keys a sender’s worker seals under are exactly the ones its peers are given (and never repeat)', async () => {
    const { room, a, b, c } = await threeWay();
    await room.leave('bob'); // a fresh key for everyone left
    const aIdx = senderIndexOf(a);
    const sealedUnder = a.frames.sendKeys.map((k) => k.kid);
    expect(new Set(sealedUnder).size).toBe(sealedUnder.length);
    expect([...sealedUnder].sort((x, y) => (x < y ? -1 : 1))).toEqual(sealedUnder);
    // Carol was given the key of each of Alice's KIDs from her join on, byte for byte.
    const givenToCarol = c.frames.receiveKeys.filter((k) => k.senderIndex === aIdx);
    expect(givenToCarol.length).toBeGreaterThanOrEqual(2);
    for (const g of givenToCarol) {
      const sent = a.frames.sendKeys.find((k) => k.kid === g.kid);
      expect(sent, `kid ${g.kid}`).toBeDefined();
      expect(Buffer.from(g.baseKey).equals(Buffer.from(sent!.baseKey))).toBe(true);
    }
    // The last key Alice's worker switched to is the last one Carol got from her.
    expect(givenToCarol.at(-1)!.kid).toBe(sealedUnder.at(-1));
    // Bob, who left, never got Alice's post-leave key.
    const bobGot = b.frames.receiveKeys.filter((k) => k.senderIndex === aIdx).map((k) => k.kid);
    expect(bobGot).not.toContain(sealedUnder.at(-1));
  });

  it('each chat message is decrypted exactly once per receiver and shown with its text', async () => {
    const { room, a, b, c } = await threeWay();
    const open = vi.spyOn(KeyBridge.prototype, 'openChat');
    try {
      await a.session.sendChat('hello from alice');
      await room.settle();
      expect(open).toHaveBeenCalledTimes(2);
    } finally {
      open.mockRestore();
    }
    for (const x of [b, c]) expect(eventsOf(x, 'chat').map((e) => [e.from, e.text])).toEqual([['alice', 'hello from alice']]);
    expect(eventsOf(a, 'chat')).toEqual([]);
  });

  it('a chat message that overtakes its sender’s new key waits for the key instead of being lost', async () => {
    const { room, a, b } = await threeWay();
    const held: RelayPacket[] = [];
    room.rules.push((p) => (p.from === 'alice' && p.to === 'bob' ? (held.push(p), 'drop') : 'pass'));
    await room.leave('carol'); // Alice switches to a fresh key and sends it to Bob (held)
    await a.session.sendChat('right after the rekey');
    await room.settle();
    room.rules.length = 0;
    expect(held.length).toBeGreaterThanOrEqual(2);
    for (const p of [...held].reverse()) room.inject(p); // the chat first, then the key batch
    await room.settle();
    expect(eventsOf(b, 'chat').map((e) => e.text)).toEqual(['right after the rekey']);
    expect(eventsOf(b, 'chat-dropped')).toEqual([]);
  });

  it('chat keys are wiped when a member is forgotten: its old messages no longer open', async () => {
    const { room, a, b } = await threeWay();
    await b.session.sendChat('before leaving');
    const sealedByBob = room.tap.filter((p) => p.from === 'bob' && p.to === 'alice').at(-1)!;
    await room.settle();
    expect(a.session.bridge!.hasChatKey('bob')).toBe(true);
    await room.leave('bob');
    expect(a.session.bridge!.hasChatKey('bob')).toBe(false);
    // The server replays Bob's last chat blob to Alice: it is dropped, not shown.
    const before = eventsOf(a, 'chat').length;
    room.inject(sealedByBob);
    await room.settle();
    expect(eventsOf(a, 'chat').length).toBe(before);
    expect(eventsOf(a, 'chat-dropped').map((e) => e.from)).toContain('bob');
  });

  it('relay traffic whose outer envelope does not open under the invite raises the injected-member alert', async () => {
    const { room, a } = await threeWay();
    const otherInvite = deriveInviteKeysSync(new Uint8Array(32).fill(7), ROOM);
    const forged = await sealRelay(otherInvite.metadataKey, ROOM, 'mallory', new Uint8Array([0x41, 1, 2, 3]));
    room.inject({ from: 'mallory', to: 'alice', bytes: forged });
    room.inject({ from: 'mallory', to: 'alice', bytes: new Uint8Array(40).fill(9) });
    await room.settle();
    const alerts = eventsOf(a, 'alert').map((e) => e.alert.kind);
    expect(alerts.filter((k) => k === 'injected-member').length).toBe(2);
    expect(a.session.relayStats.foreign).toBe(2);
    // Re-attribution is the same failure: Bob's real blob presented as Carol's.
    const bobs = room.tap.find((p) => p.from === 'bob' && p.to === 'alice')!;
    room.inject({ ...bobs, from: 'carol' });
    await room.settle();
    expect(a.session.relayStats.foreign).toBe(3);
  });

  it('a rejoin wipes the old session’s keys: the worker is cleared and the new member gets new keys', async () => {
    const { room, a, b } = await threeWay();
    const oldBridge = a.session.bridge!;
    const oldKid = a.frames.sendKeys.at(-1)!.kid;
    const callsBefore = a.frames.calls.length;
    await room.leave('alice');
    const afterLeave = a.frames.calls.slice(callsBefore).map((c) => c.kind);
    expect(afterLeave).toEqual(['clear-send-key', 'forget-all-senders']);
    expect(a.session.bridge).toBeNull();
    expect(oldBridge.currentSendKey()).toBeNull();
    expect(oldBridge.hasChatKey('bob')).toBe(false);
    await expect(oldBridge.sealChat('x')).rejects.toThrow();
    await expect(a.session.sendChat('x')).rejects.toThrow();
    await room.join('alice', 'alice-2');
    expect(a.session.bridge).not.toBe(oldBridge);
    const newKey = a.frames.sendKeys.at(-1)!;
    expect(newKey.kid).not.toBe(oldKid);
    // Bob admitted the new member id and holds its new key, not the old one.
    const bobHas = b.frames.receiveKeys.filter((k) => k.senderIndex === newKey.senderIndex).map((k) => k.kid);
    expect(bobHas).toContain(newKey.kid);
    expect(b.session.members.map((m) => m.peerId).sort()).toEqual(['alice-2', 'carol']);
  });

  it('a member joining with a wrong invite gets no keys and raises the injected-member alert at the others', async () => {
    const room = new SessionRoom();
    const a = room.add('alice');
    const m = room.add('mallory', { inviteKeys: deriveInviteKeysSync(new Uint8Array(32).fill(3), ROOM) });
    await room.join('alice');
    await room.join('mallory');
    expect(eventsOf(a, 'alert').some((e) => e.alert.kind === 'injected-member')).toBe(true);
    expect(m.frames.receiveKeys).toEqual([]);
    expect(a.session.members.find((x) => x.peerId === 'mallory')?.keyState).toBe('waiting');
  });
});
