/**
 * UI-only state for the trust components (which dialog is open, the invite QR image). No key material: the
 * safety number comes from `call.e2ee.safetyNumber`, verification goes through `call.e2ee.markVerified`.
 */
import QRCode from 'qrcode';
import type { AlertKind, E2eeState } from './e2ee.svelte.ts';

export interface SafetyView {
  peerId: string;
  name: string;
  number: { digits: string; emoji: string } | null;
  error: string | null;
  busy: boolean;
}

/** Title for each alert kind (the message comes from the E2EE layer). */
export const ALERT_TITLES: Record<AlertKind, string> = {
  misattributed: 'Someone else’s media was put in a participant’s tile',
  'creator-absent': 'The meeting’s creator is not here',
  'injected-member': 'Someone joined without the meeting key',
  'identity-changed': 'A known name has a different identity',
  bypass: 'Encryption is not applied to some media',
  roster: 'Participants disagree about who is in the meeting',
  'decrypt-failing': 'Media from a participant cannot be decrypted',
  'codec-refused': 'A media format cannot be encrypted',
  'key-exchange': 'Key exchange problem',
  internal: 'Encryption error',
};

export function alertTitle(kind: string): string {
  return (ALERT_TITLES as Record<string, string>)[kind] ?? 'Security warning';
}

export const KEY_STATE_LABELS: Record<string, string> = {
  waiting: 'waiting for keys',
  encrypted: 'encrypted',
  verified: 'encrypted · verified',
  failing: 'decryption failing',
};

/** Tooltip text for a tile's key state: frames opened and dropped per reason. */
export function dropsTitle(opened: number, drops: Record<string, number>): string {
  const parts = Object.entries(drops)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason}: ${n}`);
  return `Frames decrypted: ${opened}. Dropped: ${parts.length ? parts.join(', ') : 'none'}.`;
}

export class TrustUi {
  panel = $state<'none' | 'participants' | 'chat' | 'invite' | 'about'>('none');
  safety = $state<SafetyView | null>(null);
  readonly #e2ee: E2eeState;

  constructor(e2ee: E2eeState) {
    this.#e2ee = e2ee;
  }

  toggle(panel: 'participants' | 'chat' | 'invite' | 'about'): void {
    this.panel = this.panel === panel ? 'none' : panel;
  }

  async openSafety(peerId: string, name: string): Promise<void> {
    this.safety = { peerId, name, number: null, error: null, busy: true };
    try {
      const number = await this.#e2ee.safetyNumber(peerId);
      if (this.safety?.peerId === peerId) this.safety = { ...this.safety, number, busy: false };
    } catch (err) {
      if (this.safety?.peerId === peerId) this.safety = { ...this.safety, error: err instanceof Error ? err.message : String(err), busy: false };
    }
  }

  closeSafety(): void {
    this.safety = null;
  }

  async confirmVerified(): Promise<void> {
    const s = this.safety;
    if (!s || !s.number) return;
    this.safety = { ...s, busy: true };
    try {
      await this.#e2ee.markVerified(s.peerId);
      this.safety = null;
    } catch (err) {
      this.safety = { ...s, busy: false, error: err instanceof Error ? err.message : String(err) };
    }
  }
}

/** Invite link → QR code as a data: URL (CSP allows `img-src data:`). */
export class InviteQr {
  dataUrl = $state<string | null>(null);
  error = $state<string | null>(null);
  #link = '';

  update(link: string | null): void {
    if (!link || link === this.#link) return;
    this.#link = link;
    QRCode.toDataURL(link, { errorCorrectionLevel: 'M', margin: 2, width: 240, color: { dark: '#000000', light: '#ffffff' } }).then(
      (url) => {
        if (this.#link === link) this.dataUrl = url;
      },
      (err: unknown) => {
        this.error = err instanceof Error ? err.message : String(err);
      },
    );
  }
}

/** Copies text; returns whether it worked. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

export function formatAlertTime(at: number): string {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Members who are not both listed by the server and in the key exchange. */
export const PRESENCE_LABELS: Record<string, string> = {
  'server-only': 'no keys',
  'keys-only': 'not listed by the server',
};
export const PRESENCE_HINTS: Record<string, string> = {
  'server-only': 'The server lists this participant, but it has not joined the key exchange: it gets no keys and cannot see or hear anyone.',
  'keys-only': 'This participant holds the meeting keys, but the server does not show it as present. Ask who it is before you go on.',
};

export const VERIFICATION_LABELS: Record<string, string> = {
  verified: 'verified',
  creator: 'verified (meeting creator)',
  unverified: 'not verified',
  changed: 'identity changed!',
};

/** Alerts that mean someone may be listening in: shown as a modal that must be dismissed. */
export const CRITICAL_ALERTS: readonly string[] = ['misattributed', 'injected-member', 'identity-changed', 'roster', 'bypass'];

export function isCriticalAlert(kind: string): boolean {
  return CRITICAL_ALERTS.includes(kind);
}
