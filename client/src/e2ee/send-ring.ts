/**
 * The local sender's key ring for SFrame (RFC 9605 §5.1 "sender keys"): owns the current base key, hands out
 * (KID, CTR) pairs that never repeat under a base key, ratchets (join) and rekeys (leave, timer, counter exhaustion).
 * A pure state machine, time injected as `now` (ms); base keys are copied in and wiped (`fill(0)`) when dropped.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import { MAX_RATCHET_STEP, makeKid } from './kid.ts';
import { DEFAULT_SUITE, MAX_U64, constantTimeEqual, importSFrameKey, ratchetBaseKey, sealWithKey, suiteParams, wipeSFrameKey } from './sframe.ts';
import type { SFrameKey, SealOptions } from './sframe.ts';

/** What the key protocol hands to receivers: the base key for a KID. `baseKey` is a copy the caller must wipe. */
export interface KeyAnnouncement {
  readonly kid: bigint;
  readonly baseKey: Uint8Array;
  /** Full generation counter (the KID carries it mod 4096). */
  readonly generation: number;
  /** Ratchet step within the generation (0..15). */
  readonly step: number;
}

export interface SendKeyRingOptions {
  readonly sender: number;
  /** Cipher suite, default 0x0004 AES_128_GCM_SHA256_128. */
  readonly suite?: number;
  /** Time of construction (ms); starts the rotation timer. */
  readonly now: number;
  /** Rotate to a fresh random key after this long (default 10 min). */
  readonly rotationIntervalMs?: number;
  /**
   * Number of frames a single base key may protect (CTR values 0..maxFramesPerKey-1). Default 2^32: far below the
   * 2^64 the header allows and below AES-GCM usage limits for large frames; with the 10-minute timer it is never
   * reached in practice. Tests set it small.
   */
  readonly maxFramesPerKey?: bigint;
  /** First generation number (default 0). */
  readonly generation?: number;
}

interface SendEntry {
  readonly kid: bigint;
  readonly key: Promise<SFrameKey>;
  /** Set once the import resolved: the hot path then calls sealWithKey synchronously (no extra await). */
  ready: SFrameKey | undefined;
  pending: number;
  retired: boolean;
}

function wipeWhenIdle(e: SendEntry): void {
  if (e.retired && e.pending === 0) e.key.then(wipeSFrameKey, () => undefined);
}

export const DEFAULT_ROTATION_MS = 10 * 60 * 1000;
export const DEFAULT_MAX_FRAMES_PER_KEY = 1n << 32n;

/**
 * The local sender's key state. CTR starts at 0 for every base key and is allocated synchronously before any
 * `await`, so concurrent `seal` calls never share a CTR (RFC 9605 §7.4, §9.1). When the CTR limit is reached every
 * further `seal`/`allocate` throws `ctr-exhausted` until `rekey`.
 */
export class SendKeyRing {
  readonly sender: number;
  readonly suite: number;
  readonly rotationIntervalMs: number;
  readonly maxFramesPerKey: bigint;
  #base: Uint8Array;
  #generation: number;
  #step = 0;
  #ctr = 0n;
  /** Every KID this ring has sealed under: a KID is never reused, even with a different base key. */
  #usedKids = new Set<bigint>();
  #rekeyedAt: number;
  #entry: SendEntry;
  #destroyed = false;

  /** `baseKey` is copied; the caller should wipe its own copy. */
  constructor(opts: SendKeyRingOptions, baseKey: Uint8Array) {
    this.suite = opts.suite ?? DEFAULT_SUITE;
    suiteParams(this.suite);
    makeKid(opts.sender, 0); // validates the sender index
    this.sender = opts.sender;
    this.rotationIntervalMs = opts.rotationIntervalMs ?? DEFAULT_ROTATION_MS;
    this.maxFramesPerKey = opts.maxFramesPerKey ?? DEFAULT_MAX_FRAMES_PER_KEY;
    if (this.maxFramesPerKey < 1n || this.maxFramesPerKey > MAX_U64) throw new E2eeError('range', 'maxFramesPerKey must be in [1, 2^64 - 1]');
    this.#generation = opts.generation ?? 0;
    this.#base = SendKeyRing.#copyKey(baseKey);
    this.#rekeyedAt = opts.now;
    this.#entry = this.#newEntry();
  }

  static #copyKey(k: Uint8Array): Uint8Array {
    if (!(k instanceof Uint8Array) || k.length < 16) throw new E2eeError('range', 'base key must be at least 16 bytes');
    return k.slice();
  }

  #newEntry(): SendEntry {
    const kid = makeKid(this.sender, this.#generation, this.#step);
    this.#usedKids.add(kid);
    const key = importSFrameKey(this.suite, this.#base, kid, 'seal');
    const e: SendEntry = { kid, key, ready: undefined, pending: 0, retired: false };
    key.then(
      (k) => {
        e.ready = k;
      },
      () => undefined, // surfaced on use
    );
    return e;
  }

  #switch(): void {
    const old = this.#entry;
    old.retired = true;
    this.#ctr = 0n;
    this.#entry = this.#newEntry();
    wipeWhenIdle(old);
  }

  #alive(): void {
    if (this.#destroyed) throw new E2eeError('state', 'key ring destroyed');
  }

  get kid(): bigint {
    return this.#entry.kid;
  }
  get generation(): number {
    return this.#generation;
  }
  get step(): number {
    return this.#step;
  }
  /** Next CTR to be used under the current key. */
  get nextCtr(): bigint {
    return this.#ctr;
  }
  /** Frames left under the current key before `ctr-exhausted`. */
  get remaining(): bigint {
    return this.maxFramesPerKey - this.#ctr;
  }

  /**
   * Reserve the next (KID, CTR). Synchronous: two calls never return the same pair for the same base key.
   * Throws `ctr-exhausted` once `maxFramesPerKey` CTRs were handed out under the current key.
   */
  allocate(): { kid: bigint; ctr: bigint } {
    this.#alive();
    if (this.#ctr >= this.maxFramesPerKey) throw new E2eeError('ctr-exhausted', 'frame counter limit reached for this key; rekey required');
    const ctr = this.#ctr;
    this.#ctr = ctr + 1n;
    return { kid: this.#entry.kid, ctr };
  }

  /** Seal one frame under the current key with a fresh CTR. Returns `header || ciphertext` (or `leading || ...`). */
  seal(metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array> {
    let ctr: bigint;
    try {
      ctr = this.allocate().ctr;
    } catch (err) {
      return Promise.reject(err);
    }
    const e = this.#entry;
    // Fast path: key imported. sealWithKey reads the salt and builds the nonce synchronously, before its first await,
    // so wiping this key after a later switch cannot affect the call in flight.
    if (e.ready !== undefined) return sealWithKey(e.ready, ctr, metadata, plaintext, opts);
    return this.#sealSlow(e, ctr, metadata, plaintext, opts);
  }

  async #sealSlow(e: SendEntry, ctr: bigint, metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array> {
    e.pending++;
    try {
      return await sealWithKey(await e.key, ctr, metadata, plaintext, opts);
    } finally {
      e.pending--;
      wipeWhenIdle(e);
    }
  }

  /**
   * RFC 9605 §5.1 ratchet (on join): base_key <- HKDF-Expand(HKDF-Extract("", base_key), "SFrame 1.0 Ratchet", Nh),
   * step + 1, CTR back to 0. The previous base key is wiped. Returns the new key for the joiner (a copy to wipe
   * after sending); existing receivers derive it themselves from the KID.
   */
  ratchet(): KeyAnnouncement {
    this.#alive();
    if (!this.canRatchet()) {
      throw new E2eeError('state', 'the next ratchet step would reuse a KID of this session (RFC 9605 §4.3); rekey instead');
    }
    const next = ratchetBaseKey(this.suite, this.#base);
    this.#base.fill(0);
    this.#base = next;
    this.#step++;
    this.#switch();
    return this.currentKey();
  }

  /**
   * New random base key (on leave, on the timer, on CTR exhaustion, when `canRatchet()` is false): next generation,
   * step 0, CTR 0. Throws `ctr-exhausted` after 4096 generations (the KID would repeat): rejoin with a new index.
   * `freshKey` (>= 16 bytes, from a CSPRNG) is copied. Returns the announcement for all remaining receivers.
   */
  rekey(freshKey: Uint8Array, now: number): KeyAnnouncement {
    this.#alive();
    const k = SendKeyRing.#copyKey(freshKey);
    if (k.length === this.#base.length && constantTimeEqual(k, this.#base)) {
      k.fill(0);
      throw new E2eeError('state', 'rekey with the current base key');
    }
    const gen = this.#generation + 1;
    if (this.#usedKids.has(makeKid(this.sender, gen, 0))) {
      k.fill(0);
      throw new E2eeError('ctr-exhausted', 'all 4096 key generations of this sender index are used; rejoin with a new sender index');
    }
    this.#base.fill(0);
    this.#base = k;
    this.#generation = gen;
    this.#step = 0;
    this.#rekeyedAt = now;
    this.#switch();
    return this.currentKey();
  }

  /**
   * False after 15 ratchets in one generation: the 4-bit step would wrap onto a used KID, and RFC 9605 §4.3 says
   * "Applications MUST ensure that each (KID, CTR) combination is used for exactly one SFrame encryption operation".
   * The caller then rekeys (fresh key to every member, the joiner included).
   */
  canRatchet(): boolean {
    return this.#step < MAX_RATCHET_STEP;
  }

  /** The current key and KID (copy of the base key: wipe it after handing it to the key protocol). */
  currentKey(): KeyAnnouncement {
    this.#alive();
    return { kid: this.#entry.kid, baseKey: this.#base.slice(), generation: this.#generation, step: this.#step };
  }

  /** True when the rotation timer has run out or 7/8 of the CTR budget is used. */
  dueForRotation(now: number): boolean {
    return now - this.#rekeyedAt >= this.rotationIntervalMs || this.#ctr >= this.maxFramesPerKey - this.maxFramesPerKey / 8n;
  }

  /** Wipe everything; the ring refuses further use. */
  destroy(): void {
    this.#destroyed = true;
    this.#base.fill(0);
    this.#entry.retired = true;
    wipeWhenIdle(this.#entry);
  }
}
