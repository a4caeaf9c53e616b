/**
 * Adversarial media tests (design brief properties 1, 7 and the SFrame CTR rule): the SFU tampers with protected
 * frames; the sender's (key, KID, CTR) allocation never repeats.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from '../../client/src/e2ee/bytes.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import { protectFrame, splitProtected, unprotectFrame, type MediaCodec } from '../../client/src/e2ee/frame-codec.ts';
import { DROP_REASONS, ReceiveKeyRings, type DropReason } from '../../client/src/e2ee/receive-rings.ts';
import { SendKeyRing } from './send-ring.ts';
import { splitKid } from '../../client/src/e2ee/kid.ts';
import { decodeHeader } from '../../client/src/e2ee/sframe.ts';
import { hex, Sim, vp8Frame } from './relay-sim.ts';

function opusFrame(n: number): Uint8Array {
  const f = new Uint8Array(60);
  f[0] = 0x78; // TOC
  for (let i = 1; i < f.length; i++) f[i] = (i * 13 + n) & 0xff;
  return f;
}

describe('adversarial SFU: tampered frames', () => {
  it('a frame whose ciphertext, tag, header or clear prefix was flipped is dropped and counted by reason; the original still opens', async () => {
    const sim = new Sim();
    for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
    const bob = sim.member('bob');
    const counts: Record<string, Partial<Record<DropReason | 'buffered', number>>> = {};
    const bump = (region: string, r: DropReason | 'buffered'): void => {
      counts[region] ??= {};
      counts[region][r] = (counts[region][r] ?? 0) + 1;
    };
    let tampered = 0;
    let bufferedCount = 0;
    for (const [codec, frame] of [
      ['vp8', vp8Frame(true)],
      ['vp8', vp8Frame(false)],
      ['opus', opusFrame(1)],
      ['vp9', vp8Frame(false).subarray(3)],
    ] as [MediaCodec, Uint8Array][]) {
      const data = await sim.sendFrame('alice', frame, codec);
      const { prefix, sframe } = splitProtected(codec, data);
      const h = decodeHeader(sframe);
      const regions: [string, number, number][] = [
        ['prefix', 0, prefix.length],
        ['header', prefix.length, prefix.length + h.length],
        ['ciphertext', prefix.length + h.length, data.length - 16],
        ['tag', data.length - 16, data.length],
      ];
      for (const [region, from, to] of regions) {
        for (let i = from; i < to; i++) {
          for (const bit of [0x01, 0x80]) {
            const t = data.slice();
            t[i]! ^= bit;
            tampered++;
            const r = await sim.receiveFrame('bob', t, codec);
            expect(r.status, `${codec} ${region} byte ${i} bit ${bit}`).not.toBe('ok');
            if (r.status === 'dropped') bump(region, r.reason);
            else {
              bump(region, 'buffered');
              bufferedCount++;
            }
          }
        }
      }
      // the untouched frame still opens afterwards (forgeries did not move the replay window), exactly once
      expect(await sim.reads('bob', data, frame, codec)).toBe(true);
      const again = await sim.receiveFrame('bob', data, codec);
      expect(again).toMatchObject({ status: 'dropped', reason: 'replay' });
    }
    // ciphertext and tag flips are authentication failures; so are prefix flips, except the VP8 key-frame bit, which
    // changes the prefix length so that the receiver reads the SFrame header from the wrong offset (any reason but ok)
    for (const region of ['ciphertext', 'tag']) expect(Object.keys(counts[region]!), region).toEqual(['auth']);
    expect(counts['prefix']!.auth).toBeGreaterThan(0);
    for (const r of Object.keys(counts['prefix']!)) expect(['auth', 'malformed', 'unknown-kid', 'retired', 'buffered']).toContain(r);
    // header flips change KID/CTR/lengths: auth, malformed, unknown sender, a CTR already seen under that key (replay,
    // refused before any crypto), or a KID that waits for a key and expires
    for (const r of Object.keys(counts['header']!)) expect(['auth', 'malformed', 'unknown-kid', 'retired', 'replay', 'buffered']).toContain(r);
    const replayFlips = Object.values(counts).reduce((n, c) => n + (c.replay ?? 0), 0);
    sim.advance(1000);
    bob.recv.tick(sim.now);
    const t = bob.recv.totals();
    const dropped = DROP_REASONS.reduce((n, k) => n + t.dropped[k], 0);
    // every tampered frame is counted exactly once (buffered ones as expired), plus one replay per codec
    expect(dropped).toBe(tampered + 4);
    expect(t.dropped.expired).toBe(bufferedCount);
    expect(t.dropped.replay).toBe(4 + replayFlips);
    console.info('tampered frames by region and reason:', JSON.stringify(counts));
    expect(t.opened).toBe(4);
  });

  it('fast-check: any byte rewrite / truncation / extension of a protected frame never opens to a different frame', async () => {
    const sim = new Sim();
    await sim.join('alice');
    await sim.join('bob');
    const frame = vp8Frame(true);
    const data = await sim.sendFrame('alice', frame);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ kind: fc.constant('set' as const), at: fc.nat(data.length - 1), v: fc.integer({ min: 0, max: 255 }) }),
          fc.record({ kind: fc.constant('cut' as const), at: fc.nat(data.length - 1), v: fc.constant(0) }),
          fc.record({ kind: fc.constant('grow' as const), at: fc.nat(40), v: fc.integer({ min: 0, max: 255 }) }),
        ),
        async ({ kind, at, v }) => {
          let t: Uint8Array;
          if (kind === 'set') {
            t = data.slice();
            if (t[at] === v) return;
            t[at] = v;
          } else if (kind === 'cut') t = data.slice(0, at);
          else t = Uint8Array.of(...data, ...new Uint8Array(at + 1).fill(v));
          const r = await unprotectFrame(sim.member('bob').recv, 'vp8', t, sim.now);
          expect(r.status).not.toBe('ok');
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('CTR uniqueness: (key, KID, CTR) never repeats', () => {
  it('10^6 allocations with ratchets, rekeys and counter exhaustion in between', () => {
    const ring = new SendKeyRing({ sender: 4242, now: 0, maxFramesPerKey: 2000n }, randomBytes(16));
    const seenKeys = new Set<string>();
    const seenKidsPerKey = new Map<string, bigint>();
    let keyId = hex(ring.currentKey().baseKey);
    seenKeys.add(keyId);
    let lastCtr = -1n;
    let kid = ring.kid;
    let switches = 0;
    let exhausted = 0;
    let rnd = 12345;
    const next = (): number => (rnd = (rnd * 1103515245 + 12345) & 0x7fffffff);
    const switchKey = (how: number): void => {
      const k = how === 0 ? ring.ratchet() : ring.rekey(randomBytes(16), switches);
      const id = hex(k.baseKey);
      expect(seenKeys.has(id), 'a base key came back').toBe(false);
      seenKeys.add(id);
      keyId = id;
      kid = k.kid;
      lastCtr = -1n;
      switches++;
    };
    let untilSwitch = next() % 3000;
    for (let i = 0; i < 1_000_000; i++) {
      if (untilSwitch-- === 0) {
        switchKey(next() % 2);
        untilSwitch = next() % 3000;
      }
      let a: { kid: bigint; ctr: bigint };
      try {
        a = ring.allocate();
      } catch (e) {
        expect(isE2eeError(e, 'ctr-exhausted')).toBe(true);
        exhausted++;
        switchKey(1);
        a = ring.allocate();
      }
      // compact check: per key, the KID is fixed and CTRs strictly increase (so no (key, KID, CTR) repeats)
      if (a.ctr <= lastCtr || a.kid !== kid) throw new Error(`repeat at ${i}: kid ${a.kid} ctr ${a.ctr} after ${lastCtr}`);
      lastCtr = a.ctr;
      seenKidsPerKey.set(keyId, a.kid);
    }
    expect(switches).toBeGreaterThan(300);
    expect(exhausted).toBeGreaterThan(0);
    // KIDs wrap (generation mod 256, step mod 16) but never with the same base key: distinct keys >= distinct (key, KID)
    expect(seenKeys.size).toBe(switches + 1);
    expect(splitKid(kid).sender).toBe(4242);
  });

  it('concurrent seals across key switches never share (key, KID, CTR), and every frame opens exactly once', async () => {
    const base = randomBytes(16);
    const ring = new SendKeyRing({ sender: 7, now: 0 }, base);
    const recv = new ReceiveKeyRings({ maxRatchetAhead: 4, graceMs: 10_000 });
    await recv.addKey(ring.kid, base, 0);
    const pending: Promise<Uint8Array>[] = [];
    for (let i = 0; i < 2000; i++) {
      if (i % 500 === 499) ring.ratchet(); // receiver derives these locally
      pending.push(protectFrame(ring, 'opus', opusFrame(i)));
    }
    const frames = await Promise.all(pending);
    const seen = new Set<string>();
    for (const f of frames) {
      const h = decodeHeader(f.subarray(1));
      const k = `${h.kid}:${h.ctr}`;
      expect(seen.has(k)).toBe(false);
      seen.add(k);
    }
    expect(seen.size).toBe(2000);
    let ok = 0;
    for (const f of frames) if ((await unprotectFrame(recv, 'opus', f, 1)).status === 'ok') ok++;
    expect(ok).toBe(2000);
    for (const f of frames.slice(0, 50)) expect((await unprotectFrame(recv, 'opus', f, 1)).status).toBe('dropped');
  });
});
