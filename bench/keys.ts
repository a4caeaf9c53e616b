/**
 * Key-transport benchmark: one full rekey by one sender to n-1 recipients (n = 10, 50, 100 members), the first
 * time (every channel new: one X-Wing encapsulation + HPKE psk setup per recipient) and again on reused channels
 * (AES-128-GCM + Ed25519 signature per recipient). Reports envelopes, relay messages (batches, split under the
 * 48000-byte relay cap), bytes, sender ms, and per-recipient open ms. Plus one-off costs: session key generation,
 * announcement verification, liveness proof (sign + verify, once per pair per side), a room-code round (one
 * commitment signed, n-1 verified, n reveals opened: per member per roster change), safety number, and one identity
 * signature by each signer (identity-key.ts: the non-extractable WebCrypto key, the raw noble fallback).
 */
import { openKeyBatch, sealKeyBatch, type KeyUpdate } from '../client/src/e2ee/envelope.ts';
import type { SenderChannel } from '../client/src/e2ee/hpke.ts';
import { generateSessionKeyPair, newSession } from '../client/src/e2ee/identity.ts';
import { createIdentity, rawIdentity } from '../client/src/e2ee/identity-key.ts';
import { deriveInviteKeysSync } from '../client/src/e2ee/invite.ts';
import {
  decodeCodeReveal,
  encodeCodeCommit,
  encodeCodeReveal,
  encodeSignedAnnouncement,
  openCodeCommit,
  openSignedAnnouncement,
  proveLiveness,
  verifyLiveness,
} from '../client/src/e2ee/membership-messages.ts';
import { randomBytes } from '../client/src/e2ee/bytes.ts';
import { roomCode, roomCodeCommitment, rosterHash, safetyNumber } from '../client/src/e2ee/codes.ts';
import { loadavg } from 'node:os';

const ROOM = 'AAAAAAAAAAAAAAAAAAAAAA';

async function time<T>(f: () => Promise<T> | T): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

export async function benchKeys(): Promise<string[]> {
  const out: string[] = [];
  const keys = deriveInviteKeysSync(new Uint8Array(32).fill(1), ROOM);
  const psk = { key: keys.psk, id: keys.pskId };
  const sender = { memberId: 'sender', identity: await createIdentity(), session: generateSessionKeyPair() };
  const update = (g: number): KeyUpdate => ({ reason: 'fresh', senderIndex: 1, generation: g, step: 0, kid: BigInt(g), baseKey: new Uint8Array(16).fill(g) });

  // warm-up (JIT, noble precomputes) so the first row is not charged for it
  {
    const r = generateSessionKeyPair();
    const w = await sealKeyBatch({
      roomId: ROOM,
      epoch: 1,
      sender: { memberId: sender.memberId, identity: sender.identity, sessionPublicKey: sender.session.publicKey },
      psk,
      recipients: [{ memberId: 'w', sessionPublicKey: r.publicKey }],
      update: update(1),
    });
    await openKeyBatch(w.batches[0]!, {
      roomId: ROOM,
      fromMemberId: sender.memberId,
      me: { memberId: 'w', sessionSecretKey: r.secretKey, sessionPublicKey: r.publicKey },
      sender: { identityPublicKey: sender.identity.publicKey, sessionPublicKey: sender.session.publicKey },
      psk,
    });
  }
  out.push(`load average at start: ${loadavg().map((x) => x.toFixed(1)).join(' ')} (machine has 2 cores; numbers scale with load)`);
  const [, kg] = await time(() => {
    for (let i = 0; i < 10; i++) generateSessionKeyPair();
  });
  const id = await createIdentity();
  const sess = await newSession(id, ROOM, 'm');
  const ann = encodeSignedAnnouncement(sess, keys.membershipMacKey);
  const [, av] = await time(() => {
    for (let i = 0; i < 20; i++) openSignedAnnouncement(ann, keys.membershipMacKey, ROOM);
  });
  const [, sn] = await time(() => safetyNumber(id.publicKey, sender.identity.publicKey));
  const raw = rawIdentity();
  const msg = randomBytes(200);
  await id.sign(msg); // warm-up (first WebCrypto call)
  await raw.sign(msg);
  const [, sw] = await time(async () => {
    for (let i = 0; i < 20; i++) await id.sign(msg);
  });
  const [, sr] = await time(async () => {
    for (let i = 0; i < 20; i++) await raw.sign(msg);
  });
  out.push(`identity signature (200 B): ${id.kind} ${(sw / 20).toFixed(2)} ms, raw fallback ${(sr / 20).toFixed(2)} ms`);
  out.push(`one-off: X-Wing session keygen ${(kg / 10).toFixed(2)} ms, announcement MAC+signature check ${(av / 20).toFixed(2)} ms (${ann.length} B), safety number ${sn.toFixed(1)} ms`);
  const live = {
    roomId: ROOM,
    challenger: { memberId: 'c', sessionPublicKey: sender.session.publicKey, joinNonce: randomBytes(16) },
    responder: { memberId: 'm', sessionPublicKey: sess.keyPair.publicKey },
  };
  const [, lv] = await time(async () => {
    for (let i = 0; i < 20; i++) if (!verifyLiveness(id.publicKey, live, await proveLiveness(id, live))) throw new Error('liveness proof');
  });
  out.push(`per pair, per side: liveness proof sign + verify ${(lv / 20).toFixed(2)} ms`);
  for (const n of [10, 100]) {
    const members = Array.from({ length: n }, (_, i) => ({ memberId: `m${i}`, identityPublicKey: id.publicKey, sessionPublicKey: sess.keyPair.publicKey }));
    const [, rc] = await time(async () => {
      const R = rosterHash(members);
      const value = randomBytes(32);
      const c = { round: 1, rosterHash: R, commitment: roomCodeCommitment(ROOM, 'm0', 1, R, value) };
      const commit = await encodeCodeCommit(id, ROOM, 'm0', sess.keyPair.publicKey, c); // ours
      for (let i = 1; i < n; i++) openCodeCommit(commit, ROOM, { memberId: 'm0', identityPublicKey: id.publicKey, sessionPublicKey: sess.keyPair.publicKey }); // theirs
      const reveal = encodeCodeReveal(1, value);
      for (let i = 0; i < n; i++) roomCodeCommitment(ROOM, 'm0', 1, R, decodeCodeReveal(reveal).value); // open every reveal
      roomCode(R, members.map((m) => ({ memberId: m.memberId, value })));
    });
    out.push(`room-code round, ${n} members (per member, per roster change): ${rc.toFixed(1)} ms; sends 1 commitment + 1 reveal, receives ${n - 1} of each`);
  }
  out.push('members | rekey     | envelopes | relay msgs | bytes   | sender ms | recipient open ms');

  for (const n of [10, 50, 100]) {
    const recips = Array.from({ length: n - 1 }, (_, i) => ({ memberId: `m${i}`, session: generateSessionKeyPair() }));
    const input = (g: number, channels?: Map<string, SenderChannel>) => ({
      roomId: ROOM,
      epoch: g,
      sender: { memberId: sender.memberId, identity: sender.identity, sessionPublicKey: sender.session.publicKey },
      psk,
      recipients: recips.map((r) => {
        const ch = channels?.get(r.memberId);
        return ch ? { memberId: r.memberId, sessionPublicKey: r.session.publicKey, channel: ch } : { memberId: r.memberId, sessionPublicKey: r.session.publicKey };
      }),
      update: update(g),
    });
    const [first, t1] = await time(() => sealKeyBatch(input(1)));
    const [again, t2] = await time(() => sealKeyBatch(input(2, first.channels)));
    // recipient side: the last recipient opens its envelope (new channel, then reused)
    const last = recips[recips.length - 1]!;
    const openIn = {
      roomId: ROOM,
      fromMemberId: sender.memberId,
      me: { memberId: last.memberId, sessionSecretKey: last.session.secretKey, sessionPublicKey: last.session.publicKey },
      sender: { identityPublicKey: sender.identity.publicKey, sessionPublicKey: sender.session.publicKey },
      psk,
    };
    const lastBatch1 = first.batches[first.batches.length - 1]!;
    const [o1, r1] = await time(() => openKeyBatch(lastBatch1, openIn));
    const lastBatch2 = again.batches[again.batches.length - 1]!;
    const [, r2] = await time(() => openKeyBatch(lastBatch2, { ...openIn, channel: o1!.channel, lastEpoch: 1 }));
    const bytes = (b: Uint8Array[]) => b.reduce((a, x) => a + x.length, 0);
    out.push(
      `${String(n).padStart(7)} | first     | ${String(n - 1).padStart(9)} | ${String(first.batches.length).padStart(10)} | ${String(bytes(first.batches)).padStart(7)} | ${t1.toFixed(1).padStart(9)} | ${r1.toFixed(2)}`,
    );
    out.push(
      `${String(n).padStart(7)} | reused    | ${String(n - 1).padStart(9)} | ${String(again.batches.length).padStart(10)} | ${String(bytes(again.batches)).padStart(7)} | ${t2.toFixed(1).padStart(9)} | ${r2.toFixed(2)}`,
    );
  }
  out.push('bytes = binary batch size; the relay blob is base64url (x4/3) plus 1 kind byte. first = one X-Wing encapsulation per recipient.');
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const l of await benchKeys()) console.log(l);
}
