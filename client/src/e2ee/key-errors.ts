/**
 * Typed errors for the key-management half of the E2EE core (identity, invite, metadata, HPKE, envelopes,
 * membership, codes, verification). The SFrame half has its own `SFrameError` in `errors.ts`.
 *
 * Messages never contain key material or secrets.
 *
 * @module
 */

/** Closed set of failure reasons. */
export type KeyErrorCode =
  /** Input does not parse: bad encoding, truncated, wrong length, trailing bytes, bad field value. */
  | 'malformed'
  /** Version / format tag not supported by this client. */
  | 'unsupported-version'
  /** A key has the wrong length or is not a valid key (e.g. low-order point). */
  | 'bad-key'
  /** AEAD authentication failed (wrong key, tampered bytes, wrong associated data). */
  | 'auth'
  /** Ed25519 signature did not verify. */
  | 'bad-signature'
  /** Membership MAC (invite-derived) did not verify: the sender does not hold the invite secret. */
  | 'bad-mac'
  /** Message is addressed to another room / recipient / epoch than the one checking it. */
  | 'wrong-context'
  /** Sequence number already seen or older than the last accepted one (replay or reorder). */
  | 'replay'
  /** Caller used the API in the wrong state (e.g. follow-up message for a context that does not exist). */
  | 'state';

export const KEY_ERROR_CODES: readonly KeyErrorCode[] = [
  'malformed',
  'unsupported-version',
  'bad-key',
  'auth',
  'bad-signature',
  'bad-mac',
  'wrong-context',
  'replay',
  'state',
] as const;

export class KeyError extends Error {
  readonly code: KeyErrorCode;
  constructor(code: KeyErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'KeyError';
    this.code = code;
  }
}

/** Type guard, optionally for a specific code. */
export function isKeyError(e: unknown, code?: KeyErrorCode): e is KeyError {
  return e instanceof KeyError && (code === undefined || e.code === code);
}
