/**
 * What stands between a signed member message (profile or chat) and the UI: messages from a sender we cannot check yet
 * (not admitted by the key exchange, or no chat key yet) wait here, bounded, until it is; and each sender's sequence
 * numbers decide what is new — a profile applies only if it is newer than the last one shown, a chat message only once.
 * A replay (or a duplicate the server injects) is recognised and dropped.
 *
 * @module
 */

/** Held messages per sender, and senders with held messages. */
export const MAX_HELD_PER_SENDER = 8;
export const MAX_HELD_SENDERS = 64;
/** Chat sequence numbers remembered per sender (older ones below the window are refused as replays). */
export const CHAT_SEQ_WINDOW = 4096;

interface SenderSeen {
  profile: number;
  chat: Set<number>;
  /** Every chat seq at or below this is refused (the window slid past it). */
  chatFloor: number;
}

export class MessageGate<M> {
  readonly #held = new Map<string, M[]>();
  readonly #seen = new Map<string, SenderSeen>();
  /** Messages dropped: held too many, or replayed. */
  dropped = 0;

  /** Keep `m` from `from` until `release(from)`; false (and counted) when the bounds are reached. */
  hold(from: string, m: M): boolean {
    const list = this.#held.get(from) ?? [];
    if (list.length >= MAX_HELD_PER_SENDER || (!this.#held.has(from) && this.#held.size >= MAX_HELD_SENDERS)) {
      this.dropped += 1;
      return false;
    }
    list.push(m);
    this.#held.set(from, list);
    return true;
  }

  /** The senders with held messages. */
  get waiting(): string[] {
    return [...this.#held.keys()];
  }

  /** Held messages of `from`, in arrival order (and no longer held). */
  release(from: string): M[] {
    const list = this.#held.get(from) ?? [];
    this.#held.delete(from);
    return list;
  }

  /** A profile with this seq is newer than any shown from `from` (and now the newest). */
  newerProfile(from: string, seq: number): boolean {
    const s = this.#sender(from);
    if (seq <= s.profile) return this.#replay();
    s.profile = seq;
    return true;
  }

  /** A chat message with this seq has not been shown from `from` (and now has). */
  firstChat(from: string, seq: number): boolean {
    const s = this.#sender(from);
    if (seq <= s.chatFloor || s.chat.has(seq)) return this.#replay();
    s.chat.add(seq);
    if (s.chat.size > CHAT_SEQ_WINDOW) {
      const oldest = Math.min(...s.chat);
      s.chat.delete(oldest);
      s.chatFloor = oldest;
    }
    return true;
  }

  /** `from` left (or its session ended): its held messages and sequence state go. */
  forget(from: string): void {
    this.#held.delete(from);
    this.#seen.delete(from);
  }

  clear(): void {
    this.#held.clear();
    this.#seen.clear();
  }

  #sender(from: string): SenderSeen {
    let s = this.#seen.get(from);
    if (!s) {
      s = { profile: 0, chat: new Set(), chatFloor: 0 };
      this.#seen.set(from, s);
    }
    return s;
  }

  #replay(): false {
    this.dropped += 1;
    return false;
  }
}
