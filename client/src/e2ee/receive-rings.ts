/**
 * Receive key rings for SFrame (RFC 9605 §5.1 "sender keys"): pure state machines, time injected as `now` (ms).
 *
 * - `ReceiveKeyRing`: one per remote sender. Keys chosen by KID only; local forward ratchet; retired keys kept for a
 *   grace period; replay window per key; bounded buffer for frames whose key has not arrived; every drop counted.
 * - `ReceiveKeyRings`: routes incoming frames to the right `ReceiveKeyRing` by the sender index in the KID.
 *
 * No timers, no I/O, no module-level mutable state. Base keys are copied in and wiped (`fill(0)`) when dropped.
 *
 * @module
 */
import { E2eeError } from './errors.ts';
import { MAX_RATCHET_STEP, makeKid, splitKid, type KidParts } from './kid.ts';
import { ReplayWindow } from './replay-window.ts';
import { DEFAULT_SUITE, checkBaseKey, constantTimeEqual, decodeHeader, deriveKeySalt, importSFrameKey, openWithKey, ratchetBaseKey, suiteParams, wipeSFrameKey } from './sframe.ts';
import type { DecodedHeader, SFrameKey } from './sframe.ts';

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
  if (err instanceof E2eeError) {
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
    if (this.maxRatchetAhead < 0 || this.maxRatchetAhead > MAX_RATCHET_STEP) throw new E2eeError('range', 'maxRatchetAhead must be 0..15');
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
    if (parts.sender !== this.sender) throw new E2eeError('range', 'KID belongs to another sender');
    checkBaseKey(baseKey);
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
      const reason: DropReason = e instanceof E2eeError && e.code === 'malformed' ? 'malformed' : 'unknown-kid';
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
