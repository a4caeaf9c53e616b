import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeKeyBatch,
  decodePayload,
  encodeKeyBatch,
  encodePayload,
  openKeyBatch,
  sealKeyBatch,
  type KeyUpdate,
  type OpenBatchInput,
} from '../../client/src/e2ee/envelope.ts';
import { generateSessionKeyPair } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import type { RecipientChannel, SenderChannel } from '../../client/src/e2ee/hpke.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';
const PSK = { key: new Uint8Array(32).fill(1), id: new Uint8Array(32).fill(2) };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

async function member(id: string) {
  return { memberId: id, identity: await createIdentity(), session: generateSessionKeyPair() };
}
const alice = await member('alice');
const bob = await member('bob');
const carol = await member('carol');

function upd(gen: number, fill = gen): KeyUpdate {
  return { reason: 'fresh', senderIndex: 3, generation: gen, step: 0, kid: (3n << 16n) | BigInt(gen), baseKey: new Uint8Array(32).fill(fill) };
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isE2eeError(e) ? e.code : `not an E2eeError: ${String(e)}`;
  }
}

function openInput(me: Awaited<ReturnType<typeof member>>, from: Awaited<ReturnType<typeof member>>, extra: Partial<OpenBatchInput> = {}): OpenBatchInput {
  return {
    roomId: ROOM,
    fromMemberId: from.memberId,
    me: { memberId: me.memberId, sessionSecretKey: me.session.secretKey, sessionPublicKey: me.session.publicKey },
    sender: { identityPublicKey: from.identity.publicKey, sessionPublicKey: from.session.publicKey },
    psk: PSK,
    ...extra,
  };
}

async function seal(epoch: number, u: KeyUpdate, channels?: Map<string, SenderChannel>, recips = [bob, carol]) {
  return sealKeyBatch({
    roomId: ROOM,
    epoch,
    sender: { memberId: alice.memberId, identity: alice.identity, sessionPublicKey: alice.session.publicKey },
    psk: PSK,
    recipients: recips.map((r) => {
      const ch = channels?.get(r.memberId);
      return ch ? { memberId: r.memberId, sessionPublicKey: r.session.publicKey, channel: ch } : { memberId: r.memberId, sessionPublicKey: r.session.publicKey };
    }),
    update: u,
  });
}

describe('payload', () => {
  it('round trip + strict', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('initial' as const, 'ratchet' as const, 'fresh' as const),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        (reason, senderIndex, generation, step, kid, baseKey) => {
          const d = decodePayload(encodePayload({ reason, senderIndex, generation, step, kid, baseKey }));
          expect(d).toEqual({ reason, senderIndex, generation, step, kid, baseKey });
        },
      ),
    );
    const p = encodePayload(upd(1));
    expect(() => decodePayload(p.subarray(0, p.length - 1))).toThrow(/malformed/);
    expect(() => decodePayload(new Uint8Array([...p, 0]))).toThrow(/malformed/);
    expect(() => encodePayload({ ...upd(1), baseKey: new Uint8Array(8) })).toThrow(/bad-key/);
  });
});

describe('key batch', () => {
  it('first rekey sets up channels (enc), later rekeys reuse them (no enc), every recipient opens its own', async () => {
    const r1 = await seal(1, upd(1));
    expect(r1.newChannels).toBe(2);
    expect(r1.batches.length).toBe(1);
    const b1 = decodeKeyBatch(r1.batches[0]!);
    expect(b1.entries.map((e) => [e.recipientMemberId, e.seq, !!e.enc])).toEqual([
      ['bob', 0n, true],
      ['carol', 0n, true],
    ]);
    expect(hex(encodeKeyBatch(b1))).toBe(hex(r1.batches[0]!));
    const o1 = await openKeyBatch(r1.batches[0]!, openInput(bob, alice));
    expect(o1!.update).toEqual(upd(1));
    expect(o1!.epoch).toBe(1);
    const oc = await openKeyBatch(r1.batches[0]!, openInput(carol, alice));
    expect(hex(oc!.update.baseKey)).toBe(hex(upd(1).baseKey));

    const r2 = await seal(2, upd(2), r1.channels);
    expect(r2.newChannels).toBe(0);
    const b2 = decodeKeyBatch(r2.batches[0]!);
    expect(b2.entries.every((e) => e.enc === undefined && e.seq === 1n)).toBe(true);
    expect(r2.batches[0]!.length).toBeLessThan(r1.batches[0]!.length / 5);
    const o2 = await openKeyBatch(r2.batches[0]!, openInput(bob, alice, { channel: o1!.channel, lastEpoch: 1 }));
    expect(o2!.update.generation).toBe(2);
    expect(o2!.channel.lastSeq).toBe(1n);

    // Not for me -> null
    const dave = await member('dave');
    expect(await openKeyBatch(r2.batches[0]!, openInput(dave, alice))).toBeNull();

    // Replayed (same batch again): replay
    expect(await code(openKeyBatch(r2.batches[0]!, openInput(bob, alice, { channel: o2!.channel, lastEpoch: 2 })))).toBe('replay');
    // Reordered: epoch 3 seq 2 accepted, then an older epoch 2 is rejected even on the right channel
    const r3 = await seal(3, upd(3), r2.channels);
    const o3 = await openKeyBatch(r3.batches[0]!, openInput(bob, alice, { channel: o1!.channel, lastEpoch: 1 })); // gap (seq 2 after seq 0) is fine
    expect(o3!.update.generation).toBe(3);
    expect(await code(openKeyBatch(r2.batches[0]!, openInput(bob, alice, { channel: o3!.channel, lastEpoch: 3 })))).toBe('replay');
    expect(await code(openKeyBatch(r2.batches[0]!, openInput(bob, alice, { channel: o3!.channel })))).toBe('replay'); // seq check alone
    // Replayed channel setup (the first batch) after the channel exists
    expect(await code(openKeyBatch(r1.batches[0]!, openInput(bob, alice, { channel: o3!.channel })))).toBe('replay');
    // Follow-up without a channel
    expect(await code(openKeyBatch(r2.batches[0]!, openInput(bob, alice)))).toBe('state');
  });

  it('re-addressed / wrong context envelopes are rejected', async () => {
    const r1 = await seal(1, upd(1));
    const b = decodeKeyBatch(r1.batches[0]!);
    // Re-address bob's envelope to carol (swap recipient ids): carol finds "her" entry, signature fails
    const swapped = encodeKeyBatch({
      ...b,
      entries: [
        { ...b.entries[0]!, recipientMemberId: 'carol' },
        { ...b.entries[1]!, recipientMemberId: 'bob' },
      ],
    });
    expect(await code(openKeyBatch(swapped, openInput(carol, alice)))).toBe('bad-signature');
    // Swap whole entries between two batches' ciphertexts: take carol's ct into bob's entry
    const ctSwap = encodeKeyBatch({ ...b, entries: [{ ...b.entries[0]!, ct: b.entries[1]!.ct }, b.entries[1]!] });
    expect(await code(openKeyBatch(ctSwap, openInput(bob, alice)))).toBe('bad-signature');
    // Epoch rewritten
    expect(await code(openKeyBatch(encodeKeyBatch({ ...b, epoch: 7 }), openInput(bob, alice)))).toBe('bad-signature');
    // Wrong room (as checked by the recipient) and batch rewritten to another room
    expect(await code(openKeyBatch(r1.batches[0]!, { ...openInput(bob, alice), roomId: 'AAAAAAAAAAAAAAAAAAAAAB' }))).toBe('wrong-context');
    expect(await code(openKeyBatch(encodeKeyBatch({ ...b, roomId: 'AAAAAAAAAAAAAAAAAAAAAB' }), { ...openInput(bob, alice), roomId: 'AAAAAAAAAAAAAAAAAAAAAB' }))).toBe('bad-signature');
    // Server claims another sender
    expect(await code(openKeyBatch(r1.batches[0]!, { ...openInput(bob, alice), fromMemberId: 'carol' }))).toBe('wrong-context');
    // Sender rewritten to carol and attributed to carol: carol's identity does not verify alice's signature
    expect(await code(openKeyBatch(encodeKeyBatch({ ...b, senderMemberId: 'carol' }), openInput(bob, carol)))).toBe('bad-signature');
    // Signed by a different identity than the one bob knows for alice
    expect(await code(openKeyBatch(r1.batches[0]!, { ...openInput(bob, alice), sender: { identityPublicKey: carol.identity.publicKey, sessionPublicKey: alice.session.publicKey } }))).toBe('bad-signature');
    // Sender session key differs from the announced one (e.g. an old session): signature context differs
    expect(await code(openKeyBatch(r1.batches[0]!, { ...openInput(bob, alice), sender: { identityPublicKey: alice.identity.publicKey, sessionPublicKey: carol.session.publicKey } }))).toBe('bad-signature');
    // Wrong PSK (not holding the invite): decapsulation gives an unrelated key -> auth
    expect(await code(openKeyBatch(r1.batches[0]!, { ...openInput(bob, alice), psk: { key: new Uint8Array(32).fill(9), id: PSK.id } }))).toBe('auth');
  });

  it('every single-byte tamper is rejected with a typed error; truncations too', async () => {
    const r1 = await seal(1, upd(1), undefined, [bob]);
    const bytes = r1.batches[0]!;
    const positions = new Set<number>([0, 1, 5, 24, 30, 33, 35, 40, 50, 60, 500, 1150, 1170, 1175, 1180, 1200, bytes.length - 70, bytes.length - 1]);
    for (const i of positions) {
      if (i >= bytes.length) continue;
      const t = bytes.slice();
      t[i]! ^= 0x01;
      let c: string;
      try {
        const r = await openKeyBatch(t, openInput(bob, alice));
        c = r === null ? 'not-for-me' : 'ACCEPTED';
      } catch (e) {
        c = isE2eeError(e) ? e.code : 'untyped';
      }
      // a flipped byte in the recipient id just makes the entry someone else's ('not-for-me'); never accepted
      expect(c, `byte ${i}`).toMatch(/^(malformed|unsupported-version|wrong-context|bad-signature|auth|replay|not-for-me)$/);
    }
    for (const n of [0, 1, 10, 100, bytes.length - 1]) {
      expect(await code(openKeyBatch(bytes.subarray(0, n), openInput(bob, alice)))).toBe(n === 0 ? 'malformed' : 'malformed');
    }
    expect(await code(openKeyBatch(new Uint8Array([...bytes, 0]), openInput(bob, alice)))).toBe('malformed');
  });

  it('fast-check: garbage never parses into anything but a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (g) => {
        try {
          decodeKeyBatch(g);
        } catch (e) {
          expect(isE2eeError(e)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('splits a large first-time rekey under the relay size cap', async () => {
    const many = Array.from({ length: 45 }, (_, i) => ({ memberId: `m${i}`, sessionPublicKey: bob.session.publicKey }));
    const r = await sealKeyBatch({
      roomId: ROOM,
      epoch: 1,
      sender: { memberId: 'alice', identity: alice.identity, sessionPublicKey: alice.session.publicKey },
      psk: PSK,
      recipients: many,
      update: upd(1),
    });
    expect(r.batches.length).toBe(2);
    expect(r.batches.every((b) => b.length <= 48_000)).toBe(true);
    expect(r.batches.map((b) => decodeKeyBatch(b).entries.length).reduce((a, b) => a + b)).toBe(45);
    const ch: RecipientChannel | undefined = undefined;
    const m44 = { memberId: 'm44', identity: bob.identity, session: bob.session };
    const opened = (await openKeyBatch(r.batches[1]!, openInput(m44, alice, ch ? { channel: ch } : {})))!;
    expect(opened.update.generation).toBe(1);
  });
});
