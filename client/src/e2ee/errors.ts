/**
 * The one error class of the E2EE core (SFrame, key rings, frame codec, identity, invite, metadata, HPKE,
 * envelopes, membership, codes, verification, chat).
 *
 * Every failure the core reports is an `E2eeError` carrying a `code` from one closed union, so callers can count,
 * drop or alert by reason without parsing messages. Messages never contain key material or secrets.
 *
 * @module
 */

/** Closed set of failure reasons. Extend only by adding a member here (keeps `switch` exhaustiveness checks honest). */
export type E2eeErrorCode =
  /** Input does not parse: bad encoding, truncated header or field, trailing bytes, frame shorter than the tag. */
  | 'malformed'
  /** Version / format tag not supported by this client. */
  | 'unsupported-version'
  /** AEAD authentication failed: wrong key, tampered header/metadata/ciphertext, wrong associated data. */
  | 'auth'
  /** A key has the wrong length or is not a valid key (e.g. low-order point). */
  | 'bad-key'
  /** Ed25519 signature did not verify. */
  | 'bad-signature'
  /** Membership MAC (invite-derived) did not verify: the sender does not hold the invite secret. */
  | 'bad-mac'
  /** Message is addressed to another room / recipient / epoch than the one checking it. */
  | 'wrong-context'
  /** KID not known to the receiver (and not derivable). */
  | 'unknown-kid'
  /** CTR or sequence number already seen, or too old for the replay window. */
  | 'replay'
  /** KID belongs to a key that was retired and whose grace period has ended (or it was superseded). */
  | 'retired'
  /** Cipher suite id not implemented. */
  | 'unsupported-suite'
  /** Codec cannot be protected with our clear-prefix scheme (H.264, AV1, unknown). */
  | 'unsupported-codec'
  /** The sender's counter (or the configured limit, or the KID generations) is used up: a new key is required. */
  | 'ctr-exhausted'
  /** A value is outside its allowed range (KID/CTR >= 2^64, sender index too big, bad key length...). */
  | 'range'
  /** Frame was buffered waiting for its key and the buffer deadline passed. */
  | 'expired'
  /** Frame could not be buffered because the per-sender buffer was full. */
  | 'overflow'
  /** Caller used an object or API in the wrong state (e.g. a destroyed ring, a follow-up for a missing channel). */
  | 'state';

export class E2eeError extends Error {
  readonly code: E2eeErrorCode;
  constructor(code: E2eeErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'E2eeError';
    this.code = code;
  }
}

/** Type guard, optionally for a specific code. */
export function isE2eeError(e: unknown, code?: E2eeErrorCode): e is E2eeError {
  return e instanceof E2eeError && (code === undefined || e.code === code);
}
