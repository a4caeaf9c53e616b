/** A token bucket: `burst` tokens, refilled at `perSec` tokens per second. */
export class TokenBucket {
  readonly #perSec: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(perSec: number, burst: number, now: () => number = () => performance.now()) {
    this.#perSec = perSec;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#last = now();
  }

  /** Takes `cost` tokens (default one); false, taking nothing, when the bucket holds fewer. */
  take(cost = 1): boolean {
    const now = this.#now();
    const elapsed = Math.max(0, now - this.#last) / 1000;
    this.#last = now;
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#perSec);
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }
}
