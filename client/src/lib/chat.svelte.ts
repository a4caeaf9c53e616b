/**
 * End-to-end encrypted chat panel state for one call session. The session layer seals and opens messages (each
 * incoming one exactly once, session/e2ee-session.ts); this class only keeps what the panel shows.
 * Messages live in memory only, for the length of the call; the server only forwards sealed blobs.
 */
import type { ChatEvent } from './call.svelte.ts';
import type { E2eeState } from './e2ee.svelte.ts';

/** What the chat needs from the call session. */
export interface ChatHost {
  readonly e2ee: E2eeState;
  readonly peerId: string | null;
  readonly displayName: string;
  sendChat(text: string): Promise<void>;
  onChat(listener: (e: ChatEvent) => void): () => void;
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

export class ChatState {
  messages = $state.raw<ChatMessage[]>([]);
  /** Blobs dropped: sender not a member, failed authentication, or not a chat message. */
  dropped = $state(0);
  draft = $state('');
  sending = $state(false);
  error = $state<string | null>(null);
  /** Messages received while the panel was closed. */
  unread = $state(0);

  readonly #host: ChatHost;
  #unsubscribe: (() => void) | null;
  #seq = 0;
  #visible = false;

  constructor(host: ChatHost) {
    this.#host = host;
    this.#unsubscribe = host.onChat((e) => this.#receive(e));
  }

  /** Display name for a sender (names come from the sealed profiles; unknown → "Participant"). */
  nameOf(m: ChatMessage): string {
    if (m.mine) return `${this.#host.displayName || 'You'} (you)`;
    return this.#host.e2ee.members.find((x) => x.peerId === m.fromPeerId)?.name ?? 'Participant';
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
    this.sending = true;
    this.error = null;
    try {
      await this.#host.sendChat(text);
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

  #receive(e: ChatEvent): void {
    if (e.kind === 'dropped') {
      this.dropped += 1;
      return;
    }
    const at = Number.isFinite(e.at) ? e.at : Date.now();
    this.#push({ id: ++this.#seq, fromPeerId: e.from, mine: false, text: e.text.slice(0, MAX_CHAT_LEN), at });
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
