/**
 * Media attribution: a receive pipeline carries the media of ONE member — the one the server's consume answer names,
 * mapped to that member's sender index by the key exchange. A frame opens on it only if its KID names that sender
 * index; the ring of that index then authenticates it under that member's key. The server can still route any
 * producer to any consumer, but another member's frames are dropped (`wrong-sender`), never decoded in this tile.
 *
 * Pure and Node-testable; the worker calls it before a frame reaches the key rings.
 *
 * @module
 */
import { splitProtected, type MediaCodec } from '../e2ee/frame-codec.ts';
import { splitKid } from '../e2ee/kid.ts';
import { decodeHeader } from '../e2ee/sframe.ts';

/** The sender index a protected frame's KID names, or null if the frame has no decodable SFrame header in our layout. */
export function frameSender(codec: MediaCodec, data: Uint8Array): number | null {
  try {
    return splitKid(decodeHeader(splitProtected(codec, data).sframe).kid).sender;
  } catch {
    return null;
  }
}

/**
 * What a receive pipeline bound to `expected` does with a frame: `open` it (its KID names the bound sender, or the
 * header is broken, which the rings count as malformed), drop it as `unbound` (the member it carries has no sender
 * index yet: not admitted), or drop it as `wrong-sender`.
 */
export function admitFrame(expected: number | null, codec: MediaCodec, data: Uint8Array): 'open' | 'unbound' | 'wrong-sender' {
  if (expected === null) return 'unbound';
  const sender = frameSender(codec, data);
  if (sender === null || sender === expected) return 'open';
  return 'wrong-sender';
}
