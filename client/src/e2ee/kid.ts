/**
 * The SFrame KID layout of our sender keys (RFC 9605 §5.1 "sender keys"): sender index | key generation | ratchet
 * step, in the low 32 bits of the KID. Pure functions, no state.
 *
 * @module
 */
import { E2eeError } from './errors.ts';

/** R of RFC 9605 §5.1: low bits of the ratchet step carried in the KID. */
export const KID_STEP_BITS = 4;
/** Low bits of the key generation carried in the KID. */
export const KID_GENERATION_BITS = 12;
/** Bits for the sender index (the membership layer assigns each member a 16-bit index). */
export const KID_SENDER_BITS = 16;
export const MAX_SENDER_INDEX = (1 << KID_SENDER_BITS) - 1;
const STEP_MOD = 1 << KID_STEP_BITS;
const GEN_MOD = 1 << KID_GENERATION_BITS;
const KID_BITS = KID_STEP_BITS + KID_GENERATION_BITS + KID_SENDER_BITS; // 32
/** Ratchet steps per generation: 0..15, ascending, never wrapping (so receivers can tell ahead from behind). */
export const MAX_RATCHET_STEP = STEP_MOD - 1;

export interface KidParts {
  /** Sender index, 0..65535. */
  readonly sender: number;
  /** Key generation modulo 4096. */
  readonly generation: number;
  /** Ratchet step within the generation, 0..15. */
  readonly step: number;
}

/**
 * KID = sender << 16 | (generation mod 4096) << 4 | step      (step 0..15; bits 63..32 are zero)
 *
 * RFC 9605 §5.1 sender-keys layout (`key_generation << R | ratchet_step`, R = 4) with the sender index placed above
 * the generation, so a KID alone names sender, generation and step and the (base_key, KID) pairs of different senders
 * never collide (RFC 9605 §9.2). The generation is a full counter reduced modulo 4096. The step is NOT reduced: a
 * generation has at most 16 steps (0..15) in ascending order, so a receiver knows whether a step is ahead of its key
 * (derivable) or behind it (never derivable); after step 15 the sender must rekey.
 * Encoded header KID size: 0-2 bytes for sender 0, 3 bytes for senders 1-255, 4 bytes above.
 */
export function makeKid(sender: number, generation: number, step = 0): bigint {
  if (!Number.isInteger(sender) || sender < 0 || sender > MAX_SENDER_INDEX) throw new E2eeError('range', 'sender index must be 0..65535');
  if (!Number.isInteger(generation) || generation < 0) throw new E2eeError('range', 'generation must be a non-negative integer');
  if (!Number.isInteger(step) || step < 0 || step > MAX_RATCHET_STEP) throw new E2eeError('range', 'step must be 0..15');
  const v = sender * 2 ** (KID_STEP_BITS + KID_GENERATION_BITS) + (generation % GEN_MOD) * STEP_MOD + step;
  return BigInt(v);
}

/** Inverse of `makeKid`. Throws `unknown-kid` for a KID outside our layout (any bit above bit 31 set). */
export function splitKid(kid: bigint): KidParts {
  if (kid < 0n || kid >= 1n << BigInt(KID_BITS)) throw new E2eeError('unknown-kid', 'KID outside the sender-key layout');
  const v = Number(kid);
  return { sender: Math.floor(v / 2 ** (KID_STEP_BITS + KID_GENERATION_BITS)), generation: Math.floor(v / STEP_MOD) % GEN_MOD, step: v % STEP_MOD };
}
