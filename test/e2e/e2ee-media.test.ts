/**
 * End-to-end encrypted media over the real server with the TEST-ONLY media tap on:
 * (a) three participants see and hear each other, every frame sealed / opened in the worker, and the frame ledger holds
 *     (what the encoder produced = what the worker sealed or dropped = what the packetizer sent; likewise on receive);
 * (b) what the SFU forwards is SFrame: clear prefix + header + ciphertext; with keys exported from the
 *     participants (`?e2ee-test-hooks=1`), Node decrypts it with the core into valid VP8 / Opus;
 * (f) a screen share is encrypted too, and the first frame of every producer at the tap is already SFrame;
 * (d) after a participant leaves, everyone rotates to a fresh key, and tapped frames sent after the rotation do
 *     not open with any key the leaver held (ratchets included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitKid } from '../../client/src/e2ee/kid.ts';
import { Harness, dumpLogs, expectMediaFlowing, refresh, roomIdOf, sleep, snapshot, waitUntil, type Participant } from './harness.ts';
import {
  codecOf,
  createAndJoin,
  expectEncryptedFlow,
  exportKeys,
  frameLedger,
  fromHex,
  isPlausibleOpus,
  isPlausibleVp8Frame,
  isValidVp8KeyFrame,
  joinHooked,
  ledgerProblems,
  parseProtected,
  tryOpen,
  withRatchets,
} from './e2ee-helpers.ts';

const API = 'script' as const;

describe('E2EE media (RTCRtpScriptTransform, tap on)', () => {
  let h: Harness;
  let alice: Participant;
  let bob: Participant;
  let carol: Participant;
  let link = '';
  const ids = new Map<Participant, string>();

  beforeAll(async () => {
    h = await Harness.start({ tap: true });
  });
  afterAll(async () => {
    await h?.close();
  });

  const tap = () => h.server.tap!;
  const roomProducers = () => tap().producers().filter((p) => p.roomId === roomIdOf(link));

  /** KID → base key from every participant's send history (each sender's own keys cover all its frames). */
  async function allSendKeys(ps: Participant[]): Promise<Map<bigint, Uint8Array>> {
    const m = new Map<bigint, Uint8Array>();
    for (const p of ps) for (const k of (await exportKeys(p)).sendHistory) m.set(BigInt(k.kid), fromHex(k.key));
    return m;
  }

  it('(a) three participants see and hear each other, every frame sealed and opened', async () => {
    try {
      alice = await h.participant('Alice');
      bob = await h.participant('Bob');
      carol = await h.participant('Carol');
      link = await createAndJoin(alice, h.url, API);
      await joinHooked(bob, link, API);
      await joinHooked(carol, link, API);
      for (const p of [alice, bob, carol]) ids.set(p, (await snapshot(p)).peerId!);
      for (const p of [alice, bob, carol]) {
        const others = [alice, bob, carol].filter((o) => o !== p).map((o) => ids.get(o)!);
        await expectMediaFlowing(p, others, 150_000);
      }
      for (const p of [alice, bob, carol]) await expectEncryptedFlow(p, 4);
      // All three show the same room code (same roster).
      const codes = await Promise.all([alice, bob, carol].map(async (p) => JSON.stringify((await snapshot(p)).e2ee.roomCode)));
      expect(new Set(codes).size).toBe(1);
    } catch (err) {
      console.error(dumpLogs(h));
      for (const p of [alice, bob, carol]) if (p) console.error(`--- ${p.name} ---\n${JSON.stringify(await snapshot(p).catch(() => null))}`);
      throw err;
    }
  }, 420_000);

  it('(b) the SFU forwards only SFrame; with exported keys the frames decrypt to valid VP8 / Opus', async () => {
    const producers = roomProducers().filter((p) => !p.closed);
    expect(producers.length).toBe(6);
    const keys = await allSendKeys([alice, bob, carol]);
    const senderOf = new Map<string, number>();
    for (const p of [alice, bob, carol]) senderOf.set(ids.get(p)!, (await exportKeys(p)).senderIndex!);
    for (const prod of producers) {
      const codec = codecOf(prod.codec);
      const frames = tap().frames(prod.producerId);
      expect(frames.length, `${prod.source} frames at the tap`).toBeGreaterThan(10);
      let keyFrames = 0;
      let opened = 0;
      for (const f of frames) {
        const data = new Uint8Array(f.data);
        const parsed = parseProtected(codec, data);
        expect(splitKid(parsed.kid).sender, `${prod.source}: KID names the producer's sender`).toBe(senderOf.get(prod.peerId!));
        const key = keys.get(parsed.kid);
        expect(key, `${prod.source}: a key for KID ${parsed.kid}`).toBeDefined();
        const plain = await tryOpen(codec, data, key!);
        expect(plain, `${prod.source} frame ${f.index} opens`).not.toBeNull();
        opened++;
        // SFrame overhead exactly: header + 16-byte tag.
        expect(data.length - plain!.length).toBe(parsed.headerLength + 16);
        if (codec === 'vp8') {
          expect(isPlausibleVp8Frame(plain!), `${prod.source} frame ${f.index} is VP8`).toBe(true);
          if (f.keyFrame) {
            keyFrames++;
            expect(isValidVp8KeyFrame(plain!)).toBe(true);
          }
          // What the SFU sees after the clear prefix is ciphertext, not the VP8 bitstream.
          expect(Buffer.from(data.subarray(parsed.prefix.length)).equals(Buffer.from(plain!.subarray(parsed.prefix.length)))).toBe(false);
        } else {
          expect(isPlausibleOpus(plain!)).toBe(true);
          expect(parsed.prefix.length).toBe(1);
        }
      }
      expect(opened).toBe(frames.length);
      if (codec === 'vp8') expect(keyFrames + tap().firstFrames(prod.producerId).filter((f) => f.keyFrame).length).toBeGreaterThan(0);
    }
  }, 120_000);

  it('(f) screen share is encrypted, and the first frame of every producer at the tap is SFrame', async () => {
    await alice.page.getByTestId('toggle-screen').click();
    let screenId = '';
    await waitUntil(
      async () => {
        const s = (await snapshot(alice)).producers.find((x) => x.source === 'screen');
        screenId = s?.id ?? '';
        return !!s;
      },
      30_000,
      'Alice screen producer',
    );
    await tap().waitForFrames(screenId, 5, 30_000);
    await waitUntil(
      async () => {
        const s = await refresh(bob);
        return s.consumers.some((c) => c.source === 'screen' && c.opened > 5);
      },
      60_000,
      'Bob opens Alice screen frames',
    );
    const keys = await allSendKeys([alice, bob, carol]);
    for (const prod of roomProducers()) {
      const codec = codecOf(prod.codec);
      const first = tap().firstFrames(prod.producerId);
      expect(first.length, `${prod.source}: first frames recorded`).toBeGreaterThan(0);
      for (const f of first) {
        const data = new Uint8Array(f.data);
        const parsed = parseProtected(codec, data);
        const plain = await tryOpen(codec, data, keys.get(parsed.kid) ?? new Uint8Array(16));
        expect(plain, `${prod.source} first frame ${f.index} is SFrame under a known key`).not.toBeNull();
      }
    }
    const ledger = await frameLedger(alice);
    const screen = ledger.send.find((x) => x.media.source === 'screen')!;
    expect(screen.media.sealed).toBeGreaterThan(0);
    expect(ledgerProblems('Alice', ledger)).toEqual([]);
  }, 180_000);

  it('(d) after Carol leaves, frames sent after the rotation do not open with any key Carol held', async () => {
    const carolKeys = await exportKeys(carol);
    const carolHeld = withRatchets([...carolKeys.receive.map((r) => ({ kid: r.kid, key: r.key })), ...carolKeys.sendHistory]);
    const before = new Map<Participant, string>();
    for (const p of [alice, bob]) before.set(p, (await exportKeys(p)).send!.kid);
    await carol.page.getByTestId('leave').click();
    // Every remaining sender switches to a fresh key (new generation).
    for (const p of [alice, bob]) {
      await waitUntil(
        async () => {
          const k = (await exportKeys(p)).send;
          return !!k && splitKid(BigInt(k.kid)).generation !== splitKid(BigInt(before.get(p)!)).generation;
        },
        30_000,
        `${p.name} rotated its send key`,
      );
    }
    await expectMediaFlowing(alice, [ids.get(bob)!], 60_000);
    await expectMediaFlowing(bob, [ids.get(alice)!], 60_000);
    const keys = await allSendKeys([alice, bob]);
    let checked = 0;
    for (const p of [alice, bob]) {
      const fresh = BigInt((await exportKeys(p)).send!.kid);
      for (const prod of roomProducers().filter((x) => x.peerId === ids.get(p) && !x.closed)) {
        const codec = codecOf(prod.codec);
        const after = tap()
          .frames(prod.producerId)
          .filter((f) => parseProtected(codec, new Uint8Array(f.data)).kid === fresh);
        expect(after.length, `${p.name} ${prod.source}: frames under the fresh key`).toBeGreaterThan(0);
        for (const f of after) {
          const data = new Uint8Array(f.data);
          expect(carolHeld.has(fresh), 'Carol never held the fresh KID').toBe(false);
          for (const k of carolHeld.values()) expect(await tryOpen(codec, data, k)).toBeNull();
          expect(await tryOpen(codec, data, keys.get(fresh)!)).not.toBeNull();
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
  }, 240_000);
});
