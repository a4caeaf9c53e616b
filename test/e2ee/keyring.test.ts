import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_SENDER_INDEX, makeKid, splitKid } from '../../client/src/e2ee/kid.ts';
import { ReceiveKeyRing, ReceiveKeyRings } from '../../client/src/e2ee/receive-rings.ts';
import { ReplayWindow } from '../../client/src/e2ee/replay-window.ts';
import { SendKeyRing } from './send-ring.ts';
import type { OpenResult } from '../../client/src/e2ee/receive-rings.ts';
import { decodeHeader, encodeHeader, ratchetBaseKey } from '../../client/src/e2ee/sframe.ts';
import { open } from './sframe-oneshot.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';
import type { E2eeErrorCode } from '../../client/src/e2ee/errors.ts';

const key = (b: number): Uint8Array => new Uint8Array(32).fill(b);
const MD = Uint8Array.of(0x10, 0x20, 0x30);
const pt = (i: number): Uint8Array => new TextEncoder().encode(`frame ${i}`);

function errCode(f: () => unknown): E2eeErrorCode | 'none' | 'foreign' {
  try {
    f();
    return 'none';
  } catch (e) {
    return isE2eeError(e) ? e.code : 'foreign';
  }
}
async function errCodeAsync(p: Promise<unknown>): Promise<E2eeErrorCode | 'none' | 'foreign'> {
  try {
    await p;
    return 'none';
  } catch (e) {
    return isE2eeError(e) ? e.code : 'foreign';
  }
}
function okText<T>(r: OpenResult<T>): string {
  if (r.status !== 'ok') throw new Error(`expected ok, got ${r.status}${r.status === 'dropped' ? `/${r.reason}` : ''}`);
  return new TextDecoder().decode(r.plaintext);
}
function reason<T>(r: OpenResult<T>): string {
  return r.status === 'dropped' ? r.reason : r.status;
}

/** A sender ring and a receiver ring holding its current key. */
async function pair(sender = 3, opts: { graceMs?: number; bufferMs?: number; maxBuffered?: number } = {}) {
  const tx = new SendKeyRing({ sender, now: 0 }, key(1));
  const rx = new ReceiveKeyRing<number>({ sender, ...opts });
  const a = tx.currentKey();
  await rx.addKey(a.kid, a.baseKey, 0);
  a.baseKey.fill(0);
  return { tx, rx };
}

describe('KID layout (RFC 9605 §5.1 sender keys, §9.2 KID assignment)', () => {
  it('KID = sender << 16 | generation mod 4096 << 4 | step (0..15)', () => {
    expect(makeKid(0, 0, 0)).toBe(0n);
    expect(makeKid(1, 0, 0)).toBe(0x10000n);
    expect(makeKid(0x1234, 0xabc, 0xd)).toBe(0x1234abcdn);
    expect(makeKid(0xffff, 0xfff, 15)).toBe(0xffffffffn);
    expect(makeKid(5, 4096 + 7, 3)).toBe(makeKid(5, 7, 3)); // the generation counter wraps
    expect(splitKid(0x1234abcdn)).toEqual({ sender: 0x1234, generation: 0xabc, step: 0xd });
    expect(encodeHeader(makeKid(3, 200, 9), 0n).length).toBe(4); // config byte + 3-byte KID
    expect(encodeHeader(makeKid(0, 200, 9), 0n).length).toBe(3);
  });

  it('property: split(make(s, g, r)) = (s, g mod 4096, r), and distinct senders never share a KID', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_SENDER_INDEX }), fc.nat(), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: MAX_SENDER_INDEX }), (s, g, r, s2) => {
        const p = splitKid(makeKid(s, g, r));
        expect(p).toEqual({ sender: s, generation: g % 4096, step: r });
        if (s2 !== s) expect(makeKid(s2, g, r)).not.toBe(makeKid(s, g, r));
      }),
    );
  });

  it('RFC 9605 §4.4.1 a base_key MUST NOT be used for encryption by multiple senders: each ring copies its key and seals only under its own sender KIDs', async () => {
    const shared = key(1);
    const a = new SendKeyRing({ sender: 1, now: 0 }, shared);
    const b = new SendKeyRing({ sender: 2, now: 0 }, shared); // even a caller mistake gives distinct (key, nonce)s
    shared.fill(0); // the rings hold copies
    const fa = await a.seal(MD, pt(0));
    const fb = await b.seal(MD, pt(0));
    expect(splitKid(decodeHeader(fa).kid).sender).toBe(1);
    expect(splitKid(decodeHeader(fb).kid).sender).toBe(2);
    expect(Buffer.from(fa.subarray(3)).equals(Buffer.from(fb.subarray(3)))).toBe(false);
  });

  it('out-of-range inputs are refused with typed errors', () => {
    expect(errCode(() => makeKid(65536, 0))).toBe('range');
    expect(errCode(() => makeKid(-1, 0))).toBe('range');
    expect(errCode(() => makeKid(1.5, 0))).toBe('range');
    expect(errCode(() => makeKid(1, 0, 16))).toBe('range');
    expect(errCode(() => splitKid(1n << 32n))).toBe('unknown-kid');
  });
});

describe('RFC 9605 §7.4 / §9.1 CTR uniqueness: SendKeyRing', () => {
  it('MUST use each (base_key, KID, CTR) once: 10^6 allocations across ratchet and rekey never repeat', () => {
    const tx = new SendKeyRing({ sender: 7, now: 0 }, key(1));
    const seen = new Set<bigint>();
    let segStart = 0;
    let kid = tx.kid;
    seen.add(kid);
    for (let i = 0; i < 1_000_000; i++) {
      if (i === 250_000 || i === 500_000) tx.ratchet();
      if (i === 750_000) tx.rekey(key(2), 0);
      if (tx.kid !== kid) {
        // a new base key: new KID, CTR restarts at 0
        expect(seen.has(tx.kid)).toBe(false);
        kid = tx.kid;
        seen.add(kid);
        segStart = i;
      }
      const a = tx.allocate();
      if (a.kid !== kid || a.ctr !== BigInt(i - segStart)) throw new Error(`allocation ${i}: ${a.kid}/${a.ctr}`);
    }
    expect(seen.size).toBe(4);
    expect(tx.generation).toBe(1);
    expect(tx.step).toBe(0);
  });

  it('RFC 9605 §4.3 MUST use each (KID, CTR) for exactly one encryption: KIDs never repeat within a session', () => {
    const tx = new SendKeyRing({ sender: 9, now: 0 }, key(1));
    const kids = new Set<bigint>([tx.kid]);
    const add = (k: bigint): void => {
      expect(kids.has(k)).toBe(false);
      kids.add(k);
    };
    for (let i = 0; i < 15; i++) {
      expect(tx.canRatchet()).toBe(true);
      add(tx.ratchet().kid);
    }
    // a 16th ratchet would wrap the 4-bit step back onto the first KID: refused, the caller rekeys instead
    expect(tx.canRatchet()).toBe(false);
    expect(errCode(() => tx.ratchet())).toBe('state');
    let n = 0;
    for (;;) {
      let a;
      try {
        a = tx.rekey(key(2 + (n++ % 200)), n);
      } catch (e) {
        expect(isE2eeError(e, 'ctr-exhausted')).toBe(true); // the 12-bit generation would wrap onto a used KID
        break;
      }
      add(a.kid);
      if (n % 500 === 0) while (tx.canRatchet()) add(tx.ratchet().kid);
    }
    expect(n).toBe(4096); // 4095 rekeys succeeded, the 4096th was refused
    expect(kids.size).toBe(4096 + 15 + 8 * 15);
  });

  it('concurrent seals get distinct CTRs (allocated before any await)', async () => {
    const tx = new SendKeyRing({ sender: 7, now: 0 }, key(1));
    const frames = await Promise.all(Array.from({ length: 300 }, (_, i) => tx.seal(MD, pt(i))));
    const ctrs = new Set(frames.map((f) => decodeHeader(f).ctr));
    expect(ctrs.size).toBe(300);
  });

  it('a real run: 3000 frames sealed across a ratchet and a rekey all open, each CTR once per key', async () => {
    const { tx, rx } = await pair(9);
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      if (i === 1000) tx.ratchet(); // receiver derives the ratcheted key itself
      if (i === 2000) {
        const a = tx.rekey(key(5), 0);
        await rx.addKey(a.kid, a.baseKey, 0);
      }
      const f = await tx.seal(MD, pt(i));
      const h = decodeHeader(f);
      const id = `${tx.generation}/${tx.step}/${h.ctr}`;
      expect(seen.has(id)).toBe(false);
      seen.add(id);
      expect(okText(await rx.open(f, MD, 0))).toBe(`frame ${i}`);
    }
    expect(rx.stats.opened).toBe(3000);
    expect(rx.stats.ratcheted).toBe(1);
  });

  it('CTR exhaustion (configurable limit) throws ctr-exhausted until rekey; dueForRotation warns ahead', async () => {
    const tx = new SendKeyRing({ sender: 1, now: 0, maxFramesPerKey: 16n }, key(1));
    for (let i = 0; i < 14; i++) tx.allocate();
    expect(tx.dueForRotation(0)).toBe(true); // 7/8 of the budget used
    tx.allocate();
    await tx.seal(MD, pt(0)); // the 16th
    expect(tx.remaining).toBe(0n);
    expect(errCode(() => tx.allocate())).toBe('ctr-exhausted');
    expect(await errCodeAsync(tx.seal(MD, pt(1)))).toBe('ctr-exhausted');
    tx.rekey(key(2), 5);
    expect(tx.allocate().ctr).toBe(0n);
    expect(tx.dueForRotation(5)).toBe(false);
  });

  it('dueForRotation(now) after the rotation interval (default 10 min) since the last rekey', () => {
    const tx = new SendKeyRing({ sender: 1, now: 1000 }, key(1));
    expect(tx.dueForRotation(1000 + 599_999)).toBe(false);
    expect(tx.dueForRotation(1000 + 600_000)).toBe(true);
    tx.ratchet(); // a ratchet is not a rotation
    expect(tx.dueForRotation(1000 + 600_000)).toBe(true);
    tx.rekey(key(9), 700_000);
    expect(tx.dueForRotation(700_001)).toBe(false);
  });

  it('rekey refuses the current key; a destroyed ring refuses to work', () => {
    const tx = new SendKeyRing({ sender: 1, now: 0 }, key(1));
    expect(errCode(() => tx.rekey(key(1), 0))).toBe('state');
    expect(errCode(() => tx.rekey(new Uint8Array(8), 0))).toBe('range');
    tx.destroy();
    expect(errCode(() => tx.allocate())).toBe('state');
  });

  it('§5.1 ratchet: the new base key is HKDF ratchet(base), KID step + 1, CTR back to 0', () => {
    const tx = new SendKeyRing({ sender: 2, now: 0 }, key(1));
    tx.allocate();
    const a = tx.ratchet();
    expect(a.baseKey).toEqual(ratchetBaseKey(4, key(1)));
    expect(splitKid(a.kid)).toEqual({ sender: 2, generation: 0, step: 1 });
    expect(tx.nextCtr).toBe(0n);
  });
});

describe('ReplayWindow (RFC 9605 §9.3, RFC 3711 §3.3.2 style)', () => {
  it('accepts each CTR once, out-of-order inside the window, rejects too-old CTRs', () => {
    const w = new ReplayWindow(64);
    expect(w.commit(10n)).toBe(true);
    expect(w.commit(10n)).toBe(false);
    expect(w.commit(5n)).toBe(true);
    expect(w.commit(100n)).toBe(true);
    expect(w.check(37n)).toBe(true); // 100 - 37 = 63 < 64
    expect(w.check(36n)).toBe(false); // too old
    expect(w.commit(99n)).toBe(true);
    expect(w.commit(99n)).toBe(false);
    expect(w.commit(10_000n)).toBe(true); // big jump clears the bitmap
    expect(w.check(9_999n)).toBe(true);
    expect(w.check(10_000n)).toBe(false);
  });

  it('property: matches a reference set over random CTR sequences', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 300 }), (seq) => {
        const w = new ReplayWindow(64);
        const seen = new Set<number>();
        let top = -1;
        for (const c of seq) {
          const want = !seen.has(c) && (c > top || top - c < 64);
          expect(w.commit(BigInt(c))).toBe(want);
          if (want) {
            seen.add(c);
            top = Math.max(top, c);
          }
        }
      }),
    );
  });
});

describe('ReceiveKeyRing', () => {
  it('replay: the same frame twice → second dropped as replay; a forged frame does not move the window', async () => {
    const { tx, rx } = await pair();
    const f = await tx.seal(MD, pt(1));
    expect(okText(await rx.open(f, MD, 0))).toBe('frame 1');
    expect(reason(await rx.open(f, MD, 0))).toBe('replay');
    // forged CTR far ahead: fails auth and must not advance the window
    const forged = Uint8Array.from([...encodeHeader(tx.kid, 1_000_000n), ...new Uint8Array(40)]);
    expect(reason(await rx.open(forged, MD, 0))).toBe('auth');
    const g = await tx.seal(MD, pt(2));
    expect(okText(await rx.open(g, MD, 0))).toBe('frame 2');
    expect(rx.stats.dropped.replay).toBe(1);
    expect(rx.stats.dropped.auth).toBe(1);
  });

  it('RFC 9605 §4.4.4 MUST discard: tampered frames and wrong metadata are dropped (auth) and never yield plaintext', async () => {
    const { tx, rx } = await pair();
    const f = await tx.seal(MD, pt(1));
    const bad = f.slice();
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0x80;
    expect(reason(await rx.open(bad, MD, 0))).toBe('auth');
    expect(reason(await rx.open(f, Uint8Array.of(1), 0))).toBe('auth');
    expect(okText(await rx.open(f, MD, 0))).toBe('frame 1'); // the genuine frame still opens: failures did not burn its CTR
    expect(reason(await rx.open(Uint8Array.of(0x80), MD, 0))).toBe('malformed');
    expect(reason(await rx.open(new Uint8Array(0), MD, 0))).toBe('malformed');
    expect(rx.stats.dropped).toMatchObject({ auth: 2, malformed: 2 });
  });

  it('unknown KID: another sender’s KID or a KID outside the layout is dropped and counted, never buffered', async () => {
    const { rx } = await pair(3);
    const other = new SendKeyRing({ sender: 4, now: 0 }, key(1));
    expect(reason(await rx.open(await other.seal(MD, pt(0)), MD, 0))).toBe('unknown-kid');
    const outside = Uint8Array.from([...encodeHeader(1n << 40n, 0n), ...new Uint8Array(20)]);
    expect(reason(await rx.open(outside, MD, 0))).toBe('unknown-kid');
    expect(rx.stats.dropped['unknown-kid']).toBe(2);
    expect(rx.bufferedCount).toBe(0);
  });

  it('retired keys: after a newer key is used, the old one opens in-flight frames for the grace period (2 s), then is wiped', async () => {
    const { tx, rx } = await pair(3);
    const old1 = await tx.seal(MD, pt(1));
    const old2 = await tx.seal(MD, pt(2));
    const a = tx.rekey(key(2), 1000);
    await rx.addKey(a.kid, a.baseKey, 1000);
    expect(rx.kids.length).toBe(2);
    // old key still current until a frame under the new key authenticates
    expect(okText(await rx.open(await tx.seal(MD, pt(3)), MD, 1000))).toBe('frame 3');
    expect(okText(await rx.open(old1, MD, 2999))).toBe('frame 1'); // in-flight, within grace
    expect(reason(await rx.open(old2, MD, 3000))).toBe('retired'); // grace over: wiped
    expect(rx.kids).toEqual([a.kid]);
    expect(rx.stats.dropped.retired).toBe(1);
  });

  it('retireOn arrival (default): a newer key retires the old one when it is installed; grace counts from there', async () => {
    const { tx, rx } = await pair(3);
    const old = await tx.seal(MD, pt(1));
    const late = await tx.seal(MD, pt(2));
    const a = tx.rekey(key(2), 0);
    await rx.addKey(a.kid, a.baseKey, 500);
    expect(okText(await rx.open(old, MD, 2499))).toBe('frame 1');
    expect(reason(await rx.open(late, MD, 2500))).toBe('retired');
  });

  it('RFC 9605 §5.2-style KID reuse (generation wrap, rejoin): a different key under a held KID replaces it; the same key again changes nothing', async () => {
    const { tx, rx } = await pair(3);
    const f1 = await tx.seal(MD, pt(1));
    expect(okText(await rx.open(f1, MD, 0))).toBe('frame 1');
    const again = tx.currentKey();
    await rx.addKey(again.kid, again.baseKey, 0); // same key re-sent: replay window kept
    expect(reason(await rx.open(f1, MD, 0))).toBe('replay');
    // 4096 generations later (or another ring reusing the index) the KID comes back with a new key
    const wrapped = new SendKeyRing({ sender: 3, now: 0, generation: 4096 }, key(77));
    expect(wrapped.kid).toBe(tx.kid);
    const w = wrapped.currentKey();
    await rx.addKey(w.kid, w.baseKey, 0);
    expect(rx.kids).toEqual([w.kid]);
    expect(okText(await rx.open(await wrapped.seal(MD, pt(2)), MD, 0))).toBe('frame 2');
    expect(reason(await rx.open(await tx.seal(MD, pt(3)), MD, 0))).toBe('auth'); // the replaced key is gone
  });

  it('retireOn activation: a key that arrives before the sender switches does not retire the old key early', async () => {
    const tx = new SendKeyRing({ sender: 3, now: 0 }, key(1));
    const rx = new ReceiveKeyRing<number>({ sender: 3, retireOn: 'activation' });
    const cur = tx.currentKey();
    await rx.addKey(cur.kid, cur.baseKey, 0);
    const next = new SendKeyRing({ sender: 3, now: 0, generation: 1 }, key(8));
    const a = next.currentKey();
    await rx.addKey(a.kid, a.baseKey, 0);
    expect(okText(await rx.open(await tx.seal(MD, pt(1)), MD, 10_000))).toBe('frame 1'); // still the live key
  });

  it('buffer: frames with a not-yet-known KID wait and are released, in order, when the key arrives', async () => {
    const { tx, rx } = await pair(3);
    const a = tx.rekey(key(2), 0); // sender switched; the key is still on its way
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await tx.seal(MD, pt(i)));
    for (const [i, f] of frames.entries()) expect((await rx.open(f, MD, 100 + i, i)).status).toBe('buffered');
    expect(rx.bufferedCount).toBe(5);
    const released = await rx.addKey(a.kid, a.baseKey, 900);
    expect(released.map(okText)).toEqual(['frame 0', 'frame 1', 'frame 2', 'frame 3', 'frame 4']);
    expect(released.map((r) => (r.status === 'ok' ? r.token : -1))).toEqual([0, 1, 2, 3, 4]);
    expect(rx.stats).toMatchObject({ buffered: 5, released: 5 });
    expect(rx.bufferedCount).toBe(0);
  });

  it('buffer: dropped as expired after 1 s, and beyond 64 frames as overflow', async () => {
    const { tx, rx } = await pair(3);
    const a = tx.rekey(key(2), 0);
    const frames = [];
    for (let i = 0; i < 70; i++) frames.push(await tx.seal(MD, pt(i)));
    const rs = [];
    for (const f of frames) rs.push(await rx.open(f, MD, 0));
    expect(rs.filter((r) => r.status === 'buffered').length).toBe(64);
    expect(rs.slice(64).map(reason)).toEqual(Array(6).fill('overflow'));
    expect(rx.tick(999)).toBe(0);
    expect(rx.tick(1000)).toBe(64);
    expect(rx.stats.dropped).toMatchObject({ expired: 64, overflow: 6 });
    expect(await rx.addKey(a.kid, a.baseKey, 1001)).toEqual([]); // nothing left to release
  });

  it('a member holding only the old key cannot open frames sealed after rekey (forward secrecy on leave)', async () => {
    const { tx, rx: leaver } = await pair(3);
    const oldKey = key(1);
    tx.rekey(key(2), 0);
    const f = await tx.seal(MD, pt(1));
    expect((await leaver.open(f, MD, 0)).status).toBe('buffered'); // cannot derive a new generation
    leaver.tick(1000);
    expect(leaver.stats.dropped.expired).toBe(1);
    expect(leaver.stats.opened).toBe(0);
    expect(await errCodeAsync(open(4, oldKey, MD, f))).toBe('auth');
    expect(await errCodeAsync(open(4, ratchetBaseKey(4, oldKey), MD, f))).toBe('auth');
  });

  it('join: existing receivers derive the ratcheted key locally; the joiner, holding only the ratcheted key, cannot open earlier frames', async () => {
    const { tx, rx: existing } = await pair(3);
    const before = await tx.seal(MD, pt(1));
    const a = tx.ratchet(); // someone joins
    const joiner = new ReceiveKeyRing({ sender: 3 });
    await joiner.addKey(a.kid, a.baseKey, 0);
    const after = await tx.seal(MD, pt(2));
    expect(okText(await existing.open(after, MD, 0))).toBe('frame 2');
    expect(existing.stats.ratcheted).toBe(1);
    expect(okText(await existing.open(before, MD, 1))).toBe('frame 1'); // in flight, old step within grace
    expect(okText(await joiner.open(after, MD, 0))).toBe('frame 2');
    expect(reason(await joiner.open(before, MD, 0))).toBe('retired'); // older step: never derivable
    expect(await errCodeAsync(open(4, a.baseKey, MD, before))).toBe('auth');
    expect(joiner.stats.opened).toBe(1);
  });

  it('local ratchet is committed only for an authenticated frame; it reaches every later step of the generation', async () => {
    const { tx, rx } = await pair(3);
    const kids = rx.kids;
    const nextKid = makeKid(3, 0, 1);
    const forged = Uint8Array.from([...encodeHeader(nextKid, 0n), ...new Uint8Array(32)]);
    expect(reason(await rx.open(forged, MD, 0))).toBe('auth');
    expect(rx.kids).toEqual(kids);
    expect(rx.stats.ratcheted).toBe(0);
    for (let i = 0; i < 15; i++) tx.ratchet(); // e.g. 15 joins while this receiver got no frame of the sender
    expect(okText(await rx.open(await tx.seal(MD, pt(1)), MD, 0))).toBe('frame 1'); // derives all 15 steps
    const rx2 = new ReceiveKeyRing({ sender: 3, maxRatchetAhead: 4 });
    await rx2.addKey(makeKid(3, 0, 0), key(1), 0);
    expect(reason(await rx2.open(await tx.seal(MD, pt(2)), MD, 0))).toBe('unknown-kid'); // 15 > configured 4
  });

  it('ReceiveKeyRings routes frames by the sender index in the KID; unknown senders are counted', async () => {
    const rings = new ReceiveKeyRings<string>();
    const alice = new SendKeyRing({ sender: 1, now: 0 }, key(1));
    const bob = new SendKeyRing({ sender: 2, now: 0 }, key(2));
    const carol = new SendKeyRing({ sender: 3, now: 0 }, key(3));
    for (const s of [alice, bob]) {
      const a = s.currentKey();
      await rings.addKey(a.kid, a.baseKey, 0);
    }
    expect(okText(await rings.open(await alice.seal(MD, pt(1)), MD, 0))).toBe('frame 1');
    expect(okText(await rings.open(await bob.seal(MD, pt(2)), MD, 0))).toBe('frame 2');
    expect(reason(await rings.open(await carol.seal(MD, pt(3)), MD, 0))).toBe('unknown-kid');
    expect(reason(await rings.open(Uint8Array.of(0xff), MD, 0))).toBe('malformed');
    const t = rings.totals();
    expect(t.opened).toBe(2);
    expect(t.dropped).toMatchObject({ 'unknown-kid': 1, malformed: 1 });
    rings.remove(1);
    expect(reason(await rings.open(await alice.seal(MD, pt(4)), MD, 0))).toBe('unknown-kid');
  });
});
