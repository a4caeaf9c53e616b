/**
 * E2EE state for the UI: fingerprints, room code, per-member verification and key state, alerts, safety numbers,
 * and sealed chat. One instance per call session (`call.e2ee`). Components only read these fields and call the
 * methods; all key material stays in `CallSession` / the transform worker.
 */

export type VerificationState = 'verified' | 'unverified' | 'changed' | 'creator';
export type MemberKeyState = 'waiting' | 'encrypted' | 'verified' | 'failing';
export type AlertKind =
  | 'injected-member'
  | 'identity-changed'
  | 'bypass'
  | 'roster'
  | 'decrypt-failing'
  | 'codec-refused'
  | 'key-exchange'
  | 'internal';

export interface E2eeAlert {
  id: string;
  kind: AlertKind;
  message: string;
  /** ms since epoch */
  at: number;
}

export interface E2eeMember {
  peerId: string;
  name?: string;
  /** Identity fingerprint, shown as hex groups (empty until the member's announcement verified). */
  fingerprint: string;
  verification: VerificationState;
  keyState: MemberKeyState;
  /** Frames of this member dropped by reason (auth, unknown-kid, expired, …). */
  drops: Record<string, number>;
  /** Frames of this member opened. */
  opened: number;
}

export interface RoomCodeView {
  emoji: string;
  digits: string;
}

/** Engine behind E2eeState (implemented by CallSession). */
export interface E2eeBackend {
  safetyNumber(peerId: string): Promise<{ digits: string; emoji: string }>;
  markVerified(peerId: string): Promise<void>;
  sealChat(text: string): Promise<string>;
  openChat(fromPeerId: string, blob: string): Promise<{ text: string; at: number } | null>;
}

/** A chat message that opened (authenticated under the sender's current media-derived chat key). */
export interface ChatMessage {
  from: string;
  text: string;
  at: number;
  /** The relay blob it came in (for dedup). */
  blob: string;
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
  #chatListeners = new Set<(m: ChatMessage) => void>();
  #safety = new Map<string, Promise<{ digits: string; emoji: string }>>();

  /** Wired by CallSession. */
  attach(backend: E2eeBackend): void {
    this.#backend = backend;
  }

  /** Pairwise safety number with `peerId` (cached per peer identity; ~150 ms on first call). */
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

  /** Chat: text → opaque relay blob (sealed under our current chat key). */
  sealChat(text: string): Promise<string> {
    if (!this.#backend) return Promise.reject(new Error('not in a call'));
    return this.#backend.sealChat(text);
  }

  /** Chat: relay blob → text, or null if it is not a chat message we can open. */
  async openChat(fromPeerId: string, blob: string): Promise<{ text: string; at: number } | null> {
    if (!this.#backend) return null;
    return this.#backend.openChat(fromPeerId, blob);
  }

  /** Chat messages that arrive over the relay and open. Returns an unsubscribe function. */
  onChat(listener: (m: ChatMessage) => void): () => void {
    this.#chatListeners.add(listener);
    return () => this.#chatListeners.delete(listener);
  }

  /** Called by CallSession for every incoming chat message that opened. */
  deliverChat(m: ChatMessage): void {
    for (const l of this.#chatListeners) {
      try {
        l(m);
      } catch (e) {
        console.warn('[chat] listener failed', e);
      }
    }
  }

  /** Raise an alert (deduplicated by kind + message while it is shown). */
  alert(kind: AlertKind, message: string): void {
    if (this.alerts.some((a) => a.kind === kind && a.message === message)) return;
    alertSeq += 1;
    this.alerts = [...this.alerts, { id: `a${alertSeq}`, kind, message, at: Date.now() }].slice(-50);
  }
}
