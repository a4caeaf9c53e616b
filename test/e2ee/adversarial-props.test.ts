/**
 * Property tests over the malicious relay (fast-check): whatever the relay does to the blobs it forwards, no member
 * installs a key other than one the claimed sender really used, under that sender's own KID, and no roster ever
 * contains a session key that its member did not create.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { roster } from '../../client/src/e2ee/membership.ts';
import { hex, rewriteBlob, Sim, vp8Frame, type Packet } from './relay-sim.ts';

/** The invariant: every installed key is a key its claimed sender used under that KID; rosters hold only real sessions. */
function checkHonest(sim: Sim): void {
  for (const m of sim.members.values()) {
    for (const k of m.installed) {
      const s = sim.member(k.from);
      const used = s.sendKeys.find((x) => x.kid === k.kid && hex(x.baseKey) === hex(k.baseKey));
      expect(used, `${m.memberId} installed a key ${k.from} never used (kid ${k.kid})`).toBeDefined();
    }
    for (const r of roster(m.agent.state)) {
      const real = sim.member(r.memberId);
      expect(hex(r.sessionPublicKey)).toBe(hex(real.session.keyPair.publicKey));
      expect(hex(r.identityPublicKey)).toBe(hex(real.identity.publicKey));
    }
  }
}

async function threeMembers(sim: Sim): Promise<void> {
  for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
  sim.advance(60_000);
  await sim.tickAll(); // a fresh rekey by everyone: multi-recipient follow-up batches
}

describe('adversarial relay: fast-check properties', () => {
  it('any single-byte rewrite of any relayed message never makes a member install a key the honest sender did not send', async () => {
    // Record how many packets an honest run relays and how long they are, to aim the rewrites.
    const honest = new Sim({ rotationMs: 60_000 });
    await threeMembers(honest);
    checkHonest(honest);
    const sizes = honest.tap.map((p) => p.bytes.length);
    let hits = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.nat(sizes.length - 1),
        fc.oneof(fc.nat(80), fc.nat(100_000)), // half the time aim at the headers / ids / counters
        fc.integer({ min: 1, max: 255 }),
        async (target, pos, xor) => {
          const sim = new Sim({ rotationMs: 60_000 });
          let n = 0;
          sim.rules.push((p) => {
            if (n++ !== target) return undefined;
            hits++;
            return { replace: [{ ...p, bytes: rewriteBlob(p.bytes, (b) => void (b[pos % b.length]! ^= xor)), forged: true }] };
          });
          await threeMembers(sim);
          checkHonest(sim);
          // and media: a frame never opens to anything but what was sent
          for (const s of ['alice', 'bob', 'carol'])
            for (const r of ['alice', 'bob', 'carol']) {
              if (s === r) continue;
              const f = vp8Frame(false);
              const res = await sim.receiveFrame(r, await sim.sendFrame(s, f));
              if (res.status === 'ok') expect(hex(new Uint8Array([...res.metadata, ...res.plaintext]))).toBe(hex(f));
            }
        },
      ),
      { numRuns: 20 },
    );
    expect(hits).toBe(20);
  }, 240_000);

  it('random drop / duplicate / delay / reorder / re-address / re-attribute schedules never install a wrong key or open a frame wrongly', async () => {
    type Op = { op: 'pass' | 'drop' | 'dup' | 'hold' | 'readdress' | 'reattribute'; who: number };
    const names = ['alice', 'bob', 'carol'];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ op: fc.constantFrom<Op['op']>('pass', 'pass', 'drop', 'dup', 'hold', 'readdress', 'reattribute'), who: fc.nat(2) }), { minLength: 30, maxLength: 30 }),
        fc.boolean(),
        async (ops, reverse) => {
          const sim = new Sim({ rotationMs: 60_000 });
          let n = 0;
          sim.rules.push((p: Packet) => {
            const o = ops[n++ % ops.length]!;
            const other = names[o.who]!;
            switch (o.op) {
              case 'pass':
                return 'pass';
              case 'drop':
                return 'drop';
              case 'hold':
                return 'hold';
              case 'dup':
                return { replace: [p, { ...p, forged: true }] };
              case 'readdress':
                return other === p.from ? 'pass' : { replace: [{ ...p, to: other, forged: true }] };
              case 'reattribute':
                return other === p.to ? 'pass' : { replace: [{ ...p, from: other, forged: true }] };
            }
          });
          await threeMembers(sim);
          sim.rules.length = 0;
          await sim.release(() => true, (ps) => (reverse ? [...ps].reverse() : ps));
          checkHonest(sim);
          for (const s of names)
            for (const r of names) {
              if (s === r) continue;
              const f = vp8Frame(false);
              const res = await sim.receiveFrame(r, await sim.sendFrame(s, f));
              if (res.status === 'ok') expect(hex(new Uint8Array([...res.metadata, ...res.plaintext]))).toBe(hex(f));
            }
        },
      ),
      { numRuns: 12 },
    );
  }, 240_000);
});
