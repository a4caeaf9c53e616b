/**
 * Test support: a sender that seals in the same thread as its key schedule, for the key-ring, frame-codec and
 * adversarial tests. It is the production page/worker split folded into one object, with nothing of its own:
 * the KeyAgent's `SendKeySchedule` (client/src/e2ee/send-schedule.ts) decides the keys, and every key goes
 * through the worker's `set-send-key` path (client/src/transform/send-key-slot.ts) into a fresh `SendKey` CTR space.
 * Only `dueForRotation` (time or 7/8 of the CTR budget) is test bookkeeping: the app rotates on the membership
 * reducer's timer.
 */
import { E2eeError } from '../../client/src/e2ee/errors.ts';
import { DEFAULT_ROTATION_MS } from '../../client/src/e2ee/membership.ts';
import { DEFAULT_MAX_FRAMES_PER_KEY, type FrameSealer, type SendKey } from '../../client/src/e2ee/send-key.ts';
import { SendKeySchedule, type SendKeyInfo } from '../../client/src/e2ee/send-schedule.ts';
import type { SealOptions } from '../../client/src/e2ee/sframe.ts';
import { SendKeySlot } from '../../client/src/transform/send-key-slot.ts';

export interface SendKeyRingOptions {
  readonly sender: number;
  readonly suite?: number;
  /** Time of construction (ms); starts the rotation timer. */
  readonly now: number;
  readonly rotationIntervalMs?: number;
  readonly maxFramesPerKey?: bigint;
  /** First generation number (default 0). */
  readonly generation?: number;
}

export class SendKeyRing implements FrameSealer {
  readonly sender: number;
  readonly suite: number;
  readonly rotationIntervalMs: number;
  readonly maxFramesPerKey: bigint;
  readonly #schedule: SendKeySchedule;
  readonly #slot: SendKeySlot;
  #rekeyedAt: number;

  constructor(opts: SendKeyRingOptions, baseKey: Uint8Array) {
    this.#schedule = new SendKeySchedule({ sender: opts.sender, ...(opts.suite !== undefined ? { suite: opts.suite } : {}), ...(opts.generation !== undefined ? { generation: opts.generation } : {}) }, baseKey);
    this.sender = opts.sender;
    this.suite = this.#schedule.suite;
    this.rotationIntervalMs = opts.rotationIntervalMs ?? DEFAULT_ROTATION_MS;
    this.maxFramesPerKey = opts.maxFramesPerKey ?? DEFAULT_MAX_FRAMES_PER_KEY;
    this.#slot = new SendKeySlot({ suite: this.suite, maxFramesPerKey: this.maxFramesPerKey });
    this.#rekeyedAt = opts.now;
    this.#install(this.#schedule.currentKey()).baseKey.fill(0);
  }

  /** Hand a schedule key to the worker path, as the page does with `set-send-key`. */
  #install(k: SendKeyInfo): SendKeyInfo {
    this.#slot.install({ senderIndex: this.sender, generation: k.generation, step: k.step, kid: k.kid, baseKey: k.baseKey });
    return k;
  }

  #key(): SendKey {
    const k = this.#slot.key;
    if (k === null) throw new E2eeError('state', 'key ring destroyed');
    return k;
  }

  get kid(): bigint {
    return this.#schedule.kid;
  }
  get generation(): number {
    return this.#schedule.generation;
  }
  get step(): number {
    return this.#schedule.step;
  }
  get nextCtr(): bigint {
    return this.#key().nextCtr;
  }
  get remaining(): bigint {
    return this.#key().remaining;
  }

  allocate(): { kid: bigint; ctr: bigint } {
    return this.#key().allocate();
  }

  seal(metadata: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): Promise<Uint8Array> {
    try {
      return this.#key().seal(metadata, plaintext, opts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  ratchet(): SendKeyInfo {
    return this.#install(this.#schedule.ratchet());
  }

  rekey(freshKey: Uint8Array, now: number): SendKeyInfo {
    const k = this.#install(this.#schedule.rekey(freshKey));
    this.#rekeyedAt = now;
    return k;
  }

  canRatchet(): boolean {
    return this.#schedule.canRatchet();
  }

  currentKey(): SendKeyInfo {
    return this.#schedule.currentKey();
  }

  /** True when the rotation timer has run out or 7/8 of the CTR budget is used. */
  dueForRotation(now: number): boolean {
    return now - this.#rekeyedAt >= this.rotationIntervalMs || this.#key().nextCtr >= this.maxFramesPerKey - this.maxFramesPerKey / 8n;
  }

  destroy(): void {
    this.#schedule.destroy();
    this.#slot.clear();
  }
}
