import { describe, expect, it } from 'vitest';
import { baseKeyForKid, chatInnerKid, chatKeyFor, openChatInner, sealChatInner } from '../../client/src/e2ee/chat.ts';
import { makeKid } from '../../client/src/e2ee/kid.ts';
import { DEFAULT_SUITE, deriveKeySalt, ratchetBaseKey } from '../../client/src/e2ee/sframe.ts';

const ROOM = 'RoomRoomRoomRoomRoom00';
const base = new Uint8Array(16).fill(7);
const kid = makeKid(300, 2, 0);

describe('chat keys (sealed-meet v1 chat)', () => {
  it('derives a key distinct from the SFrame key and salt, bound to the KID', () => {
    const ck = chatKeyFor(base, kid);
    expect(ck.length).toBe(32);
    const { key, salt } = deriveKeySalt(DEFAULT_SUITE, base, kid);
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    expect(hex(ck)).not.toContain(hex(key));
    expect(hex(ck)).not.toContain(hex(salt));
    expect(hex(chatKeyFor(base, makeKid(300, 2, 1)))).not.toBe(hex(ck));
    expect(hex(chatKeyFor(base, kid))).toBe(hex(ck));
  });

  it('round-trips and binds room, sender and KID', async () => {
    const sig = new Uint8Array(64).fill(3);
    const inner = await sealChatInner(base, kid, ROOM, 'alice', { text: 'hello 👋', at: 1234, seq: 7, sig });
    expect(chatInnerKid(inner)).toBe(kid);
    await expect(openChatInner(base, ROOM, 'alice', inner)).resolves.toEqual({ text: 'hello 👋', at: 1234, seq: 7, sig });
    await expect(openChatInner(base, ROOM, 'bob', inner)).rejects.toThrow();
    await expect(openChatInner(base, 'OtherRoomOtherRoom0000', 'alice', inner)).rejects.toThrow();
    await expect(openChatInner(new Uint8Array(16).fill(8), ROOM, 'alice', inner)).rejects.toThrow();
    const tampered = inner.slice();
    tampered[tampered.length - 1]! ^= 1;
    await expect(openChatInner(base, ROOM, 'alice', tampered)).rejects.toThrow();
    // The KID in the clear header is authenticated: moving the blob to another KID fails.
    const moved = inner.slice();
    moved[8]! ^= 1;
    await expect(openChatInner(base, ROOM, 'alice', moved)).rejects.toThrow();
  });

  it('follows ratchets forward, never backward or across generations', async () => {
    const k1 = ratchetBaseKey(DEFAULT_SUITE, base);
    const kid1 = makeKid(300, 2, 1);
    const inner = await sealChatInner(k1, kid1, ROOM, 'alice', { text: 'after a join', at: 1, seq: 1, sig: new Uint8Array(64) });
    const derived = baseKeyForKid({ kid, baseKey: base }, kid1)!;
    expect(Buffer.from(derived).equals(Buffer.from(k1))).toBe(true);
    await expect(openChatInner(derived, ROOM, 'alice', inner)).resolves.toMatchObject({ text: 'after a join' });
    expect(baseKeyForKid({ kid: kid1, baseKey: k1 }, kid)).toBeNull();
    expect(baseKeyForKid({ kid, baseKey: base }, makeKid(300, 3, 0))).toBeNull();
    expect(baseKeyForKid({ kid, baseKey: base }, makeKid(301, 2, 0))).toBeNull();
  });

  it('rejects non-chat blobs', () => {
    expect(chatInnerKid(new Uint8Array(40))).toBeNull();
    expect(chatInnerKid(Uint8Array.of(0x43, 1, 2))).toBeNull();
  });
});
