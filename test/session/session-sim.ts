/**
 * Test harness for the call session layer (client/src/session/): real E2eeSessions (relay channel, key bridge,
 * KeyAgent, membership reducer, HPKE, SFrame key schedule) connected through an in-memory, scriptable relay that
 * stands in for the untrusted signaling server, with a recording fake of the transform worker (`FramePort`) and a
 * manual clock. Nothing here replaces the code under test: only the ports are fakes.
 *
 * Test helper only: never imported by product code.
 */
import type { Identity } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import type { InviteKeys } from '../../client/src/e2ee/invite.ts';
import { emptyVerifications, type Verifications } from '../../client/src/e2ee/verification.ts';
import { E2eeSession, type SessionEvent, type TrustStore } from '../../client/src/session/e2ee-session.ts';
import type { Cancel, Clock, FramePort } from '../../client/src/session/ports.ts';
import type { SenderCount } from '../../client/src/transform/protocol.ts';
import { INVITE_KEYS, ROOM } from '../e2ee/relay-sim.ts';

export { INVITE_KEYS, ROOM };

/** A clock whose timers run only when the test advances it. */
export class ManualClock implements Clock {
  #now = 1_000_000;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void; every: number | null }>();

  now(): number {
    return this.#now;
  }
  every(ms: number, fn: () => void): Cancel {
    return this.#add(ms, fn, ms);
  }
  after(ms: number, fn: () => void): Cancel {
    return this.#add(ms, fn, null);
  }
  /** Moves time on, running every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, t] = due;
      this.#now = Math.max(this.#now, t.at);
      if (t.every === null) this.#timers.delete(id);
      else t.at += t.every;
      t.fn();
    }
    this.#now = end;
  }
  get pending(): number {
    return this.#timers.size;
  }
  #add(ms: number, fn: () => void, every: number | null): Cancel {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + ms, fn, every });
    return () => this.#timers.delete(id);
  }
}

export type FrameCall =
  | { kind: 'set-send-key'; senderIndex: number; generation: number; step: number; kid: bigint; baseKey: Uint8Array }
  | { kind: 'clear-send-key' }
  | { kind: 'add-sender'; senderIndex: number }
  | { kind: 'add-receive-key'; senderIndex: number; kid: bigint; baseKey: Uint8Array }
  | { kind: 'forget-sender'; senderIndex: number }
  | { kind: 'forget-all-senders' };

/** Records every call the session makes on the transform worker (key bytes copied: the caller wipes its own). */
export class RecordingFrames implements FramePort {
  readonly calls: FrameCall[] = [];
  senders: readonly SenderCount[] = [];

  setSendKey(senderIndex: number, generation: number, step: number, kid: bigint, baseKey: Uint8Array): void {
    this.calls.push({ kind: 'set-send-key', senderIndex, generation, step, kid, baseKey: baseKey.slice() });
  }
  clearSendKey(): void {
    this.calls.push({ kind: 'clear-send-key' });
  }
  addSender(senderIndex: number): void {
    this.calls.push({ kind: 'add-sender', senderIndex });
  }
  addReceiveKey(senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    this.calls.push({ kind: 'add-receive-key', senderIndex, kid, baseKey: baseKey.slice() });
  }
  forgetSender(senderIndex: number): void {
    this.calls.push({ kind: 'forget-sender', senderIndex });
  }
  forgetAllSenders(): void {
    this.calls.push({ kind: 'forget-all-senders' });
  }
  get sendKeys(): Extract<FrameCall, { kind: 'set-send-key' }>[] {
    return this.calls.filter((c): c is Extract<FrameCall, { kind: 'set-send-key' }> => c.kind === 'set-send-key');
  }
  get receiveKeys(): Extract<FrameCall, { kind: 'add-receive-key' }>[] {
    return this.calls.filter((c): c is Extract<FrameCall, { kind: 'add-receive-key' }> => c.kind === 'add-receive-key');
  }
}

/** The identity and verification records of one browser profile, in memory. */
export class MemoryStore implements TrustStore {
  /** Made on first load, as the browser's store does: a non-extractable WebCrypto key (Node 20 has Ed25519). */
  #identity: Promise<Identity> | undefined;
  verifications: Verifications = emptyVerifications();
  loadIdentity(): Promise<Identity> {
    return (this.#identity ??= createIdentity());
  }
  loadVerifications(): Promise<Verifications> {
    return Promise.resolve(this.verifications);
  }
  saveVerifications(v: Verifications): Promise<void> {
    this.verifications = v;
    return Promise.resolve();
  }
}

/** One relay delivery as the server would make it: bytes with the sender the server asserts. */
export interface RelayPacket {
  readonly from: string;
  readonly to: string;
  readonly bytes: Uint8Array;
  readonly forged?: boolean;
}
export type Verdict = 'pass' | 'drop' | { replace: RelayPacket[] };
export type RelayRule = (p: RelayPacket) => Verdict | undefined;

export interface Browser {
  /** The member id of its current join (the server chooses it). */
  id: string;
  readonly session: E2eeSession;
  readonly frames: RecordingFrames;
  readonly store: MemoryStore;
  readonly events: SessionEvent[];
}

/** The untrusted server: roster, relay (with scriptable rules) and the tap of everything members sent. */
export class SessionRoom {
  readonly clock = new ManualClock();
  readonly browsers = new Map<string, Browser>();
  readonly roster: string[] = [];
  /** Everything members handed to the relay, before any rule ran. */
  readonly tap: RelayPacket[] = [];
  readonly rules: RelayRule[] = [];
  #queue: RelayPacket[] = [];

  /** A browser (name = its first member id), with the real invite unless told otherwise. */
  add(name: string, opts: { inviteKeys?: InviteKeys; displayName?: string; creatorFingerprint?: Uint8Array } = {}): Browser {
    const frames = new RecordingFrames();
    const store = new MemoryStore();
    const events: SessionEvent[] = [];
    const b: Browser = { id: name, frames, store, events, session: undefined as unknown as E2eeSession };
    const session = new E2eeSession(
      { roomId: ROOM, inviteKeys: opts.inviteKeys ?? INVITE_KEYS, creatorFingerprint: opts.creatorFingerprint },
      {
        relay: {
          send: (bytes, to) => {
            const targets = to !== undefined ? [to] : this.roster.filter((m) => m !== b.id);
            for (const t of targets) this.#submit({ from: b.id, to: t, bytes: bytes.slice() });
            return Promise.resolve();
          },
        },
        frames,
        clock: this.clock,
        store,
      },
      (e) => events.push(e),
    );
    (b as { session: E2eeSession }).session = session;
    void session.setName(opts.displayName ?? name);
    this.browsers.set(name, b);
    return b;
  }

  /** `name` joins as member `id` (default: its name): the server lists everyone to it and it to everyone. */
  async join(name: string, id = name): Promise<void> {
    const b = this.#browser(name);
    b.id = id;
    const existing = [...this.roster];
    this.roster.push(id);
    for (const other of this.#others(id)) other.session.listed(id);
    for (const m of existing) b.session.listed(m);
    await b.session.join(id, existing);
    await this.settle();
  }

  /** The server says `name` left (its socket closed). */
  async leave(name: string): Promise<void> {
    const b = this.#browser(name);
    const id = b.id;
    this.roster.splice(this.roster.indexOf(id), 1);
    b.session.leave();
    b.id = `${id} (left)`; // the server may hand the id to someone else
    for (const other of this.#others(id)) other.session.unlisted(id);
    await this.settle();
  }

  /** The relay delivers `p` as if a member had sent it (forged or replayed). */
  inject(p: RelayPacket): void {
    this.#queue.push({ ...p, forged: true });
  }

  /** Deliver everything queued and let every session process it, until nothing moves. */
  async settle(): Promise<void> {
    let quiet = 0;
    while (quiet < 5) {
      const batch = this.#queue;
      this.#queue = [];
      for (const p of batch) this.#deliver(p);
      await Promise.all([...this.browsers.values()].map((b) => b.session.idle()));
      await new Promise((r) => setImmediate(r));
      quiet = batch.length === 0 && this.#queue.length === 0 ? quiet + 1 : 0;
    }
  }

  browser(name: string): Browser {
    return this.#browser(name);
  }

  #browser(name: string): Browser {
    const b = this.browsers.get(name);
    if (!b) throw new Error(`no browser ${name}`);
    return b;
  }

  #others(id: string): Browser[] {
    return [...this.browsers.values()].filter((b) => b.id !== id && this.roster.includes(b.id));
  }

  #submit(p: RelayPacket): void {
    this.tap.push(p);
    let out: RelayPacket[] = [p];
    for (const rule of this.rules) {
      out = out.flatMap((q) => {
        const v = rule(q) ?? 'pass';
        return v === 'pass' ? [q] : v === 'drop' ? [] : v.replace;
      });
    }
    this.#queue.push(...out);
  }

  #deliver(p: RelayPacket): void {
    const target = [...this.browsers.values()].find((b) => b.id === p.to);
    target?.session.receive(p.from, p.bytes);
  }
}

/** Events of one kind a browser's session emitted. */
export function eventsOf<K extends SessionEvent['kind']>(b: Browser, kind: K): Extract<SessionEvent, { kind: K }>[] {
  return b.events.filter((e): e is Extract<SessionEvent, { kind: K }> => e.kind === kind);
}
