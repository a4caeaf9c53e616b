/**
 * Anti-replay for SFrame receivers: a sliding bitmap of accepted CTRs (RFC 9605 §9.3). No I/O, no secrets.
 *
 * @module
 */
import { E2eeError } from './errors.ts';

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
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0) throw new E2eeError('range', 'replay window size must be a multiple of 32');
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
