/**
 * What the transform worker does with a `set-send-key` message: the ONE send-key reconciliation path.
 *
 * The page's KeyAgent owns the key schedule (client/src/e2ee/send-schedule.ts: ratchet, rekey, KIDs). The worker
 * does not follow or repeat it: it installs exactly the (KID, base key) it is handed as a fresh CTR space
 * (client/src/e2ee/send-key.ts), after two checks:
 *
 * - the KID is the one the kid.ts layout gives for (sender index, generation, step);
 * - (generation, step) is strictly newer than every key this slot already installed for that sender index since
 *   the schedule began. A repeated or older (generation, step) would restart CTR at 0 under a (key, KID) that may
 *   already have sealed frames: a nonce reuse (RFC 9605 §9.1).
 *
 * A refused key leaves the slot with NO key (frames are dropped as `no-send-key`, never sent under an older key)
 * and throws an `E2eeError` the worker reports as `key-error`. `clear()` ends the schedule (leave / rejoin): the
 * next key comes from a new KeyAgent with a fresh random base key, so the history starts again.
 *
 * Pure and synchronous apart from the key import inside `SendKey`; runs in Node for the unit tests.
 *
 * @module
 */
import { E2eeError } from '../e2ee/errors.ts';
import { makeKid } from '../e2ee/kid.ts';
import { SendKey } from '../e2ee/send-key.ts';

/** The fields of a `set-send-key` message, the base key as bytes. */
export interface SetSendKey {
  readonly senderIndex: number;
  readonly generation: number;
  readonly step: number;
  readonly kid: bigint;
  readonly baseKey: Uint8Array;
}

export interface SendKeySlotOptions {
  readonly suite?: number;
  /** Passed to every `SendKey` (tests set it small). */
  readonly maxFramesPerKey?: bigint;
}

export class SendKeySlot {
  readonly #opts: SendKeySlotOptions;
  #key: SendKey | null = null;
  /** Per sender index: the newest (generation, step) installed since the schedule began. */
  readonly #newest = new Map<number, { generation: number; step: number }>();

  constructor(opts: SendKeySlotOptions = {}) {
    this.#opts = opts;
  }

  /** The key frames are sealed with now, or null (frames are dropped). */
  get key(): SendKey | null {
    return this.#key;
  }

  /**
   * Install `m.baseKey` under `m.kid` as a fresh CTR space (the bytes are read, not kept: the caller wipes them).
   * @throws E2eeError('range') for a KID that does not match (sender index, generation, step) or a bad key,
   *   E2eeError('state') for a (generation, step) not newer than one already installed for this sender index.
   *   After a throw the slot holds no key.
   */
  install(m: SetSendKey): void {
    try {
      if (makeKid(m.senderIndex, m.generation, m.step) !== m.kid) {
        throw new E2eeError('range', 'send key KID does not match its sender index, generation and step');
      }
      const last = this.#newest.get(m.senderIndex);
      if (last !== undefined && (m.generation < last.generation || (m.generation === last.generation && m.step <= last.step))) {
        throw new E2eeError('state', `send key ${m.generation}/${m.step} is not newer than ${last.generation}/${last.step} for this sender index: a CTR restart under a used key`);
      }
      const key = new SendKey({ kid: m.kid, ...this.#opts }, m.baseKey);
      this.#key?.destroy();
      this.#key = key;
      this.#newest.set(m.senderIndex, { generation: m.generation, step: m.step });
    } catch (e) {
      this.#drop();
      throw e;
    }
  }

  /** The schedule ended (leave / rejoin): drop the key and forget the history. */
  clear(): void {
    this.#drop();
    this.#newest.clear();
  }

  #drop(): void {
    this.#key?.destroy();
    this.#key = null;
  }
}
