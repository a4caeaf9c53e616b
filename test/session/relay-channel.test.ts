/**
 * Relay channel (client/src/session/relay-channel.ts): the outer envelope both ways, arrival order, held blobs during
 * a join, and schema-checked, length-capped profiles.
 */
import { describe, expect, it } from 'vitest';
import { utf8 } from '../../client/src/e2ee/bytes.ts';
import { sealMetadata } from '../../client/src/e2ee/metadata.ts';
import { encodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { sealRelay } from '../../client/src/e2ee/relay-envelope.ts';
import { MAX_NAME_LEN, MAX_PENDING, RelayChannel, type RelayEvent } from '../../client/src/session/relay-channel.ts';
import { INVITE_KEYS, ROOM } from './session-sim.ts';

const key = INVITE_KEYS.metadataKey;
/** The channel carries the signature; checking it is the session's job (e2ee-session.test.ts). */
const SIGNED = { seq: 1, sig: new Uint8Array(64).fill(5) };
const SIG = Buffer.from(SIGNED.sig).toString('base64url');
const v2 = (name: unknown, extra: Record<string, unknown> = {}) => ({ t: 'profile', v: 2, name, seq: 1, sig: SIG, ...extra });

function pair(): { sent: { bytes: Uint8Array; to?: string }[]; events: RelayEvent[]; ch: RelayChannel } {
  const sent: { bytes: Uint8Array; to?: string }[] = [];
  const events: RelayEvent[] = [];
  const ch = new RelayChannel({ roomId: ROOM, metadataKey: key }, { send: async (bytes, to) => void sent.push({ bytes, ...(to !== undefined ? { to } : {}) }) }, (e) => void events.push(e));
  return { sent, events, ch };
}

const profileBlob = async (from: string, body: unknown): Promise<Uint8Array> =>
  sealRelay(key, ROOM, from, await sealMetadata(key, ROOM, from, utf8(JSON.stringify(body))));

describe('RelayChannel', () => {
  it('what one member sends, another opens as the same typed event; the wire form is one padded envelope', async () => {
    const alice = pair();
    const bob = pair();
    alice.ch.bind('alice');
    bob.ch.resume();
    await alice.ch.sendProfile('Alice', SIGNED);
    const membership = encodeRelay('announcement', new Uint8Array([1, 2, 3]));
    await alice.ch.sendMembership(membership, 'bob');
    expect(alice.sent.map((s) => s.to)).toEqual([undefined, 'bob']);
    for (const s of alice.sent) {
      expect(s.bytes[0]).toBe(0x01);
      expect((s.bytes.length - 29) % 1024).toBe(0);
    }
    for (const s of alice.sent) bob.ch.receive('alice', s.bytes);
    await bob.ch.idle();
    expect(bob.events).toEqual([
      { kind: 'profile', from: 'alice', name: 'Alice', seq: 1, sig: SIGNED.sig },
      { kind: 'membership', from: 'alice', bytes: membership },
    ]);
  });

  it('a blob attributed to another sender than the one who sealed it is foreign', async () => {
    const alice = pair();
    const bob = pair();
    alice.ch.bind('alice');
    bob.ch.resume();
    await alice.ch.sendProfile('Alice', SIGNED);
    bob.ch.receive('carol', alice.sent[0]!.bytes);
    await bob.ch.idle();
    expect(bob.events).toEqual([{ kind: 'foreign', from: 'carol' }]);
    expect(bob.ch.stats.foreign).toBe(1);
  });

  it('holds blobs while paused and hands them on in arrival order once resumed; drops past MAX_PENDING', async () => {
    const bob = pair();
    const blobs = await Promise.all(Array.from({ length: 5 }, (_, i) => profileBlob('alice', v2(`n${i}`))));
    for (const b of blobs) bob.ch.receive('alice', b);
    await bob.ch.idle();
    expect(bob.events).toEqual([]);
    bob.ch.resume();
    await bob.ch.idle();
    expect(bob.events.map((e) => (e.kind === 'profile' ? e.name : e.kind))).toEqual(['n0', 'n1', 'n2', 'n3', 'n4']);
    const held = pair();
    for (let i = 0; i < MAX_PENDING + 3; i++) held.ch.receive('alice', blobs[0]!);
    expect(held.ch.stats.overflow).toBe(3);
  });

  it('a reset drops what was held (a new join starts from nothing)', async () => {
    const bob = pair();
    bob.ch.receive('alice', await profileBlob('alice', v2('x')));
    bob.ch.reset();
    bob.ch.resume();
    await bob.ch.idle();
    expect(bob.events).toEqual([]);
  });

  it('profiles are schema-checked and capped: wrong shapes are dropped and counted', async () => {
    const bob = pair();
    bob.ch.resume();
    const bad = [
      v2('x', { v: 1 }),
      { t: 'profile', v: 2, name: 'x', seq: 1 },
      v2('x', { sig: 'short' }),
      v2('x', { seq: '1' }),
      v2(5),
      v2('x', { t: 'chat' }),
      v2('   '),
      v2('x'.repeat(4 * MAX_NAME_LEN + 1)),
    ];
    for (const b of bad) bob.ch.receive('alice', await profileBlob('alice', b));
    bob.ch.receive('alice', await profileBlob('alice', v2('y'.repeat(200))));
    await bob.ch.idle();
    expect(bob.ch.stats.malformed).toBe(bad.length);
    // The name as signed goes on (the session checks the signature over it, then shows it cut to MAX_NAME_LEN).
    expect(bob.events).toEqual([{ kind: 'profile', from: 'alice', name: 'y'.repeat(200), seq: 1, sig: SIGNED.sig }]);
  });

  it('nothing is sent once the join ended, even if sealing had already started', async () => {
    const alice = pair();
    alice.ch.bind('alice');
    const p = alice.ch.sendProfile('Alice', SIGNED);
    alice.ch.bind(null);
    await expect(p).rejects.toThrow(/join ended/);
    expect(alice.sent).toEqual([]);
    await expect(alice.ch.sendProfile('Alice', SIGNED)).rejects.toThrow(/not joined/);
  });
});
