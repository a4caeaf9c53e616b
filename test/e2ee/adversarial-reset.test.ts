/**
 * The signed channel-reset request (membership.ts `onChannelReset`, added for adversarial finding BUG 3) under a
 * malicious relay: forged, replayed, re-addressed, re-attributed, bit-flipped and departed-member resets never make a
 * sender seal a key to anyone but a current member that asked for it, and a real one is honoured exactly once.
 */
import { describe, expect, it } from 'vitest';
import { hex, Sim, vp8Frame, type Packet } from './relay-sim.ts';

const batchesFromTo = (sim: Sim, from: string, to: string): number => sim.tap.filter((p) => p.kind === 'key-batch' && p.from === from && p.to === to).length;
const lastAlert = (sim: Sim, id: string): string => {
  const a = sim.member(id).alerts.at(-1);
  return a ? `${a.reason}:${a.memberId ?? ''}:${a.detail ?? ''}` : '';
};

/** alice + bob; carol joins and the relay drops alice's channel setup to carol; a rotation makes carol ask for a reset, which the relay holds. */
async function pendingReset(): Promise<{ sim: Sim; reset: Packet }> {
  const sim = new Sim({ rotationMs: 60_000 });
  await sim.join('alice');
  await sim.join('bob');
  let dropped = 0;
  sim.rules.push((p) => (p.kind === 'key-batch' && p.from === 'alice' && p.to === 'carol' && dropped++ === 0 ? 'drop' : undefined));
  sim.rules.push((p) => (p.kind === 'channel-reset' ? 'hold' : undefined));
  await sim.join('carol');
  sim.advance(60_000);
  await sim.member('alice').agent.tick(sim.now);
  await sim.pump();
  const reset = sim.held.find((p) => p.kind === 'channel-reset' && p.from === 'carol' && p.to === 'alice');
  expect(reset, 'carol asked alice for a channel reset').toBeDefined();
  return { sim, reset: reset! };
}

describe('adversarial relay: channel reset requests', () => {
  it('forged, re-addressed, re-attributed and bit-flipped resets are refused (bad-reset) and seal nothing; the real one is honoured once', async () => {
    const { sim, reset } = await pendingReset();
    const before = batchesFromTo(sim, 'alice', 'carol');
    const bytes = reset.bytes;
    // every single-bit flip of the request, in every byte
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const t = bytes.slice();
        t[i]! ^= bit;
        await sim.deliver({ ...reset, bytes: t, forged: true });
      }
    }
    await sim.pump();
    expect(batchesFromTo(sim, 'alice', 'carol')).toBe(before);
    const reasons = new Set(sim.member('alice').alerts.map((a) => a.reason));
    for (const r of reasons) expect(['bad-reset', 'malformed', 'unknown-sender', 'bad-mac', 'bad-signature', 'member-id-mismatch', 'envelope-rejected']).toContain(r);
    // re-attributed (the relay says bob sent it): bob's key does not verify carol's signature
    await sim.deliver({ ...reset, from: 'bob', forged: true });
    expect(lastAlert(sim, 'alice')).toBe('bad-reset:bob:bad-signature');
    // re-addressed to bob: not for bob
    await sim.deliver({ ...reset, to: 'bob', forged: true });
    expect(lastAlert(sim, 'bob')).toBe('bad-reset:carol:wrong-context');
    await sim.pump();
    expect(batchesFromTo(sim, 'alice', 'carol')).toBe(before);
    expect(batchesFromTo(sim, 'bob', 'carol')).toBe(1); // only bob's original key for carol

    // the real request: honoured, carol gets alice's current key and reads her
    sim.rules.length = 0;
    await sim.release();
    expect(batchesFromTo(sim, 'alice', 'carol')).toBe(before + 1);
    const f = vp8Frame(false);
    expect(await sim.reads('carol', await sim.sendFrame('alice', f), f)).toBe(true);
    const aliceKey = sim.member('alice').sendKeys.at(-1)!;
    expect(hex(sim.member('carol').installed.at(-1)!.baseKey)).toBe(hex(aliceKey.baseKey));

    // replayed: nothing more
    for (let i = 0; i < 3; i++) await sim.deliver({ ...reset, forged: true });
    await sim.pump();
    expect(batchesFromTo(sim, 'alice', 'carol')).toBe(before + 1);
  });

  it('a reset replayed after the requester left seals nothing to it', async () => {
    const { sim, reset } = await pendingReset();
    sim.rules.length = 0;
    sim.held.length = 0; // the relay keeps the request for later
    sim.advance(1000);
    await sim.leave('carol');
    const before = batchesFromTo(sim, 'alice', 'carol');
    sim.member('carol').gone = false; // the departed member is listening again
    await sim.deliver({ ...reset, forged: true });
    await sim.pump();
    expect(batchesFromTo(sim, 'alice', 'carol')).toBe(before);
    expect(lastAlert(sim, 'alice')).toMatch(/^unknown-sender:carol:/);
    const f = vp8Frame(false);
    expect(await sim.reads('carol', await sim.sendFrame('alice', f), f)).toBe(false);
  });
});
