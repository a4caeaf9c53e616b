/**
 * The ports of the call session layer: everything the session pieces (relay-channel, key-bridge, trust-monitor,
 * media-plane) need from the outside world, injected so each piece runs in Node under test with fakes of these
 * ports only. No `$state`, no DOM, no socket.io in this folder.
 *
 * @module
 */
import type { TransformWorker } from '../transform/TransformWorker.ts';

/** Relay transport: opaque bytes to one member or to every other member (the socket edge does the base64). */
export interface RelayPort {
  /** `to` undefined: every other member of the room. Rejects if the server refused or the socket is down. */
  send(bytes: Uint8Array, to?: string): Promise<void>;
}

/**
 * The transform worker as the key bridge uses it: exactly these `TransformWorker` methods (a recording fake in tests).
 */
export type FramePort = Pick<
  TransformWorker,
  'setSendKey' | 'clearSendKey' | 'addSender' | 'addReceiveKey' | 'forgetSender' | 'forgetAllSenders' | 'senders'
>;

/** Cancels a timer. */
export type Cancel = () => void;

/** Time and timers (a fake clock in tests). */
export interface Clock {
  now(): number;
  every(ms: number, fn: () => void): Cancel;
  after(ms: number, fn: () => void): Cancel;
}

/** The browser's clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return () => clearInterval(t);
  },
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** A group of timers cancelled together (one per join generation). */
export class Timers {
  readonly #clock: Clock;
  readonly #named = new Map<string, Cancel>();
  readonly #all = new Set<Cancel>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  every(ms: number, fn: () => void): void {
    this.#all.add(this.#clock.every(ms, fn));
  }

  /** One pending timer per name: setting it again replaces the previous one. */
  after(name: string, ms: number, fn: () => void): void {
    this.cancel(name);
    const cancel = this.#clock.after(ms, () => {
      this.#named.delete(name);
      fn();
    });
    this.#named.set(name, cancel);
  }

  cancel(name: string): void {
    this.#named.get(name)?.();
    this.#named.delete(name);
  }

  clear(): void {
    for (const c of this.#all) c();
    for (const c of this.#named.values()) c();
    this.#all.clear();
    this.#named.clear();
  }
}
