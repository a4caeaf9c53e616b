/**
 * The local sender's key schedule (RFC 9605 §5.1 "sender keys"): which base key is current under which KID.
 * Ratchets on join, rekeys with a fresh random key on leave / timer / index change, and never hands out a KID twice.
 * It seals nothing and has no CTR: the KeyAgent owns the one schedule of this member and hands each key to the
 * transform worker, which seals under it as a fresh CTR space (client/src/transform/send-key-slot.ts).
 *
 * A pure, synchronous state machine. Base keys are copied in and wiped (`fill(0)`) when dropped.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import { MAX_RATCHET_STEP, makeKid } from './kid.ts';
import { DEFAULT_SUITE, checkBaseKey, constantTimeEqual, ratchetBaseKey, suiteParams } from './sframe.ts';

/** One key of the schedule, as the key protocol and the worker get it. `baseKey` is a copy the caller must wipe. */
export interface SendKeyInfo {
  readonly kid: bigint;
  readonly baseKey: Uint8Array;
  /** Full generation counter (the KID carries it mod 4096). */
  readonly generation: number;
  /** Ratchet step within the generation (0..15). */
  readonly step: number;
}

export interface SendKeyScheduleOptions {
  /** Our sender index (the KID's sender bits). */
  readonly sender: number;
  /** Cipher suite, default 0x0004 AES_128_GCM_SHA256_128 (fixes the ratchet's hash). */
  readonly suite?: number;
  /** First generation number (default 0). */
  readonly generation?: number;
}

export class SendKeySchedule {
  readonly sender: number;
  readonly suite: number;
  #base: Uint8Array;
  #generation: number;
  #step = 0;
  /** Every KID this schedule has handed out: a KID is never reused, even with a different base key. */
  #usedKids = new Set<bigint>();
  #destroyed = false;

  /** `baseKey` (>= 16 bytes, from a CSPRNG) is copied; the caller should wipe its own copy. */
  constructor(opts: SendKeyScheduleOptions, baseKey: Uint8Array) {
    this.suite = opts.suite ?? DEFAULT_SUITE;
    suiteParams(this.suite);
    const generation = opts.generation ?? 0;
    makeKid(opts.sender, generation); // validates the sender index and the generation
    this.sender = opts.sender;
    this.#generation = generation;
    checkBaseKey(baseKey);
    this.#base = baseKey.slice();
    this.#usedKids.add(this.kid);
  }

  #alive(): void {
    if (this.#destroyed) throw new E2eeError('state', 'key schedule destroyed');
  }

  get kid(): bigint {
    return makeKid(this.sender, this.#generation, this.#step);
  }
  get generation(): number {
    return this.#generation;
  }
  get step(): number {
    return this.#step;
  }

  /**
   * False after 15 ratchets in one generation: the 4-bit step would wrap onto a used KID, and RFC 9605 §4.3 says
   * "Applications MUST ensure that each (KID, CTR) combination is used for exactly one SFrame encryption operation".
   * The caller then rekeys (fresh key to every member, the joiner included).
   */
  canRatchet(): boolean {
    return this.#step < MAX_RATCHET_STEP;
  }

  /**
   * RFC 9605 §5.1 ratchet (on join): base_key <- HKDF-Expand(HKDF-Extract("", base_key), "SFrame 1.0 Ratchet", Nh),
   * step + 1. The previous base key is wiped. Returns the new key for the joiner (a copy to wipe after sending);
   * existing receivers derive it themselves from the KID.
   */
  ratchet(): SendKeyInfo {
    this.#alive();
    if (!this.canRatchet()) {
      throw new E2eeError('state', 'the next ratchet step would reuse a KID of this session (RFC 9605 §4.3); rekey instead');
    }
    const next = ratchetBaseKey(this.suite, this.#base);
    this.#base.fill(0);
    this.#base = next;
    this.#step++;
    this.#usedKids.add(this.kid);
    return this.currentKey();
  }

  /**
   * New random base key (on leave, on the timer, when `canRatchet()` is false): next generation, step 0. Throws
   * `ctr-exhausted` after 4096 generations (the KID would repeat): rejoin with a new index. `freshKey` (>= 16 bytes,
   * from a CSPRNG) is copied. Returns the announcement for all remaining receivers.
   */
  rekey(freshKey: Uint8Array): SendKeyInfo {
    this.#alive();
    checkBaseKey(freshKey);
    const k = freshKey.slice();
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
    this.#usedKids.add(this.kid);
    return this.currentKey();
  }

  /** The current key and KID (copy of the base key: wipe it after handing it on). */
  currentKey(): SendKeyInfo {
    this.#alive();
    return { kid: this.kid, baseKey: this.#base.slice(), generation: this.#generation, step: this.#step };
  }

  /** Wipe the base key; the schedule refuses further use. */
  destroy(): void {
    this.#destroyed = true;
    this.#base.fill(0);
  }
}
