/**
 * TEST-ONLY capture of every socket.io message the server sees: each inbound event (name + arguments as
 * received, ack callback left out), each outbound emit or broadcast (per receiving socket) and each ack
 * answer, in order, as one JSON string per message.
 *
 * Off by default. It exists only when a test calls `startServer(config, { capture: true })`; no
 * environment variable, config field or network request turns it on.
 */

export type CaptureDirection = 'in' | 'out' | 'ack' | 'connect' | 'disconnect';

export interface CapturedMessage {
  /** Position in the capture (0, 1, 2…). */
  n: number;
  /** Date.now() when it was captured. */
  t: number;
  dir: CaptureDirection;
  /** socket.io socket id of the connection it came in on / went out on. */
  sid: string;
  /** The peer id joined on that connection at that moment (null before join / after leave). */
  peerId: string | null;
  /** Event name (for `ack`: the event being answered). */
  event: string;
  /** Arguments as received / sent (for `ack`: `[result]`). */
  args: unknown[];
}

export interface MessageCaptureOptions {
  /** Messages kept (oldest dropped beyond). Default 200 000. */
  max?: number;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : typeof v === 'function' ? '[function]' : v));
  } catch {
    return JSON.stringify({ unserializable: String(value) });
  }
}

/** The part of a socket.io server socket the capture watches. */
export interface CapturedSocket {
  readonly id: string;
  readonly data: { peerId?: string | undefined };
  use(fn: (packet: [string, ...unknown[]], next: (err?: Error) => void) => void): unknown;
  onAnyOutgoing(fn: (event: string, ...args: unknown[]) => void): unknown;
  on(event: 'disconnect', fn: (reason: string) => void): unknown;
}

export class MessageCapture {
  readonly #max: number;
  readonly #lines: string[] = [];
  #n = 0;

  constructor(opts: MessageCaptureOptions = {}) {
    this.#max = opts.max ?? 200_000;
  }

  /** Called by the signaling server. */
  record(dir: CaptureDirection, sid: string, peerId: string | null, event: string, args: unknown[]): void {
    const msg: CapturedMessage = { n: this.#n++, t: Date.now(), dir, sid, peerId, event, args };
    this.#lines.push(safeJson(msg));
    if (this.#lines.length > this.#max) this.#lines.splice(0, this.#lines.length - this.#max);
  }

  /**
   * Records `socket`'s connect now, then every inbound packet as received (known or not, without the
   * ack callback; call this before any other middleware), every outbound emit and the disconnect.
   */
  watch(socket: CapturedSocket): void {
    const peerId = (): string | null => socket.data.peerId ?? null;
    this.record('connect', socket.id, null, 'connect', []);
    socket.use((packet, next) => {
      const [event, ...args] = packet as unknown[];
      this.record('in', socket.id, peerId(), typeof event === 'string' ? event : String(event), args.filter((a) => typeof a !== 'function'));
      next();
    });
    socket.onAnyOutgoing((event, ...args) => this.record('out', socket.id, peerId(), event, args));
    socket.on('disconnect', (reason) => this.record('disconnect', socket.id, peerId(), 'disconnect', [reason]));
  }

  /** Every captured message, oldest first, each a JSON string of a `CapturedMessage`. */
  messages(): string[] {
    return [...this.#lines];
  }

  /** The same, parsed. */
  parsed(): CapturedMessage[] {
    return this.#lines.map((l) => JSON.parse(l) as CapturedMessage);
  }

  /**
   * Every `relay` blob the server received or sent, base64url-decoded (to search the bytes for
   * plaintext, which a search of the JSON strings would not find inside base64).
   */
  relayBlobs(): { dir: 'in' | 'out'; sid: string; peerId: string | null; blob: Buffer }[] {
    const out: { dir: 'in' | 'out'; sid: string; peerId: string | null; blob: Buffer }[] = [];
    for (const m of this.parsed()) {
      if (m.event !== 'relay' || (m.dir !== 'in' && m.dir !== 'out')) continue;
      const blob = (m.args[0] as { blob?: unknown } | undefined)?.blob;
      if (typeof blob === 'string') out.push({ dir: m.dir, sid: m.sid, peerId: m.peerId, blob: Buffer.from(blob, 'base64url') });
    }
    return out;
  }

  clear(): void {
    this.#lines.length = 0;
  }
}
