/**
 * Adversarial test harness: simulated members running the REAL membership reducer / KeyAgent, real key rings
 * (keyring.ts), real SFrame and the real media frame codec, connected through a scriptable malicious relay.
 *
 * The relay stands in for the untrusted signaling server + SFU. It sees only what members hand it: opaque relay
 * messages (relay-framing bytes), protected media frames, and the roster it itself maintains (join responses and
 * "member left" events). Tests script it to drop, delay, hold/reorder, duplicate/replay, rewrite and inject any
 * of those, and to lie about the roster (per-member views of who is in the room).
 *
 * Time is a fake clock (`sim.clock`): nothing here uses real timers; every call into the core carries `clock.now`.
 *
 * Test helper only: never imported by product code.
 */
import { frameFromResult, protectFrame, splitProtected, unprotectFrame, type MediaCodec } from '../../client/src/e2ee/frame-codec.ts';
import { newSession, type Session } from '../../client/src/e2ee/identity.ts';
import { rawIdentity, type RawIdentity } from '../../client/src/e2ee/identity-key.ts';
import { deriveInviteKeysSync, type InviteKeys } from '../../client/src/e2ee/invite.ts';
import { KeyAgent, type SendKeyFailure, type SendKeyInfo } from '../../client/src/e2ee/key-agent.ts';
import { SendKeySlot } from '../../client/src/transform/send-key-slot.ts';
import { ReceiveKeyRings, type OpenResult, type ReceiveKeyRingOptions } from '../../client/src/e2ee/receive-rings.ts';
import { currentRoomCode, type AlertReason, type MembershipEffect } from '../../client/src/e2ee/membership.ts';
import { decodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { DEFAULT_SUITE, decodeHeader, encodeHeader, ratchetBaseKey } from '../../client/src/e2ee/sframe.ts';
import { open as sframeOpen } from './sframe-oneshot.ts';

export const ROOM = 'RoomRoomRoomRoomRoom00';
export const INVITE_SECRET = new Uint8Array(32).fill(42);
export const INVITE_KEYS: InviteKeys = deriveInviteKeysSync(INVITE_SECRET, ROOM);

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ------------------------------------------------------------------------------------------------
// Fake clock
// ------------------------------------------------------------------------------------------------

export class FakeClock {
  constructor(public now = 1_000_000) {}
  advance(ms: number): number {
    this.now += ms;
    return this.now;
  }
}

// ------------------------------------------------------------------------------------------------
// Relay packets and rules
// ------------------------------------------------------------------------------------------------

/** One relay delivery: a blob the server forwards to one recipient, with the sender the server asserts. */
export interface Packet {
  /** Serial number in the order members handed blobs to the relay (copies of a broadcast share it). */
  readonly id: number;
  readonly from: string;
  readonly to: string;
  /** The relay-framing bytes (relay-framing.ts). */
  readonly bytes: Uint8Array;
  /** Relay kind byte as a name ('announcement' | 'key-batch' | 'metadata'), or '?' if undecodable. */
  readonly kind: string;
  readonly sentAt: number;
  /** True if the relay made it up (inject / replay / rewrite). */
  readonly forged?: boolean;
}

/**
 * What a rule decides about a packet: pass it on, drop it, hold it (released later by `release`, i.e. delayed /
 * reordered), or replace it by any list of packets (rewrite, duplicate, re-address, re-attribute).
 */
export type Verdict = 'pass' | 'drop' | 'hold' | { replace: Packet[] };
export type Rule = (p: Packet, sim: Sim) => Verdict | undefined;

export function kindOf(bytes: Uint8Array): string {
  try {
    return decodeRelay(bytes).kind;
  } catch {
    return '?';
  }
}

/** Rewrites a copy of a message's bytes (the relay can change any byte of what it forwards). */
export function rewriteBlob(bytes: Uint8Array, f: (bytes: Uint8Array) => Uint8Array | void): Uint8Array {
  const b = bytes.slice();
  return f(b) ?? b;
}

// ------------------------------------------------------------------------------------------------
// Members
// ------------------------------------------------------------------------------------------------

export interface Alert {
  reason: AlertReason;
  memberId?: string;
  detail?: string;
}

export interface InstalledKey {
  from: string;
  senderIndex: number;
  kid: bigint;
  /** Copy of the installed base key (the agent wipes its own copy). */
  baseKey: Uint8Array;
  at: number;
}

export interface SimMember {
  readonly memberId: string;
  /** A raw identity: the tap tests look for its secret key's bytes in everything the server saw. */
  readonly identity: RawIdentity;
  readonly session: Session;
  readonly inviteKeys: InviteKeys;
  agent: KeyAgent;
  /** The member's transform-worker send slot, fed by the agent's `sendKeyChanged` exactly as in the app. */
  readonly send: SendKeySlot;
  readonly recv: ReceiveKeyRings;
  readonly alerts: Alert[];
  /** Every key installed by the key protocol (copies). */
  readonly installed: InstalledKey[];
  /** Every send key this member used (copies), in order. */
  readonly sendKeys: { kid: bigint; baseKey: Uint8Array; senderIndex: number }[];
  /** `sendKeyFailed` calls (the app then clears the worker's send key, as the sim does, and rejoins). */
  readonly sendFailures: SendKeyFailure[];
  /** Buffered frames released by key arrivals. */
  readonly released: OpenResult<undefined>[];
  readonly effects: MembershipEffect[];
  /** Set when the server says the member left (its objects stay for forensic tests). */
  gone: boolean;
}

export interface SimOptions {
  rotationMs?: number;
  /**
   * What the app does on `sender-index-changed` (a member's KID sender index moved): 'remove' (default) wipes the
   * receive ring of the old index, as the app must; 'ignore' keeps it (to show why the app must not).
   */
  onIndexChange?: 'remove' | 'ignore';
  ring?: Omit<ReceiveKeyRingOptions, 'sender'>;
}

export class Sim {
  readonly clock = new FakeClock();
  readonly members = new Map<string, SimMember>();
  /** The real roster (join order) the server keeps. */
  readonly roster: string[] = [];
  /** Everything members handed to the relay, in order, before any rule ran (the server-side tap). */
  readonly tap: Packet[] = [];
  /** Every packet actually delivered (after rules). */
  readonly delivered: Packet[] = [];
  /** Protected media frames the SFU forwarded (the server-side media tap). */
  readonly frameTap: { from: string; codec: MediaCodec; data: Uint8Array; at: number }[] = [];
  readonly rules: Rule[] = [];
  readonly held: Packet[] = [];
  /**
   * Lie about the roster: the member ids the server tells `joiner` were already in the room (default: the truth),
   * and who gets the broadcast copies of a member's blobs (default: everyone else in the real roster).
   */
  joinResponse: (joiner: string, truth: string[]) => string[] = (_j, t) => t;
  broadcastTargets: (from: string, truth: string[]) => string[] = (from, t) => t.filter((m) => m !== from);
  #queue: Packet[] = [];
  #nextId = 0;

  constructor(readonly opts: SimOptions = {}) {}

  get now(): number {
    return this.clock.now;
  }
  advance(ms: number): number {
    return this.clock.advance(ms);
  }

  /** Creates a member (identity + session for this room); `inviteKeys` default to the real invite. */
  async create(memberId: string, inviteKeys: InviteKeys = INVITE_KEYS, room = ROOM): Promise<SimMember> {
    const identity = rawIdentity();
    const session = await newSession(identity, room, memberId);
    const m: SimMember = {
      memberId,
      identity,
      session,
      inviteKeys,
      agent: undefined as unknown as KeyAgent,
      send: new SendKeySlot(),
      recv: new ReceiveKeyRings(this.opts.ring ?? {}),
      alerts: [],
      installed: [],
      sendKeys: [],
      sendFailures: [],
      released: [],
      effects: [],
      gone: false,
    };
    m.agent = new KeyAgent(
      { roomId: ROOM, memberId, inviteKeys, identity, session, ...(this.opts.rotationMs !== undefined ? { rotationMs: this.opts.rotationMs } : {}) },
      {
        send: (msg) => this.#submit(memberId, msg.to, msg.bytes),
        sendKeyChanged: (key: SendKeyInfo, senderIndex: number) => {
          m.sendKeys.push({ kid: key.kid, baseKey: key.baseKey.slice(), senderIndex });
          m.send.install({ senderIndex, generation: key.generation, step: key.step, kid: key.kid, baseKey: key.baseKey });
        },
        sendKeyFailed: (f) => {
          m.sendFailures.push(f);
          m.send.clear(); // key-bridge.ts: frames.clearSendKey()
        },
        installReceiveKey: async (from, senderIndex, u, t) => {
          m.installed.push({ from, senderIndex, kid: u.kid, baseKey: u.baseKey.slice(), at: t });
          m.released.push(...(await m.recv.addKey(u.kid, u.baseKey, t)));
        },
        onEffect: (e, state) => {
          m.effects.push(e);
          if (e.kind === 'alert') m.alerts.push({ reason: e.reason, ...(e.memberId !== undefined ? { memberId: e.memberId } : {}), ...(e.detail !== undefined ? { detail: e.detail } : {}) });
          // Admit verified members' sender indices so early frames are buffered, not dropped (keyring.ts advice).
          if (e.kind === 'roster-changed') for (const [id, idx] of state.senderIndices) if (id !== memberId) m.recv.ring(idx);
          if (e.kind === 'forget-member' && e.senderIndex !== undefined) m.recv.remove(e.senderIndex);
          if (e.kind === 'sender-index-changed' && (this.opts.onIndexChange ?? 'remove') === 'remove') m.recv.remove(e.from);
        },
      },
    );
    this.members.set(memberId, m);
    return m;
  }

  member(id: string): SimMember {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }

  // ---- relay ----

  #submit(from: string, to: string | undefined, bytes: Uint8Array): void {
    const id = this.#nextId++;
    const targets = to !== undefined ? [to] : this.broadcastTargets(from, this.roster.filter((x) => !this.members.get(x)?.gone));
    for (const t of targets) {
      const p: Packet = { id, from, to: t, bytes: bytes.slice(), kind: kindOf(bytes), sentAt: this.now };
      this.tap.push(p);
      this.#queue.push(p);
    }
  }

  /** Inject a forged packet (the server makes up a message, or replays a tapped one). */
  inject(p: Omit<Packet, 'id' | 'kind' | 'sentAt'> & Partial<Pick<Packet, 'sentAt'>>): void {
    this.#queue.push({ id: this.#nextId++, kind: kindOf(p.bytes), sentAt: this.now, ...p, forged: true });
  }

  /** Deliver queued packets (rules applied) until the queue is empty. */
  async pump(): Promise<void> {
    while (this.#queue.length) {
      const p = this.#queue.shift()!;
      let v: Verdict = 'pass';
      for (const r of this.rules) {
        const x = r(p, this);
        if (x !== undefined && x !== 'pass') {
          v = x;
          break;
        }
      }
      if (v === 'drop') continue;
      if (v === 'hold') {
        this.held.push(p);
        continue;
      }
      const out = v === 'pass' ? [p] : v.replace;
      for (const q of out) await this.deliver(q);
    }
  }

  /** Hand one packet to its recipient now, bypassing the rules. */
  async deliver(p: Packet): Promise<void> {
    const m = this.members.get(p.to);
    if (m === undefined || m.gone) return;
    this.delivered.push(p);
    await m.agent.relay(this.now, p.from, p.bytes);
  }

  /** Release held packets matching `pred` (default all), in the order given by `order` (default: as held). */
  async release(pred: (p: Packet) => boolean = () => true, order: (ps: Packet[]) => Packet[] = (ps) => ps): Promise<void> {
    const go = this.held.filter(pred);
    for (let i = this.held.length - 1; i >= 0; i--) if (pred(this.held[i]!)) this.held.splice(i, 1);
    for (const p of order(go)) await this.deliver(p);
    await this.pump();
  }

  // ---- roster (server events) ----

  /** A member joins: the server's join response (possibly a lie), the member's KeyAgent starts, relay pumped. */
  async join(memberId: string, inviteKeys: InviteKeys = INVITE_KEYS): Promise<SimMember> {
    const m = this.members.get(memberId) ?? (await this.create(memberId, inviteKeys));
    const truth = this.roster.filter((x) => !this.members.get(x)?.gone);
    this.roster.push(memberId);
    await m.agent.join(this.now, this.joinResponse(memberId, truth));
    await this.pump();
    return m;
  }

  /** A member leaves: the server tells `tell` (default everyone remaining) and the relay is pumped. */
  async leave(memberId: string, tell?: string[]): Promise<void> {
    const m = this.member(memberId);
    m.gone = true;
    const rest = this.roster.filter((x) => !this.members.get(x)?.gone);
    for (const id of tell ?? rest) await this.member(id).agent.memberLeft(this.now, memberId);
    await this.pump();
  }

  /** The server lies to `to` that `memberId` left. */
  async fakeLeave(memberId: string, to: string): Promise<void> {
    await this.member(to).agent.memberLeft(this.now, memberId);
    await this.pump();
  }

  async tickAll(): Promise<void> {
    for (const m of this.members.values()) if (!m.gone) await m.agent.tick(this.now);
    await this.pump();
  }

  /** A member hands the relay a message of its own (e.g. a sealed metadata blob framed with `encodeRelay`). */
  async send(from: string, bytes: Uint8Array, to?: string): Promise<void> {
    this.#submit(from, to, bytes);
    await this.pump();
  }

  // ---- media ----

  /** Protect a media frame with the member's current send key; the SFU taps it. */
  async sendFrame(from: string, frame: Uint8Array, codec: MediaCodec = 'vp8'): Promise<Uint8Array> {
    const m = this.member(from);
    if (m.send.key === null) throw new Error(`${from} has no send key`);
    const data = await protectFrame(m.send.key, codec, frame);
    this.frameTap.push({ from, codec, data: data.slice(), at: this.now });
    return data;
  }

  /** Receive a protected frame at `to` (never throws): the key ring's result. */
  receiveFrame(to: string, data: Uint8Array, codec: MediaCodec = 'vp8'): Promise<OpenResult<undefined>> {
    return unprotectFrame(this.member(to).recv, codec, data, this.now);
  }

  /** True if `to` opens `data` to exactly `frame`. */
  async reads(to: string, data: Uint8Array, frame: Uint8Array, codec: MediaCodec = 'vp8'): Promise<boolean> {
    const r = await this.receiveFrame(to, data.slice(), codec);
    const f = frameFromResult(r);
    return f !== undefined && hex(f) === hex(frame);
  }

  /** The member's room code (digits), or null while its round is pending. */
  roomCode(id: string): string | null {
    return currentRoomCode(this.member(id).agent.state)?.digits ?? null;
  }

  /** The member's room code (digits); throws while its round is pending. */
  code(id: string): string {
    const c = this.roomCode(id);
    if (c === null) throw new Error(`${id}: room code pending`);
    return c;
  }
}

// ------------------------------------------------------------------------------------------------
// Frames and key material helpers
// ------------------------------------------------------------------------------------------------

let frameNo = 0;
/** A synthetic VP8 frame (key frame: bit 0 of byte 0 clear, start code, dimensions) with a unique payload. */
export function vp8Frame(key = true, len = 120): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 31 + frameNo * 7) & 0xff;
  f[0] = key ? 0x10 : 0x11;
  if (key) f.set([0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01], 3);
  const n = frameNo++;
  f[len - 4] = n >>> 24;
  f[len - 3] = (n >>> 16) & 0xff;
  f[len - 2] = (n >>> 8) & 0xff;
  f[len - 1] = n & 0xff;
  return f;
}

/** Every base key a member ever held: installed receive keys, its own send keys, and `ratchets` forward ratchets of each. */
export function keysHeldBy(m: SimMember, ratchets = 16): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  const push = (k: Uint8Array): void => {
    const h = hex(k);
    if (!seen.has(h)) {
      seen.add(h);
      out.push(k);
    }
  };
  for (const base of [...m.installed.map((i) => i.baseKey), ...m.sendKeys.map((s) => s.baseKey)]) {
    let k = base;
    push(k);
    for (let i = 0; i < ratchets; i++) push((k = ratchetBaseKey(DEFAULT_SUITE, k)));
  }
  return out;
}

/**
 * Tries every key on a protected frame (as the one-shot RFC 9605 `open`, deriving (key, salt) for the frame's own KID,
 * and for every KID in `kids`): returns the number of keys that open it.
 */
export async function bruteOpen(data: Uint8Array, keys: Uint8Array[], codec: MediaCodec = 'vp8', kids: bigint[] = []): Promise<number> {
  const { prefix, sframe } = splitProtected(codec, data);
  let opened = 0;
  const h = decodeHeader(sframe);
  const variants: Uint8Array[] = [sframe];
  for (const kid of kids) {
    if (kid === h.kid) continue;
    const nh = encodeHeader(kid, h.ctr);
    const v = new Uint8Array(nh.length + sframe.length - h.length);
    v.set(nh, 0);
    v.set(sframe.subarray(h.length), nh.length);
    variants.push(v);
  }
  for (const k of keys) {
    for (const v of variants) {
      try {
        await sframeOpen(DEFAULT_SUITE, k, prefix, v);
        opened++;
      } catch {
        /* expected */
      }
    }
  }
  return opened;
}

export { hex };
