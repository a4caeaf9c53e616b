/**
 * One send key: a (KID, base key) pair and its CTR space (RFC 9605 §4.4.3). CTR starts at 0 and is allocated
 * synchronously before any `await`, so concurrent `seal` calls never share a CTR (RFC 9605 §7.4, §9.1). After
 * `maxFramesPerKey` frames every further `seal`/`allocate` throws `ctr-exhausted`: the key schedule
 * (send-schedule.ts) must move on. Whoever installs a key must never make a second `SendKey` for a (key, KID)
 * that already sealed: a CTR restart under a used (key, KID) is a nonce reuse (client/src/transform/send-key-slot.ts
 * enforces that for the worker).
 *
 * The base key is read once, synchronously, in the constructor (derived into the sframe key and salt); the
 * `SendKey` keeps no copy of it. The derived key is wiped when the key is destroyed and no seal is in flight.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import { splitKid } from './kid.ts';
import { DEFAULT_SUITE, MAX_U64, checkBaseKey, importSFrameKey, sealWithKey, suiteParams, wipeSFrameKey } from './sframe.ts';
import type { SFrameKey, SealOptions } from './sframe.ts';

/**
 * Frames a single base key may protect (CTR values 0..max-1) by default: 2^32, far below the 2^64 the header allows
 * and below AES-GCM usage limits for large frames; with the 10-minute rotation it is never reached in practice.
 */
export const DEFAULT_MAX_FRAMES_PER_KEY = 1n << 32n;

/** What the frame codec needs of a sender: seal one frame with a fresh CTR. */
export interface FrameSealer {
  seal(metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array>;
}

export interface SendKeyOptions {
  /** The KID this key seals under (kid.ts layout). */
  readonly kid: bigint;
  /** Cipher suite, default 0x0004 AES_128_GCM_SHA256_128. */
  readonly suite?: number;
  /** See `DEFAULT_MAX_FRAMES_PER_KEY` (tests set it small). */
  readonly maxFramesPerKey?: bigint;
}

export class SendKey implements FrameSealer {
  readonly kid: bigint;
  readonly maxFramesPerKey: bigint;
  readonly #key: Promise<SFrameKey>;
  /** Set once the import resolved: the hot path then calls sealWithKey synchronously (no extra await). */
  #ready: SFrameKey | undefined;
  #ctr = 0n;
  #pending = 0;
  #destroyed = false;

  /** `baseKey` is only read here; the caller wipes its own copy. */
  constructor(opts: SendKeyOptions, baseKey: Uint8Array) {
    const suite = opts.suite ?? DEFAULT_SUITE;
    suiteParams(suite);
    splitKid(opts.kid); // our KID layout only
    this.maxFramesPerKey = opts.maxFramesPerKey ?? DEFAULT_MAX_FRAMES_PER_KEY;
    if (this.maxFramesPerKey < 1n || this.maxFramesPerKey > MAX_U64) throw new E2eeError('range', 'maxFramesPerKey must be in [1, 2^64 - 1]');
    this.kid = opts.kid;
    checkBaseKey(baseKey);
    this.#key = importSFrameKey(suite, baseKey, opts.kid, 'seal'); // derives key and salt before its first await
    this.#key.then(
      (k) => {
        this.#ready = k;
      },
      () => undefined, // surfaced on use
    );
  }

  /** Next CTR to be used. */
  get nextCtr(): bigint {
    return this.#ctr;
  }
  /** Frames left before `ctr-exhausted`. */
  get remaining(): bigint {
    return this.maxFramesPerKey - this.#ctr;
  }

  /**
   * Reserve the next CTR. Synchronous: two calls never return the same CTR. Throws `ctr-exhausted` once
   * `maxFramesPerKey` CTRs were handed out, `state` after `destroy`.
   */
  allocate(): { kid: bigint; ctr: bigint } {
    if (this.#destroyed) throw new E2eeError('state', 'send key destroyed');
    if (this.#ctr >= this.maxFramesPerKey) throw new E2eeError('ctr-exhausted', 'frame counter limit reached for this key; rekey required');
    const ctr = this.#ctr;
    this.#ctr = ctr + 1n;
    return { kid: this.kid, ctr };
  }

  /** Seal one frame with a fresh CTR. Returns `header || ciphertext` (or `leading || ...`). */
  seal(metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array> {
    let ctr: bigint;
    try {
      ctr = this.allocate().ctr;
    } catch (err) {
      return Promise.reject(err);
    }
    // Fast path: key imported. sealWithKey reads the salt and builds the nonce synchronously, before its first await,
    // so wiping this key after `destroy` cannot affect the call in flight.
    if (this.#ready !== undefined) return sealWithKey(this.#ready, ctr, metadata, plaintext, opts);
    return this.#sealSlow(ctr, metadata, plaintext, opts);
  }

  async #sealSlow(ctr: bigint, metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array> {
    this.#pending++;
    try {
      return await sealWithKey(await this.#key, ctr, metadata, plaintext, opts);
    } finally {
      this.#pending--;
      this.#wipeWhenIdle();
    }
  }

  #wipeWhenIdle(): void {
    if (this.#destroyed && this.#pending === 0) this.#key.then(wipeSFrameKey, () => undefined);
  }

  /** Refuse further use and wipe the derived key once no seal is in flight. */
  destroy(): void {
    this.#destroyed = true;
    this.#wipeWhenIdle();
  }
}
