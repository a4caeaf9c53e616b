/**
 * The relay channel: every blob a member exchanges through the signaling server's `relay`, in and out.
 *
 * Out: key-exchange messages, display-name profiles and chat are each put into the uniform outer envelope
 * (e2ee/relay-envelope.ts: padded to 1 KiB buckets, sealed under the invite's metadata key, AAD = room + sender), so
 * the server cannot tell them apart. Profiles and chat are sealed once more as metadata inside (docs/protocol.md B).
 *
 * In: one serial queue opens blobs strictly in arrival order (an announcement is handed on before the key batch
 * behind it) and turns each into one typed event; the next blob waits until the handler of this one settled:
 * - `membership`: the key agent's messages (announcements, liveness proofs, key batches, channel resets, room-code
 *   commitments and reveals: every relay-framing.ts kind but metadata);
 * - `profile`: a schema-checked, length-capped display name;
 * - `chat`: the inner chat blob (opened once, by the key bridge, which holds the chat keys);
 * - `foreign`: the outer envelope did not open: whoever sent it has no invite key (or the server re-attributed it).
 * Anything else is dropped and counted in `stats`.
 *
 * The queue starts paused: the caller resumes it once the key bridge can take membership messages, so nothing that
 * arrives during a join is lost (up to MAX_PENDING blobs).
 *
 * @module
 */
import PQueue from 'p-queue';
import * as z from 'zod/mini';
import { fromBase64urlExact, fromUtf8, toBase64url, utf8 } from '../e2ee/bytes.ts';
import { chatInnerKid } from '../e2ee/chat.ts';
import { parseJson } from '../e2ee/json.ts';
import { MEMBERSHIP_KIND_BYTES, RELAY_KIND } from '../e2ee/relay-framing.ts';
import { openMetadata, sealMetadata } from '../e2ee/metadata.ts';
import { openRelay, sealRelay } from '../e2ee/relay-envelope.ts';
import type { RelayPort } from './ports.ts';

export const MAX_NAME_LEN = 64;
/** Blobs held while the channel is paused (a join in flight); more are dropped and counted. */
export const MAX_PENDING = 200;

export type RelayEvent =
  | { kind: 'membership'; from: string; bytes: Uint8Array }
  | { kind: 'profile'; from: string; name: string; seq: number; sig: Uint8Array }
  | { kind: 'chat'; from: string; inner: Uint8Array }
  | { kind: 'foreign'; from: string };

export interface RelayStats {
  /** Outer envelope did not open. */
  foreign: number;
  /** Opened, but not a message we know (bad inner seal, bad profile, unknown kind). */
  malformed: number;
  /** Dropped because too many were waiting. */
  overflow: number;
}

/** Profile v2: the display name with the sender's sequence number and identity signature (e2ee/signed-message.ts). */
const Profile = z.object({
  t: z.literal('profile'),
  v: z.literal(2),
  name: z.string().check(z.maxLength(4 * MAX_NAME_LEN)),
  seq: z.number(),
  sig: z.string().check(z.length(86)),
});

/** A display name as we show and send it: trimmed, at most MAX_NAME_LEN code points. */
export function cleanName(name: string): string {
  return Array.from(name.trim()).slice(0, MAX_NAME_LEN).join(''); // code points: never half a surrogate pair
}

export interface RelayChannelOptions {
  roomId: string;
  metadataKey: Uint8Array;
}

export class RelayChannel {
  readonly stats: RelayStats = { foreign: 0, malformed: 0, overflow: 0 };
  readonly #opts: RelayChannelOptions;
  readonly #port: RelayPort;
  readonly #onEvent: (e: RelayEvent) => void | Promise<void>;
  readonly #queue = new PQueue({ concurrency: 1, autoStart: false });
  #self: string | null = null;
  /** Blobs being sealed (not yet handed to the port). */
  readonly #sending = new Set<Promise<void>>();

  constructor(opts: RelayChannelOptions, port: RelayPort, onEvent: (e: RelayEvent) => void | Promise<void>) {
    this.#opts = opts;
    this.#port = port;
    this.#onEvent = onEvent;
  }

  /** Our member id for this join (the sender id every outgoing blob is bound to); null: not joined. */
  bind(memberId: string | null): void {
    this.#self = memberId;
  }

  /** Start handing inbound blobs on (held ones first, in arrival order). */
  resume(): void {
    this.#queue.start();
  }

  /** Stop and drop everything still waiting (teardown: a new join starts from nothing). */
  reset(): void {
    this.#queue.pause();
    this.#queue.clear();
  }

  /** One inbound relay blob as the server delivered it (its claim of the sender is checked by the envelope's AAD). */
  receive(from: string, outer: Uint8Array): void {
    if (this.#queue.size >= MAX_PENDING) {
      this.stats.overflow += 1;
      return;
    }
    void this.#queue.add(() => this.#open(from, outer)).catch((e: unknown) => console.warn('[relay] handler failed', e));
  }

  /**
   * Settles once every blob received so far has been handed on (held blobs wait while paused) and every blob we are
   * sealing has been handed to the port.
   */
  async idle(): Promise<void> {
    while (this.#sending.size > 0 || (!this.#queue.isPaused && (this.#queue.size > 0 || this.#queue.pending > 0))) {
      await Promise.allSettled([...this.#sending, this.#queue.isPaused ? Promise.resolve() : this.#queue.onIdle()]);
    }
  }

  /** A key-exchange message (relay framing bytes from the key agent). */
  sendMembership(bytes: Uint8Array, to?: string): Promise<void> {
    return this.#send(bytes, to);
  }

  /** Our display name (already cleaned, as signed), sealed as a profile. */
  sendProfile(name: string, signed: { seq: number; sig: Uint8Array }, to?: string): Promise<void> {
    const body = utf8(JSON.stringify({ t: 'profile', v: 2, name, seq: signed.seq, sig: toBase64url(signed.sig) }));
    return this.#send(body, to, true);
  }

  /** An inner chat blob (e2ee/chat.ts, sealed by the key bridge) to every other member. */
  sendChat(inner: Uint8Array): Promise<void> {
    return this.#send(inner, undefined, true);
  }

  /** `metadata`: seal `inner` as metadata first (profiles, chat), inside the outer envelope. */
  #send(inner: Uint8Array, to: string | undefined, metadata = false): Promise<void> {
    const p = this.#seal(inner, to, metadata);
    this.#sending.add(p);
    void p.finally(() => this.#sending.delete(p)).catch(() => undefined);
    return p;
  }

  async #seal(inner: Uint8Array, to: string | undefined, metadata: boolean): Promise<void> {
    const me = this.#me();
    const { metadataKey, roomId } = this.#opts;
    const body = metadata ? await sealMetadata(metadataKey, roomId, me, inner) : inner;
    const outer = await sealRelay(metadataKey, roomId, me, body);
    // The join ended while we sealed (its keys may be wiped by now): nothing of it leaves.
    this.#still(me);
    await this.#port.send(outer, to);
  }

  #me(): string {
    if (this.#self === null) throw new Error('relay channel: not joined');
    return this.#self;
  }

  #still(me: string): void {
    if (this.#self !== me) throw new Error('relay channel: the join ended');
  }

  async #open(from: string, outer: Uint8Array): Promise<void> {
    const { roomId, metadataKey } = this.#opts;
    let inner: Uint8Array;
    try {
      inner = await openRelay(metadataKey, roomId, from, outer);
    } catch {
      this.stats.foreign += 1;
      await this.#onEvent({ kind: 'foreign', from });
      return;
    }
    const first = inner[0];
    if (first !== undefined && MEMBERSHIP_KIND_BYTES.has(first)) {
      await this.#onEvent({ kind: 'membership', from, bytes: inner });
      return;
    }
    let opened: Uint8Array;
    try {
      if (first !== RELAY_KIND.metadata) throw new Error('unknown relay kind');
      opened = await openMetadata(metadataKey, roomId, from, inner);
    } catch {
      this.stats.malformed += 1;
      return;
    }
    if (chatInnerKid(opened) !== null) {
      await this.#onEvent({ kind: 'chat', from, inner: opened });
      return;
    }
    const profile = parseProfile(opened);
    if (profile === null) {
      this.stats.malformed += 1;
      return;
    }
    await this.#onEvent({ kind: 'profile', from, ...profile });
  }
}

/** A profile as sent: the name exactly as signed (receivers show it cleaned), its sequence number and signature. */
function parseProfile(bytes: Uint8Array): { name: string; seq: number; sig: Uint8Array } | null {
  try {
    const p = parseJson(Profile, fromUtf8(bytes), 'profile');
    if (!cleanName(p.name)) return null;
    return { name: p.name, seq: p.seq, sig: fromBase64urlExact(p.sig, 64, 'profile signature') };
  } catch {
    return null;
  }
}
