import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ReceiveKeyRing } from '../../client/src/e2ee/receive-rings.ts';
import { SendKeyRing } from './send-ring.ts';

const key = (b: number): Uint8Array => new Uint8Array(32).fill(b);
const MD = Uint8Array.of(7);

type Op = { kind: 'frame' } | { kind: 'ratchet' } | { kind: 'rekey' };

describe('ReceiveKeyRing property: shuffled, duplicated and tampered delivery', () => {
  it('each genuine frame opens at most once and with its own plaintext; tampered frames never open; every input is accounted for', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<Op>({ kind: 'frame' }, { kind: 'frame' }, { kind: 'frame' }, { kind: 'ratchet' }, { kind: 'rekey' }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean(), fc.nat(100)), { maxLength: 60 }),
        async (ops, deliveries) => {
          const tx = new SendKeyRing({ sender: 2, now: 0 }, key(1));
          const rx = new ReceiveKeyRing<number>({ sender: 2, graceMs: 10_000, bufferMs: 10_000 });
          const first = tx.currentKey();
          await rx.addKey(first.kid, first.baseKey, 0);
          const frames: Uint8Array[] = [];
          const announcements: { kid: bigint; baseKey: Uint8Array }[] = [];
          let rekeyN = 2;
          for (const op of ops) {
            if (op.kind === 'frame') frames.push(await tx.seal(MD, Uint8Array.of(frames.length & 0xff, frames.length >> 8)));
            else if (op.kind === 'ratchet' && tx.canRatchet()) tx.ratchet();
            else announcements.push(tx.rekey(key(rekeyN++), 0));
          }
          if (frames.length === 0) return;
          const opened = new Set<number>();
          let now = 1;
          let buffered = 0;
          let releasedResults = 0;
          const check = (r: Awaited<ReturnType<typeof rx.open>>, fromRelease = false): void => {
            if (fromRelease) releasedResults++;
            if (r.status === 'buffered') buffered++;
            if (r.status !== 'ok') return;
            const idx = (r.plaintext[0] as number) | ((r.plaintext[1] as number) << 8);
            expect(r.token, 'only genuine frames open').toBeGreaterThanOrEqual(0);
            expect(idx).toBe(r.token);
            expect(opened.has(idx), 'no frame opens twice').toBe(false);
            opened.add(idx);
          };
          let sent = 0;
          for (const [i, bitPos, tamper, keyAt] of deliveries) {
            // deliver keys at some point among the frames
            if (announcements.length > 0 && keyAt < 30) {
              const a = announcements.shift() as { kid: bigint; baseKey: Uint8Array };
              for (const r of await rx.addKey(a.kid, a.baseKey, now)) check(r, true);
            }
            const idx = i % frames.length;
            let f = frames[idx] as Uint8Array;
            let token = idx;
            if (tamper) {
              f = f.slice();
              const bit = bitPos % (f.length * 8);
              f[bit >> 3] = (f[bit >> 3] as number) ^ (1 << (bit & 7));
              token = -1;
            }
            sent++;
            check(await rx.open(f, MD, now++, token));
          }
          for (const a of announcements) for (const r of await rx.addKey(a.kid, a.baseKey, now)) check(r, true);
          rx.tick(now + 20_000);
          const s = rx.stats;
          const dropped = Object.values(s.dropped).reduce((x, y) => x + y, 0);
          // every frame handed in ends as opened or dropped (buffered ones are either released or expired by now)
          expect(s.opened + dropped).toBe(sent);
          expect(rx.bufferedCount).toBe(0);
          // every buffered frame came back exactly once from a key arrival, or expired
          expect(buffered).toBe(releasedResults + s.dropped.expired);
        },
      ),
      { numRuns: 60 },
    );
  });
});
