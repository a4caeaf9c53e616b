/**
 * Sender key rings for SFrame (RFC 9605 §5.1 "sender keys"): pure state machines, time injected as `now` (ms).
 *
 * - `makeKid` / `splitKid`: the KID layout (sender index | key generation | ratchet step).
 * - `SendKeyRing`: one per local sender. Owns the current base key, hands out (KID, CTR) pairs that never repeat
 *   under a base key, ratchets (join) and rekeys (leave, timer, counter exhaustion).
 * - `ReplayWindow`: sliding bitmap of accepted CTRs.
 * - `ReceiveKeyRing`: one per remote sender. Keys chosen by KID only; local forward ratchet; retired keys kept for a
 *   grace period; replay window per key; bounded buffer for frames whose key has not arrived; every drop counted.
 * - `ReceiveKeyRings`: routes incoming frames to the right `ReceiveKeyRing` by the sender index in the KID.
 *
 * No timers, no I/O, no module-level mutable state. Base keys are copied in and wiped (`fill(0)`) when dropped.
 *
 * @module
 */
import { SFrameError } from './errors.ts';
import {
  DEFAULT_SUITE,
  MAX_U64,
  constantTimeEqual,
  decodeHeader,
  deriveKeySalt,
  importSFrameKey,
  openWithKey,
  ratchetBaseKey,
  sealWithKey,
  suiteParams,
  wipeSFrameKey,
} from './sframe.ts';
import type { DecodedHeader, SFrameKey, SealOptions } from './sframe.ts';

// ---------------------------------------------------------------------------------------------------------------
// KID layout
// ---------------------------------------------------------------------------------------------------------------

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
 * Encoded header KID size: 2 bytes for sender 0, 3 bytes for senders 1-255, 4 bytes above.
 */
export function makeKid(sender: number, generation: number, step = 0): bigint {
  if (!Number.isInteger(sender) || sender < 0 || sender > MAX_SENDER_INDEX) throw new SFrameError('range', 'sender index must be 0..65535');
  if (!Number.isInteger(generation) || generation < 0) throw new SFrameError('range', 'generation must be a non-negative integer');
  if (!Number.isInteger(step) || step < 0 || step > MAX_RATCHET_STEP) throw new SFrameError('range', 'step must be 0..15');
  const v = sender * 2 ** (KID_STEP_BITS + KID_GENERATION_BITS) + (generation % GEN_MOD) * STEP_MOD + step;
  return BigInt(v);
}

/** Inverse of `makeKid`. Throws `unknown-kid` for a KID outside our layout (any bit above bit 31 set). */
export function splitKid(kid: bigint): KidParts {
  if (kid < 0n || kid >= 1n << BigInt(KID_BITS)) throw new SFrameError('unknown-kid', 'KID outside the sender-key layout');
  const v = Number(kid);
  return { sender: Math.floor(v / 2 ** (KID_STEP_BITS + KID_GENERATION_BITS)), generation: Math.floor(v / STEP_MOD) % GEN_MOD, step: v % STEP_MOD };
}

// ---------------------------------------------------------------------------------------------------------------
// Sender side
// ---------------------------------------------------------------------------------------------------------------

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
    if (this.maxFramesPerKey < 1n || this.maxFramesPerKey > MAX_U64) throw new SFrameError('range', 'maxFramesPerKey must be in [1, 2^64 - 1]');
    this.#generation = opts.generation ?? 0;
    this.#base = SendKeyRing.#copyKey(baseKey);
    this.#rekeyedAt = opts.now;
    this.#entry = this.#newEntry();
  }

  static #copyKey(k: Uint8Array): Uint8Array {
    if (!(k instanceof Uint8Array) || k.length < 16) throw new SFrameError('range', 'base key must be at least 16 bytes');
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
    if (this.#destroyed) throw new SFrameError('state', 'key ring destroyed');
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
    if (this.#ctr >= this.maxFramesPerKey) throw new SFrameError('ctr-exhausted', 'frame counter limit reached for this key; rekey required');
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
      throw new SFrameError('state', 'the next ratchet step would reuse a KID of this session (RFC 9605 §4.3); rekey instead');
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
      throw new SFrameError('state', 'rekey with the current base key');
    }
    const gen = this.#generation + 1;
    if (this.#usedKids.has(makeKid(this.sender, gen, 0))) {
      k.fill(0);
      throw new SFrameError('ctr-exhausted', 'all 4096 key generations of this sender index are used; rejoin with a new sender index');
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

// ---------------------------------------------------------------------------------------------------------------
// Replay window
// ---------------------------------------------------------------------------------------------------------------

/**
 * Sliding-window anti-replay over CTR values (RFC 9605 §9.3 allows it; modelled on RFC 3711 §3.3.2): accepts each CTR
 * once, and rejects CTRs more than `size - 1` below the highest accepted one. `check` is a read-only pre-test;
 * `commit` (after authentication) records and re-checks, so forged frames never move the window.
 */
export class ReplayWindow {
  readonly size: number;
  readonly #sizeN: bigint;
  #bits: Uint32Array;
  #top = -1n;

  constructor(size = 1024) {
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0) throw new SFrameError('range', 'replay window size must be a multiple of 32');
    this.size = size;
    this.#sizeN = BigInt(size);
    this.#bits = new Uint32Array(size / 32);
  }

  #idx(ctr: bigint): number {
    return Number(ctr % this.#sizeN);
  }

  #has(i: number): boolean {
    return (((this.#bits[i >>> 5] as number) >>> (i & 31)) & 1) === 1;
  }

  /** True if `ctr` would be accepted now. */
  check(ctr: bigint): boolean {
    if (ctr > this.#top) return true;
    if (this.#top - ctr >= this.#sizeN) return false;
    return !this.#has(this.#idx(ctr));
  }

  /** Record `ctr`; false (and no change) if it is a replay or too old. */
  commit(ctr: bigint): boolean {
    if (!this.check(ctr)) return false;
    if (ctr > this.#top) {
      const gap = ctr - this.#top;
      if (gap >= this.#sizeN) {
        this.#bits.fill(0);
      } else {
        for (let c = this.#top + 1n; c <= ctr; c++) {
          const i = this.#idx(c);
          this.#bits[i >>> 5] = (this.#bits[i >>> 5] as number) & ~(1 << (i & 31));
        }
      }
      this.#top = ctr;
    }
    const i = this.#idx(ctr);
    this.#bits[i >>> 5] = (this.#bits[i >>> 5] as number) | (1 << (i & 31));
    return true;
  }

  /** Highest accepted CTR, or -1n. */
  get top(): bigint {
    return this.#top;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Receiver side
// ---------------------------------------------------------------------------------------------------------------

export type DropReason = 'unknown-kid' | 'auth' | 'replay' | 'retired' | 'malformed' | 'expired' | 'overflow';
export const DROP_REASONS: readonly DropReason[] = ['unknown-kid', 'auth', 'replay', 'retired', 'malformed', 'expired', 'overflow'];

export type OpenResult<T> =
  | { readonly status: 'ok'; readonly kid: bigint; readonly ctr: bigint; readonly plaintext: Uint8Array; readonly metadata: Uint8Array; readonly token: T | undefined }
  | { readonly status: 'buffered'; readonly kid: bigint }
  | { readonly status: 'dropped'; readonly reason: DropReason; readonly token: T | undefined };

export interface ReceiveStats {
  opened: number;
  buffered: number;
  /** Buffered frames that were later opened (also counted in `opened`). */
  released: number;
  /** Keys derived locally by ratcheting forward. */
  ratcheted: number;
  readonly dropped: Record<DropReason, number>;
}

export interface ReceiveKeyRingOptions {
  /** Remote sender index (KIDs of other senders are refused with `unknown-kid`). */
  readonly sender: number;
  readonly suite?: number;
  /** How long a key superseded by a newer one keeps opening in-flight frames (default 2000 ms). */
  readonly graceMs?: number;
  /** How long a frame with a not-yet-known KID waits for its key (default 1000 ms). */
  readonly bufferMs?: number;
  /** Buffer bound (default 64 frames); 0 disables buffering. */
  readonly maxBuffered?: number;
  /** Replay window per key in frames (default 1024). */
  readonly replayWindow?: number;
  /** How many ratchet steps ahead of the newest key a receiver derives on its own (default and max 15: all of them). */
  readonly maxRatchetAhead?: number;
  /** How many wiped KIDs are remembered to classify late frames as `retired` (default 64). */
  readonly maxTombstones?: number;
  /**
   * When keys installed earlier start their grace period:
   * - `'arrival'` (default): as soon as a newer key is installed by `addKey` (our senders switch before they announce
   *   a key, so in-flight frames need only `graceMs`), or earlier on the first frame under a newer key;
   * - `'activation'`: only on the first authenticated frame under a newer key (for senders that announce a key
   *   ahead of using it).
   * Local ratchets always retire on activation (the derived key is kept only once a frame authenticated under it).
   */
  readonly retireOn?: 'arrival' | 'activation';
}

interface RecvEntry {
  readonly kid: bigint;
  readonly parts: KidParts;
  readonly order: number;
  readonly key: Promise<SFrameKey>;
  /** The imported key once `key` resolved (hot path: no await on an already settled promise). */
  ready: SFrameKey | undefined;
  /** Kept only while this entry is the newest (head) key, to ratchet forward; wiped otherwise. */
  base: Uint8Array | undefined;
  readonly replay: ReplayWindow;
  active: boolean;
  retiredAt: number | undefined;
}

interface Buffered<T> {
  readonly sframe: Uint8Array;
  readonly metadata: Uint8Array;
  readonly header: DecodedHeader;
  readonly arrivedAt: number;
  readonly token: T | undefined;
}

interface Candidate {
  readonly base: Uint8Array;
  readonly key: Promise<SFrameKey>;
  readonly fromOrder: number;
}

/** Maps an open failure to its drop reason (a key wiped while the frame was in flight counts as `retired`). */
function failureReason(err: unknown): DropReason {
  if (err instanceof SFrameError) {
    if (err.code === 'malformed') return 'malformed';
    if (err.code === 'state') return 'retired';
  }
  return 'auth';
}

function emptyStats(): ReceiveStats {
  return { opened: 0, buffered: 0, released: 0, ratcheted: 0, dropped: { 'unknown-kid': 0, auth: 0, replay: 0, retired: 0, malformed: 0, expired: 0, overflow: 0 } };
}

/**
 * Keys of one remote sender. Frames are matched to a key by their KID only (never by trying keys):
 *
 * 1. KID of a known key → open with it (retired keys only until their grace period ends);
 * 2. KID of a wiped key, or an older ratchet step of the newest generation → drop `retired`;
 * 3. same generation as the newest key and 1..maxRatchetAhead steps ahead → derive the ratcheted key locally
 *    (RFC 9605 §5.1), keep it only if the frame authenticates;
 * 4. otherwise → buffer until the key arrives (`addKey`), drop `expired` after `bufferMs`, `overflow` when full.
 *
 * Installing a newer key (`retireOn: 'arrival'`, default) or the first authenticated frame under a newer key retires
 * every key installed before it: retired keys still open in-flight frames for `graceMs`, then are wiped and
 * remembered as tombstones.
 */
export class ReceiveKeyRing<T = undefined> {
  readonly sender: number;
  readonly suite: number;
  readonly graceMs: number;
  readonly bufferMs: number;
  readonly maxBuffered: number;
  readonly replayWindow: number;
  readonly maxRatchetAhead: number;
  readonly maxTombstones: number;
  readonly retireOn: 'arrival' | 'activation';
  readonly stats: ReceiveStats = emptyStats();
  #keys = new Map<bigint, RecvEntry>();
  #head: RecvEntry | undefined;
  #order = 0;
  #tombstones = new Set<bigint>();
  #buffer: Buffered<T>[] = [];
  #candidates = new Map<bigint, Candidate>();

  constructor(opts: ReceiveKeyRingOptions) {
    makeKid(opts.sender, 0);
    this.sender = opts.sender;
    this.suite = opts.suite ?? DEFAULT_SUITE;
    suiteParams(this.suite);
    this.graceMs = opts.graceMs ?? 2000;
    this.bufferMs = opts.bufferMs ?? 1000;
    this.maxBuffered = opts.maxBuffered ?? 64;
    this.replayWindow = opts.replayWindow ?? 1024;
    this.maxRatchetAhead = opts.maxRatchetAhead ?? MAX_RATCHET_STEP;
    this.maxTombstones = opts.maxTombstones ?? 64;
    this.retireOn = opts.retireOn ?? 'arrival';
    if (this.maxRatchetAhead < 0 || this.maxRatchetAhead >= STEP_MOD) throw new SFrameError('range', 'maxRatchetAhead must be 0..15');
  }

  /** KIDs currently held (including retired keys still in their grace period). */
  get kids(): bigint[] {
    return [...this.#keys.keys()];
  }

  /** Number of frames waiting for a key. */
  get bufferedCount(): number {
    return this.#buffer.length;
  }

  #drop(reason: DropReason, token: T | undefined): OpenResult<T> {
    this.stats.dropped[reason]++;
    return { status: 'dropped', reason, token };
  }

  #tombstone(kid: bigint): void {
    this.#tombstones.delete(kid);
    this.#tombstones.add(kid);
    while (this.#tombstones.size > this.maxTombstones) {
      const first = this.#tombstones.values().next();
      if (first.done === true) break;
      this.#tombstones.delete(first.value);
    }
  }

  #wipeEntry(e: RecvEntry): void {
    e.base?.fill(0);
    e.base = undefined;
    e.key.then(wipeSFrameKey, () => undefined);
  }

  #clearCandidates(): void {
    for (const c of this.#candidates.values()) {
      c.base.fill(0);
      c.key.then(wipeSFrameKey, () => undefined);
    }
    this.#candidates.clear();
  }

  /**
   * Time-driven housekeeping: wipes retired keys whose grace period ended and drops buffered frames older than
   * `bufferMs` (counted as `expired`). Called by `open`/`addKey`; call it from the worker's own clock too.
   * Returns the number of frames expired.
   */
  tick(now: number): number {
    for (const e of this.#keys.values()) {
      if (e.retiredAt !== undefined && now - e.retiredAt >= this.graceMs) {
        this.#keys.delete(e.kid);
        this.#wipeEntry(e);
        this.#tombstone(e.kid);
      }
    }
    let expired = 0;
    if (this.#buffer.length > 0) {
      const keep: Buffered<T>[] = [];
      for (const b of this.#buffer) {
        if (now - b.arrivedAt >= this.bufferMs) expired++;
        else keep.push(b);
      }
      this.#buffer = keep;
      this.stats.dropped.expired += expired;
    }
    return expired;
  }

  /**
   * Install the base key for `kid` (from the key protocol). The key is copied. A key already held under the same KID
   * is replaced (a KID can come back after the 12-bit generation wrapped, or from a rejoin: the newer key wins). The new key becomes the newest (head) key. Buffered frames
   * whose KID now resolves are opened and returned, in arrival order.
   */
  async addKey(kid: bigint, baseKey: Uint8Array, now: number): Promise<OpenResult<T>[]> {
    const parts = splitKid(kid);
    if (parts.sender !== this.sender) throw new SFrameError('range', 'KID belongs to another sender');
    if (!(baseKey instanceof Uint8Array) || baseKey.length < 16) throw new SFrameError('range', 'base key must be at least 16 bytes');
    this.tick(now);
    const existing = this.#keys.get(kid);
    if (existing !== undefined) {
      // The same key again (e.g. re-sent by the key protocol, or already derived by a local ratchet): keep the
      // entry and its replay window. Compared through the derived salt, since the base key may be wiped already.
      if (await this.#sameKey(existing, kid, baseKey)) return this.#release(now);
      this.#keys.delete(kid);
      this.#wipeEntry(existing);
    }
    this.#tombstones.delete(kid);
    const e = this.#install(kid, parts, baseKey.slice(), undefined);
    if (this.retireOn === 'arrival') this.#retireOlder(e, now);
    return this.#release(now);
  }

  async #sameKey(existing: RecvEntry, kid: bigint, baseKey: Uint8Array): Promise<boolean> {
    let held: SFrameKey;
    try {
      held = await existing.key;
    } catch {
      return false;
    }
    const { key, salt } = deriveKeySalt(this.suite, baseKey, kid);
    key.fill(0);
    const same = !held.wiped && constantTimeEqual(salt, held.salt);
    salt.fill(0);
    return same && this.#keys.get(kid) === existing;
  }

  #retireOlder(e: RecvEntry, now: number): void {
    for (const o of this.#keys.values()) {
      if (o.order < e.order && o.retiredAt === undefined) o.retiredAt = now;
    }
  }

  #install(kid: bigint, parts: KidParts, base: Uint8Array, key: Promise<SFrameKey> | undefined): RecvEntry {
    const k = key ?? importSFrameKey(this.suite, base, kid, 'open');
    k.catch(() => undefined);
    const e: RecvEntry = { kid, parts, order: ++this.#order, key: k, ready: undefined, base, replay: new ReplayWindow(this.replayWindow), active: false, retiredAt: undefined };
    k.then(
      (r) => {
        e.ready = r;
      },
      () => undefined,
    );
    this.#keys.set(kid, e);
    const prev = this.#head;
    this.#head = e;
    if (prev !== undefined && prev !== e) {
      prev.base?.fill(0);
      prev.base = undefined;
    }
    this.#clearCandidates();
    return e;
  }

  async #release(now: number): Promise<OpenResult<T>[]> {
    const out: OpenResult<T>[] = [];
    const waiting = this.#buffer;
    this.#buffer = [];
    const still: Buffered<T>[] = [];
    for (const b of waiting) {
      const r = await this.#process(b.sframe, b.metadata, b.header, now, b.token, false);
      if (r.status === 'buffered') still.push(b);
      else {
        if (r.status === 'ok') this.stats.released++;
        out.push(r);
      }
    }
    // frames that arrived while we were releasing are appended after the ones still waiting
    this.#buffer = still.concat(this.#buffer);
    return out;
  }

  /**
   * Open one SFrame ciphertext of this sender. `metadata` is the application metadata (the frame codec's clear
   * prefix). Ownership of `sframe`/`metadata` passes to the ring while a frame is buffered. Never throws for bad
   * input: every failure is a counted `dropped` result (RFC 9605 §4.4.4: discarded).
   */
  async open(sframe: Uint8Array, metadata: Uint8Array, now: number, token?: T): Promise<OpenResult<T>> {
    this.tick(now);
    let header: DecodedHeader;
    try {
      header = decodeHeader(sframe);
    } catch {
      return this.#drop('malformed', token);
    }
    return this.#process(sframe, metadata, header, now, token, true);
  }

  #classify(kid: bigint): { kind: 'known'; entry: RecvEntry } | { kind: 'derive'; steps: number; parts: KidParts } | { kind: 'drop'; reason: DropReason } | { kind: 'wait' } {
    let parts: KidParts;
    try {
      parts = splitKid(kid);
    } catch {
      return { kind: 'drop', reason: 'unknown-kid' };
    }
    if (parts.sender !== this.sender) return { kind: 'drop', reason: 'unknown-kid' };
    const e = this.#keys.get(kid);
    if (e !== undefined) return { kind: 'known', entry: e };
    if (this.#tombstones.has(kid)) return { kind: 'drop', reason: 'retired' };
    const h = this.#head;
    if (h !== undefined && h.parts.generation === parts.generation) {
      // steps ascend within a generation and never wrap
      const ahead = parts.step - h.parts.step;
      // an older step of the newest generation: a key we can never get (ratchets are one-way)
      if (ahead < 1) return { kind: 'drop', reason: 'retired' };
      if (ahead <= this.maxRatchetAhead && h.base !== undefined) return { kind: 'derive', steps: ahead, parts };
      // further ahead than this ring is configured to derive on its own
      return { kind: 'drop', reason: 'unknown-kid' };
    }
    return { kind: 'wait' };
  }

  #candidate(kid: bigint, steps: number): Candidate {
    const h = this.#head as RecvEntry;
    const have = this.#candidates.get(kid);
    if (have !== undefined && have.fromOrder === h.order) return have;
    let base = ratchetBaseKey(this.suite, h.base as Uint8Array);
    for (let i = 1; i < steps; i++) {
      const n = ratchetBaseKey(this.suite, base);
      base.fill(0);
      base = n;
    }
    const key = importSFrameKey(this.suite, base, kid, 'open');
    key.catch(() => undefined);
    const c: Candidate = { base, key, fromOrder: h.order };
    this.#candidates.set(kid, c);
    return c;
  }

  #activate(e: RecvEntry, now: number): void {
    if (e.active) return;
    e.active = true;
    this.#retireOlder(e, now);
  }

  async #process(sframe: Uint8Array, metadata: Uint8Array, header: DecodedHeader, now: number, token: T | undefined, mayBuffer: boolean): Promise<OpenResult<T>> {
    const c = this.#classify(header.kid);
    if (c.kind === 'drop') return this.#drop(c.reason, token);
    if (c.kind === 'wait') {
      if (!mayBuffer) return { status: 'buffered', kid: header.kid };
      if (this.#buffer.length >= this.maxBuffered) return this.#drop('overflow', token);
      this.#buffer.push({ sframe, metadata, header, arrivedAt: now, token });
      this.stats.buffered++;
      return { status: 'buffered', kid: header.kid };
    }
    if (c.kind === 'known') {
      const e = c.entry;
      if (e.retiredAt !== undefined && now - e.retiredAt >= this.graceMs) return this.#drop('retired', token);
      if (!e.replay.check(header.ctr)) return this.#drop('replay', token);
      let pt: Uint8Array;
      try {
        pt = await openWithKey(e.ready ?? (await e.key), metadata, sframe, header);
      } catch (err) {
        return this.#drop(failureReason(err), token);
      }
      if (this.#keys.get(e.kid) !== e) return this.#drop('retired', token); // wiped or replaced meanwhile
      if (!e.replay.commit(header.ctr)) return this.#drop('replay', token);
      this.#activate(e, now);
      this.stats.opened++;
      return { status: 'ok', kid: header.kid, ctr: header.ctr, plaintext: pt, metadata, token };
    }
    // local ratchet (RFC 9605 §5.1): derive, and keep the key only if this frame authenticates under it
    const cand = this.#candidate(header.kid, c.steps);
    let pt: Uint8Array;
    try {
      pt = await openWithKey(await cand.key, metadata, sframe, header);
    } catch (err) {
      return this.#drop(failureReason(err), token);
    }
    let e = this.#keys.get(header.kid);
    if (e === undefined) {
      if (this.#candidates.get(header.kid) !== cand) return this.#drop('retired', token); // head changed meanwhile
      this.#candidates.delete(header.kid);
      e = this.#install(header.kid, c.parts, cand.base, cand.key);
      this.stats.ratcheted++;
    }
    if (!e.replay.commit(header.ctr)) return this.#drop('replay', token);
    this.#activate(e, now);
    this.stats.opened++;
    return { status: 'ok', kid: header.kid, ctr: header.ctr, plaintext: pt, metadata, token };
  }

  /** Wipe every key and drop the buffer (frames are not counted). */
  destroy(): void {
    for (const e of this.#keys.values()) this.#wipeEntry(e);
    this.#keys.clear();
    this.#clearCandidates();
    this.#head = undefined;
    this.#buffer = [];
  }
}

/**
 * All remote senders of a room: routes each frame by the sender index of its KID (the SFU may move any sender onto
 * any stream; the KID, covered by authentication, is what counts). Frames of unknown senders are dropped as
 * `unknown-kid` (counted in `stats`). Call `ring(sender)` when the membership layer admits a member, so that frames
 * arriving before its key are buffered instead of dropped.
 */
export class ReceiveKeyRings<T = undefined> {
  readonly stats: ReceiveStats = emptyStats();
  #rings = new Map<number, ReceiveKeyRing<T>>();
  readonly #defaults: Omit<ReceiveKeyRingOptions, 'sender'>;

  constructor(defaults: Omit<ReceiveKeyRingOptions, 'sender'> = {}) {
    this.#defaults = defaults;
  }

  /** The ring of `sender`, created on first use. */
  ring(sender: number): ReceiveKeyRing<T> {
    let r = this.#rings.get(sender);
    if (r === undefined) {
      r = new ReceiveKeyRing<T>({ ...this.#defaults, sender });
      this.#rings.set(sender, r);
    }
    return r;
  }

  has(sender: number): boolean {
    return this.#rings.has(sender);
  }

  addKey(kid: bigint, baseKey: Uint8Array, now: number): Promise<OpenResult<T>[]> {
    return this.ring(splitKid(kid).sender).addKey(kid, baseKey, now);
  }

  async open(sframe: Uint8Array, metadata: Uint8Array, now: number, token?: T): Promise<OpenResult<T>> {
    let sender: number;
    try {
      sender = splitKid(decodeHeader(sframe).kid).sender;
    } catch (e) {
      const reason: DropReason = e instanceof SFrameError && e.code === 'malformed' ? 'malformed' : 'unknown-kid';
      this.stats.dropped[reason]++;
      return { status: 'dropped', reason, token };
    }
    const r = this.#rings.get(sender);
    if (r === undefined) {
      this.stats.dropped['unknown-kid']++;
      return { status: 'dropped', reason: 'unknown-kid', token };
    }
    return r.open(sframe, metadata, now, token);
  }

  tick(now: number): number {
    let n = 0;
    for (const r of this.#rings.values()) n += r.tick(now);
    return n;
  }

  /** Forget a sender (member left): wipes its keys. */
  remove(sender: number): void {
    this.#rings.get(sender)?.destroy();
    this.#rings.delete(sender);
  }

  /** Sum of the per-sender stats plus the routing drops. */
  totals(): ReceiveStats {
    const t = emptyStats();
    for (const s of [this.stats, ...[...this.#rings.values()].map((r) => r.stats)]) {
      t.opened += s.opened;
      t.buffered += s.buffered;
      t.released += s.released;
      t.ratcheted += s.ratcheted;
      for (const k of DROP_REASONS) t.dropped[k] += s.dropped[k];
    }
    return t;
  }

  destroy(): void {
    for (const r of this.#rings.values()) r.destroy();
    this.#rings.clear();
  }
}
