/**
 * E2EE state for the UI: fingerprints, room code, per-member verification and key state, alerts, safety numbers.
 * One instance per call session (`call.e2ee`). The call session copies the session layer's views in; components
 * only read these fields and call the methods. No key material here.
 */
import type { RoomCodeView } from '../session/key-bridge.ts';
import type { AlertKind, E2eeMember } from '../session/trust-monitor.ts';

export type { RoomCodeView } from '../session/key-bridge.ts';
export type { AlertKind, E2eeMember, MemberKeyState, VerificationState } from '../session/trust-monitor.ts';

export interface E2eeAlert {
  id: string;
  kind: AlertKind;
  message: string;
  /** ms since epoch */
  at: number;
}

/** What E2eeState asks the session layer for. */
export interface E2eeBackend {
  safetyNumber(peerId: string): Promise<{ digits: string; emoji: string }>;
  markVerified(peerId: string): Promise<void>;
}

let alertSeq = 0;

export class E2eeState {
  myFingerprint = $state('');
  roomCode = $state.raw<RoomCodeView | null>(null);
  alerts = $state.raw<E2eeAlert[]>([]);
  members = $state.raw<E2eeMember[]>([]);
  /** True once our own send key exists (frames are sealed). */
  sending = $state(false);

  readonly encryptedCount = $derived(this.members.filter((m) => m.keyState === 'encrypted' || m.keyState === 'verified').length);

  #backend: E2eeBackend | null = null;
  #safety = new Map<string, Promise<{ digits: string; emoji: string }>>();

  /** Wired by CallSession. */
  attach(backend: E2eeBackend): void {
    this.#backend = backend;
  }

  /** Pairwise safety number with `peerId` (cached per peer identity; ~275 ms on first call). */
  safetyNumber(peerId: string): Promise<{ digits: string; emoji: string }> {
    const m = this.members.find((x) => x.peerId === peerId);
    const cacheKey = `${peerId}:${m?.fingerprint ?? ''}`;
    let p = this.#safety.get(cacheKey);
    if (!p) {
      if (!this.#backend) return Promise.reject(new Error('not in a call'));
      p = this.#backend.safetyNumber(peerId);
      this.#safety.set(cacheKey, p);
      p.catch(() => this.#safety.delete(cacheKey));
    }
    return p;
  }

  async markVerified(peerId: string): Promise<void> {
    await this.#backend?.markVerified(peerId);
  }

  dismissAlert(id: string): void {
    this.alerts = this.alerts.filter((a) => a.id !== id);
  }

  /** Raise an alert (deduplicated by kind + message while it is shown). */
  alert(kind: AlertKind, message: string): void {
    if (this.alerts.some((a) => a.kind === kind && a.message === message)) return;
    alertSeq += 1;
    this.alerts = [...this.alerts, { id: `a${alertSeq}`, kind, message, at: Date.now() }].slice(-50);
  }
}
