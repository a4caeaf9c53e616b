/**
 * End-to-end encrypted chat for one call session.
 *
 * - Sending: `e2ee.sealChat(text)` → opaque base64url blob → `call.sendChatBlob(blob)` (a signaling `relay` to every
 *   other member). The server only forwards the blob; it never stores it.
 * - Receiving: `call.onChatBlob((from, blob) => …)` → `e2ee.openChat(from, blob)`; `null` (not a member, bad tag,
 *   wrong room, …) is dropped and counted in `dropped`.
 * - Messages live in memory only, for the length of the call.
 *
 * Transport contract expected from CallSession (owned by the call engineer):
 *   sendChatBlob(blob: string): Promise<void>
 *   onChatBlob(cb: (fromPeerId: string, blob: string) => void): () => void   // returns an unsubscribe function
 * If the session does not have them yet, chat is shown as unavailable (`available === false`).
 */
import type { E2eeState } from './e2ee.svelte.ts';

export interface ChatTransport {
  sendChatBlob(blob: string): Promise<void>;
  onChatBlob(cb: (fromPeerId: string, blob: string) => void): () => void;
}

/** What the chat needs from the call session. */
export interface ChatHost {
  readonly e2ee: E2eeState;
  readonly peerId: string | null;
  readonly displayName: string;
  readonly peers: ReadonlyMap<string, { displayName: string }>;
}

export interface ChatMessage {
  id: number;
  fromPeerId: string | null;
  mine: boolean;
  text: string;
  /** Sender's timestamp (ms since epoch) for received messages, local time for ours. */
  at: number;
}

export const MAX_CHAT_LEN = 2000;
const MAX_MESSAGES = 500;

function transportOf(host: ChatHost): ChatTransport | null {
  const t = host as unknown as Partial<ChatTransport>;
  return typeof t.sendChatBlob === 'function' && typeof t.onChatBlob === 'function' ? (t as ChatTransport) : null;
}

export class ChatState {
  messages = $state.raw<ChatMessage[]>([]);
  /** Blobs dropped: sender not a member, failed authentication, or not a chat message. */
  dropped = $state(0);
  draft = $state('');
  sending = $state(false);
  error = $state<string | null>(null);
  /** Messages received while the panel was closed. */
  unread = $state(0);
  readonly available: boolean;

  readonly #host: ChatHost;
  readonly #transport: ChatTransport | null;
  #unsubscribe: (() => void) | null = null;
  #seq = 0;
  #visible = false;

  constructor(host: ChatHost) {
    this.#host = host;
    this.#transport = transportOf(host);
    this.available = this.#transport !== null;
    this.#unsubscribe = this.#transport?.onChatBlob((from, blob) => void this.#receive(from, blob)) ?? null;
  }

  /** Display name for a sender (names come from the sealed profiles; unknown → "Participant"). */
  nameOf(m: ChatMessage): string {
    if (m.mine) return `${this.#host.displayName || 'You'} (you)`;
    const member = this.#host.e2ee.members.find((x) => x.peerId === m.fromPeerId);
    return member?.name ?? (m.fromPeerId ? this.#host.peers.get(m.fromPeerId)?.displayName : undefined) ?? 'Participant';
  }

  setDraft(text: string): void {
    this.draft = text.slice(0, MAX_CHAT_LEN);
  }

  setVisible(visible: boolean): void {
    this.#visible = visible;
    if (visible) this.unread = 0;
  }

  async send(): Promise<void> {
    const text = this.draft.trim().slice(0, MAX_CHAT_LEN);
    if (!text || this.sending) return;
    if (!this.#transport) {
      this.error = 'Chat is not available in this call.';
      return;
    }
    this.sending = true;
    this.error = null;
    try {
      const blob = await this.#host.e2ee.sealChat(text);
      await this.#transport.sendChatBlob(blob);
      this.#push({ id: ++this.#seq, fromPeerId: this.#host.peerId, mine: true, text, at: Date.now() });
      this.draft = '';
    } catch (err) {
      this.error = `Not sent: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      this.sending = false;
    }
  }

  dispose(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  async #receive(from: string, blob: string): Promise<void> {
    let opened: { text: string; at: number } | null = null;
    try {
      opened = await this.#host.e2ee.openChat(from, blob);
    } catch {
      opened = null;
    }
    if (!opened || typeof opened.text !== 'string') {
      this.dropped += 1;
      return;
    }
    const text = opened.text.slice(0, MAX_CHAT_LEN);
    const at = Number.isFinite(opened.at) ? opened.at : Date.now();
    this.#push({ id: ++this.#seq, fromPeerId: from, mine: false, text, at });
    if (!this.#visible) this.unread += 1;
  }

  #push(m: ChatMessage): void {
    this.messages = [...this.messages, m].slice(-MAX_MESSAGES);
  }
}

/** "14:05" in the user's locale. */
export function formatTime(at: number): string {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
