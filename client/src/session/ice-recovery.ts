/**
 * ICE recovery for the transports of one join (media-plane.ts owns the transports and wires their state here).
 *
 * A transport whose ICE goes `disconnected`/`failed` (or whose receive side the watchdog finds silent) gets an ICE
 * restart: the server's `restartIce` answer brings new ICE parameters and fresh TURN credentials, set on the
 * transport first (the new ICE session allocates on the TURN server again, and the join's credentials may be past
 * TURN_TTL). While it stays down it is restarted again every ICE_RETRY_MS; if it is still down ICE_RECHECK_MS after
 * the outage's first restart, the member rejoins. A server answer that the transport or the member is gone
 * (UNAVAILABLE, NOT_FOUND, NOT_JOINED) rejoins at once.
 *
 * Plain TypeScript with injected ports (the request, timers, the join's closed flag, what to tell the plane):
 * unit-tested in Node with a manual clock (test/session/ice-recovery.test.ts).
 *
 * @module
 */
import type { types } from 'mediasoup-client';
import { RequestError, type Responses } from '../lib/signaling.ts';
import type { Timers } from './ports.ts';

/** A transport still down this long after the first ICE restart of its outage: rejoin (later restarts do not extend it). */
export const ICE_RECHECK_MS = 8000;
/**
 * A transport still down this long after an ICE restart: restart again (fresh TURN credentials, a fresh gathering).
 * A restart made while the TURN server was unreachable gathers nothing, and the browser retransmits its Allocate
 * with backoff (Chromium: 0.25, 0.5, 1, 2, 4 s apart), so a server back ~4 s later is asked again only at ~7.75 s:
 * too late for ICE_RECHECK_MS. The old ICE generation keeps running until a new one connects.
 */
export const ICE_RETRY_MS = 2000;

/** The part of a mediasoup-client Transport that recovery uses. */
export type IceTransport = Pick<types.Transport, 'id' | 'closed' | 'connectionState' | 'updateIceServers' | 'restartIce'>;

export interface IceRecoveryPorts {
  /** The server's `restartIce` for this transport. */
  restartIce(transportId: string): Promise<Responses['restartIce']>;
  /** The join's timers (cleared when the join closes). */
  timers: Timers;
  /** The join is over: nothing more to do. */
  closed(): boolean;
  /** Start over as a new member. */
  rejoin(why: string): void;
  /** The transports whose ICE is down changed. */
  downChanged(down: readonly string[]): void;
}

const REJOIN_CODES = new Set(['UNAVAILABLE', 'NOT_FOUND', 'NOT_JOINED']);

export class IceRecovery {
  readonly #ports: IceRecoveryPorts;
  readonly #restarting = new Set<string>();
  readonly #down = new Set<string>();
  /** Transports with a rejoin deadline pending (ICE_RECHECK_MS after the first restart of their outage). */
  readonly #deadline = new Set<string>();

  constructor(ports: IceRecoveryPorts) {
    this.#ports = ports;
  }

  /** A transport's `connectionstatechange`. */
  stateChanged(t: IceTransport, state: string): void {
    if (this.#ports.closed()) return;
    if (state === 'connected') {
      this.#down.delete(t.id);
      this.#deadline.delete(t.id);
      this.#ports.timers.cancel(`ice:${t.id}`);
      this.#ports.timers.cancel(`ice-retry:${t.id}`);
    } else if (state === 'disconnected' || state === 'failed') {
      this.#down.add(t.id);
      void this.restart(t);
    } else return;
    this.#ports.downChanged([...this.#down]);
  }

  /** Restart ICE on `t` (one at a time per transport), then keep at it until it connects or the deadline passes. */
  async restart(t: IceTransport): Promise<void> {
    if (this.#restarting.has(t.id)) return;
    this.#restarting.add(t.id);
    try {
      const { iceParameters, iceServers } = await this.#ports.restartIce(t.id);
      if (this.#ports.closed() || t.closed) return;
      // Fresh TURN credentials first: the new ICE session allocates again, and the join's may have expired.
      await t.updateIceServers({ iceServers: iceServers as RTCIceServer[] });
      await t.restartIce({ iceParameters: iceParameters as unknown as types.IceParameters });
    } catch (err) {
      if (this.#ports.closed()) return;
      if (err instanceof RequestError && REJOIN_CODES.has(err.code)) {
        this.#ports.rejoin(`restartIce: ${err.code}`);
        return;
      }
    } finally {
      this.#restarting.delete(t.id);
    }
    const down = (): boolean => !this.#ports.closed() && !t.closed && t.connectionState !== 'connected';
    // Still down a while after the outage's first restart: start over.
    if (!this.#deadline.has(t.id)) {
      this.#deadline.add(t.id);
      this.#ports.timers.after(`ice:${t.id}`, ICE_RECHECK_MS, () => {
        this.#deadline.delete(t.id);
        if (down()) this.#ports.rejoin('ICE did not recover');
      });
    }
    // Until then, restart again now and then: the TURN server may be back while this restart's requests back off.
    this.#ports.timers.after(`ice-retry:${t.id}`, ICE_RETRY_MS, () => {
      if (down()) void this.restart(t);
    });
  }
}
