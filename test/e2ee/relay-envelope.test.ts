import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { deriveInviteKeysSync, generateInvite } from '../../client/src/e2ee/invite.ts';
import { MAX_PADDED, RELAY_BUCKET, openRelay, padRelay, sealRelay, unpadRelay } from '../../client/src/e2ee/relay-envelope.ts';
import { isE2eeError } from '../../client/src/e2ee/errors.ts';

const invite = generateInvite();
const roomId = invite.roomId;
const keys = deriveInviteKeysSync(invite.secret, roomId);

describe('relay envelope (uniform outer layer)', () => {
  it('round-trips any size and pads to 1024-byte buckets', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 5000 }), async (inner) => {
        const outer = await sealRelay(keys.metadataKey, roomId, 'peerA', inner);
        expect(outer[0]).toBe(0x01);
        expect((outer.length - 29) % RELAY_BUCKET).toBe(0);
        expect(await openRelay(keys.metadataKey, roomId, 'peerA', outer)).toEqual(inner);
      }),
      { numRuns: 40 },
    );
  });

  it('a key message and a chat-sized message look alike on the wire (same kind byte, same size)', async () => {
    const announcement = new Uint8Array(700).fill(0x41);
    announcement[0] = 0x41;
    const chat = new Uint8Array(90).fill(0x01);
    const a = await sealRelay(keys.metadataKey, roomId, 'p', announcement);
    const c = await sealRelay(keys.metadataKey, roomId, 'p', chat);
    expect(a.length).toBe(c.length);
    expect(a[0]).toBe(c[0]);
  });

  it('the largest key batch (48000 bytes + kind) still fits the relay limit', () => {
    const p = padRelay(new Uint8Array(48_001));
    expect(p.length).toBeLessThanOrEqual(MAX_PADDED);
    expect(Math.ceil(((p.length + 29) * 4) / 3)).toBeLessThanOrEqual(65_536);
    expect(() => padRelay(new Uint8Array(MAX_PADDED))).toThrow();
  });

  it('rejects a blob re-attributed to another sender, another room, or without the invite key', async () => {
    const outer = await sealRelay(keys.metadataKey, roomId, 'peerA', new Uint8Array([0x41, 1, 2, 3]));
    for (const attempt of [
      () => openRelay(keys.metadataKey, roomId, 'peerB', outer),
      () => openRelay(keys.metadataKey, generateInvite().roomId, 'peerA', outer),
      () => openRelay(deriveInviteKeysSync(generateInvite().secret, roomId).metadataKey, roomId, 'peerA', outer),
    ]) {
      await expect(attempt()).rejects.toSatisfy(isE2eeError);
    }
  });

  it('bad padding is a typed error', () => {
    expect(() => unpadRelay(new Uint8Array(16))).toThrow();
    expect(() => unpadRelay(new Uint8Array([1, 2, 3]))).toThrow();
    expect(unpadRelay(new Uint8Array([1, 2, 0x80, 0, 0]))).toEqual(new Uint8Array([1, 2]));
  });
});
