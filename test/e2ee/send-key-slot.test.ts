/**
 * The transform worker's ONE send-key path (client/src/transform/send-key-slot.ts): what it does with a
 * `set-send-key` message. It seals under exactly the key the KeyAgent handed over, from CTR 0, and refuses any key
 * that would restart CTR under a (key, KID) it may already have used (RFC 9605 §9.1 nonce reuse).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isE2eeError, type E2eeErrorCode } from '../../client/src/e2ee/errors.ts';
import { makeKid } from '../../client/src/e2ee/kid.ts';
import { ReceiveKeyRings } from '../../client/src/e2ee/receive-rings.ts';
import { SendKeySchedule, type SendKeyInfo } from '../../client/src/e2ee/send-schedule.ts';
import { decodeHeader } from '../../client/src/e2ee/sframe.ts';
import { SendKeySlot, type SetSendKey } from '../../client/src/transform/send-key-slot.ts';
import { Sim, vp8Frame } from './relay-sim.ts';

const key = (b: number): Uint8Array => new Uint8Array(16).fill(b);
const MD = Uint8Array.of(7);
const PT = Uint8Array.of(1, 2, 3);

function msg(senderIndex: number, generation: number, step: number, baseKey: Uint8Array): SetSendKey {
  return { senderIndex, generation, step, kid: makeKid(senderIndex, generation, step), baseKey };
}
const fromSchedule = (senderIndex: number, k: SendKeyInfo): SetSendKey => ({ senderIndex, generation: k.generation, step: k.step, kid: k.kid, baseKey: k.baseKey });

function refusal(f: () => void): E2eeErrorCode | 'accepted' | 'foreign' {
  try {
    f();
    return 'accepted';
  } catch (e) {
    return isE2eeError(e) ? e.code : 'foreign';
  }
}

async function sealOne(slot: SendKeySlot): Promise<{ kid: bigint; ctr: bigint; frame: Uint8Array }> {
  const k = slot.key;
  if (k === null) throw new Error('no send key');
  const frame = await k.seal(MD, PT);
  const h = decodeHeader(frame);
  return { kid: h.kid, ctr: h.ctr, frame };
}

describe('SendKeySlot: set-send-key in the transform worker', () => {
  it('seals under exactly the handed (KID, base key), each key a fresh CTR space from 0; the caller may wipe its bytes', async () => {
    const slot = new SendKeySlot();
    const rx = new ReceiveKeyRings();
    rx.ring(3);
    const k1 = key(1);
    slot.install(msg(3, 0, 0, k1));
    await rx.addKey(makeKid(3, 0, 0), key(1), 0);
    k1.fill(0); // the slot keeps no reference to the message's bytes
    const a = await sealOne(slot);
    const b = await sealOne(slot);
    expect([a.kid, a.ctr, b.ctr]).toEqual([makeKid(3, 0, 0), 0n, 1n]);
    for (const f of [a, b]) expect((await rx.open(f.frame, MD, 0)).status).toBe('ok');

    slot.install(msg(3, 1, 0, key(2)));
    await rx.addKey(makeKid(3, 1, 0), key(2), 0);
    const c = await sealOne(slot);
    expect([c.kid, c.ctr]).toEqual([makeKid(3, 1, 0), 0n]);
    expect((await rx.open(c.frame, MD, 0)).status).toBe('ok');
  });

  it("follows the agent's schedule (initial, ratchets, rekeys, a new sender index) and seals under the same KID sequence", async () => {
    const slot = new SendKeySlot();
    const sched = new SendKeySchedule({ sender: 9 }, key(1));
    const handed: bigint[] = [];
    const sealed: bigint[] = [];
    const hand = async (senderIndex: number, k: SendKeyInfo): Promise<void> => {
      slot.install(fromSchedule(senderIndex, k));
      k.baseKey.fill(0);
      handed.push(k.kid);
      sealed.push((await sealOne(slot)).kid);
    };
    await hand(9, sched.currentKey());
    await hand(9, sched.ratchet());
    await hand(9, sched.ratchet());
    await hand(9, sched.rekey(key(2)));
    await hand(9, sched.ratchet());
    // the sender index moved: the agent starts a new schedule one generation up
    const moved = new SendKeySchedule({ sender: 10, generation: sched.generation + 1 }, key(3));
    await hand(10, moved.currentKey());
    expect(sealed).toEqual(handed);
    expect(handed).toEqual([makeKid(9, 0, 0), makeKid(9, 0, 1), makeKid(9, 0, 2), makeKid(9, 1, 0), makeKid(9, 1, 1), makeKid(10, 2, 0)]);
  });

  it('refuses a repeated (generation, step): no send key afterwards, so CTR never restarts at 0 under a used (key, KID)', async () => {
    const slot = new SendKeySlot();
    slot.install(msg(5, 2, 1, key(1)));
    const first = await sealOne(slot);
    expect(first.ctr).toBe(0n);
    expect(refusal(() => slot.install(msg(5, 2, 1, key(1))))).toBe('state');
    expect(slot.key).toBeNull(); // the worker drops frames as no-send-key instead of sealing CTR 0 again
    expect(first.kid).toBe(makeKid(5, 2, 1));
  });

  it('refuses an older generation or step for the sender index, also after the refusal, and accepts the next newer key', async () => {
    const slot = new SendKeySlot();
    slot.install(msg(5, 3, 2, key(1)));
    expect(refusal(() => slot.install(msg(5, 3, 1, key(2))))).toBe('state'); // older step
    expect(refusal(() => slot.install(msg(5, 2, 9, key(2))))).toBe('state'); // older generation, later step
    expect(refusal(() => slot.install(msg(5, 3, 2, key(2))))).toBe('state'); // same (generation, step), other key
    expect(slot.key).toBeNull();
    slot.install(msg(5, 3, 3, key(3)));
    expect((await sealOne(slot)).kid).toBe(makeKid(5, 3, 3));
    slot.install(msg(5, 4, 0, key(4)));
    expect((await sealOne(slot)).kid).toBe(makeKid(5, 4, 0));
  });

  it('keeps the history per sender index: another index starts at any (generation, step)', async () => {
    const slot = new SendKeySlot();
    slot.install(msg(1, 7, 0, key(1)));
    slot.install(msg(2, 0, 0, key(2)));
    expect((await sealOne(slot)).kid).toBe(makeKid(2, 0, 0));
    expect(refusal(() => slot.install(msg(1, 7, 0, key(1))))).toBe('state');
    expect(slot.key).toBeNull();
  });

  it('refuses a KID that does not match (sender index, generation, step), bad values and short keys: no send key', () => {
    const slot = new SendKeySlot();
    slot.install(msg(4, 0, 0, key(1)));
    expect(refusal(() => slot.install({ ...msg(4, 1, 0, key(2)), kid: makeKid(5, 1, 0) }))).toBe('range');
    expect(slot.key).toBeNull();
    slot.install(msg(4, 1, 0, key(2)));
    expect(refusal(() => slot.install({ ...msg(4, 2, 0, key(3)), kid: makeKid(4, 2, 1) }))).toBe('range');
    expect(refusal(() => slot.install({ senderIndex: 4, generation: -1, step: 0, kid: 0n, baseKey: key(3) }))).toBe('range');
    expect(refusal(() => slot.install({ senderIndex: 4, generation: 3, step: 16, kid: 0n, baseKey: key(3) }))).toBe('range');
    expect(refusal(() => slot.install({ senderIndex: 65536, generation: 3, step: 0, kid: 0n, baseKey: key(3) }))).toBe('range');
    expect(refusal(() => slot.install(msg(4, 3, 0, new Uint8Array(15))))).toBe('range');
    expect(slot.key).toBeNull();
    // none of the refused keys counted as used: the next one in line is still accepted
    slot.install(msg(4, 2, 0, key(4)));
    expect(slot.key?.kid).toBe(makeKid(4, 2, 0));
  });

  it('clear() ends the schedule: no key, and a new schedule (fresh random key) may start at generation 0 again', async () => {
    const slot = new SendKeySlot();
    slot.install(msg(6, 0, 0, key(1)));
    slot.install(msg(6, 0, 1, key(2)));
    slot.clear();
    expect(slot.key).toBeNull();
    slot.install(msg(6, 0, 0, key(9)));
    expect(await sealOne(slot)).toMatchObject({ kid: makeKid(6, 0, 0), ctr: 0n });
  });

  it('property: a key is installed iff its (generation, step) is newer than every one installed for its index; refusals leave no key', () => {
    const op = fc.record({ idx: fc.integer({ min: 0, max: 2 }), generation: fc.integer({ min: 0, max: 4 }), step: fc.integer({ min: 0, max: 3 }) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const slot = new SendKeySlot();
        const newest = new Map<number, number>();
        for (const o of ops) {
          const rank = o.generation * 16 + o.step;
          const want = !newest.has(o.idx) || rank > newest.get(o.idx)!;
          const got = refusal(() => slot.install(msg(o.idx, o.generation, o.step, key(1))));
          expect(got).toBe(want ? 'accepted' : 'state');
          if (want) {
            newest.set(o.idx, rank);
            expect(slot.key?.kid).toBe(makeKid(o.idx, o.generation, o.step));
          } else expect(slot.key).toBeNull();
        }
      }),
      { numRuns: 200 },
    );
  });

  it('in a call: every key each KeyAgent hands over (joins, leave, rotation) is installed, none refused, and frames carry the newest KID', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    const [alice, bob] = [await sim.join('alice'), await sim.join('bob')];
    await sim.join('carol');
    await sim.join('dave');
    await sim.leave('carol');
    sim.advance(60_000);
    await sim.tickAll();
    for (const m of [alice, bob]) {
      expect(m.alerts).toEqual([]); // a refused key would surface as send-key-failed (sendKeyChanged threw)
      expect(m.sendKeys.length).toBeGreaterThanOrEqual(4);
      const f = await sim.sendFrame(m.memberId, vp8Frame());
      expect(decodeHeader(f.subarray(10)).kid).toBe(m.sendKeys.at(-1)!.kid);
    }
  });
});
