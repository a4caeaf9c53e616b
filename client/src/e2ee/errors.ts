/**
 * Typed errors for the E2EE core.
 *
 * Every failure the crypto core reports is an `SFrameError` (or a subclass) carrying a `code` from a closed
 * union, so callers can count/drop by reason without parsing messages. Messages never contain key material.
 *
 * @module
 */

/** Closed set of failure reasons. Extend only by adding a member here (keeps `switch` exhaustiveness checks honest). */
export type SFrameErrorCode =
  /** Input bytes do not parse (truncated header, oversized field, frame shorter than the tag, bad length). */
  | 'malformed'
  /** AEAD tag check failed: wrong key, tampered header/metadata/ciphertext. */
  | 'auth'
  /** KID not known to the receiver (and not derivable). */
  | 'unknown-kid'
  /** CTR already seen (or too old for the replay window) under this key. */
  | 'replay'
  /** KID belongs to a key that was retired and whose grace period has ended (or it was superseded). */
  | 'retired'
  /** Cipher suite id not implemented. */
  | 'unsupported-suite'
  /** Codec cannot be protected with our clear-prefix scheme (H.264, AV1, unknown). */
  | 'unsupported-codec'
  /** The sender's 64-bit counter (or the configured limit) is used up: a new key is required. */
  | 'ctr-exhausted'
  /** A value is outside its allowed range (KID/CTR >= 2^64, sender index too big, bad key length...). */
  | 'range'
  /** Frame was buffered waiting for its key and the buffer deadline passed. */
  | 'expired'
  /** Frame could not be buffered because the per-sender buffer was full. */
  | 'overflow'
  /** Caller used an object in the wrong state (e.g. sealing with a ring that has no key). */
  | 'state';

export const SFRAME_ERROR_CODES: readonly SFrameErrorCode[] = [
  'malformed',
  'auth',
  'unknown-kid',
  'replay',
  'retired',
  'unsupported-suite',
  'unsupported-codec',
  'ctr-exhausted',
  'range',
  'expired',
  'overflow',
  'state',
] as const;

export class SFrameError extends Error {
  readonly code: SFrameErrorCode;
  constructor(code: SFrameErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'SFrameError';
    this.code = code;
  }
}

/** Type guard, optionally for a specific code. */
export function isSFrameError(e: unknown, code?: SFrameErrorCode): e is SFrameError {
  return e instanceof SFrameError && (code === undefined || e.code === code);
}
