/**
 * Per client address and per room quotas (issue 13 §8), so one member or one host cannot make the server do
 * unbounded work for it:
 *
 * - `AddressLimits`: at most `maxSockets` open socket.io connections and `maxRooms` distinct rooms joined at the
 *   same time per client address. The address is the TCP peer, or with `trustProxy` the right-most
 *   `X-Forwarded-For` entry (the one the reverse proxy in front of us appended). IPv6 addresses count per /64 (one
 *   host usually holds a whole /64), IPv4-mapped IPv6 as the IPv4 address.
 * - `RelayBudget`: a byte token bucket per room on relay fan-out, the bytes the server SENDS (blob length × number
 *   of recipients): a broadcast in a full room costs `ROOM_CAP - 1` times a unicast.
 *
 * Addresses live only in these in-memory maps, keyed by the normalized address: they are never logged, never put
 * in a metric and never leave the process as they are. A refusal changes nothing (no token taken, nothing counted).
 *
 * Cluster mode (`cluster` option, signaling/src/cluster/address-counts.ts): each node publishes its counts per
 * address to Redis under a keyed hash of the address (never the address), and a check adds the other live nodes'
 * last published counts to this node's own. The API stays synchronous: the others' counts are refreshed in the
 * background about every second, so the limits hold cluster-wide up to that delay (eventually consistent: a burst
 * spread over several nodes within a second can pass by up to a second's worth). A room joined from one address
 * through two nodes counts once per node.
 */
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import ipaddr from 'ipaddr.js';
import { TokenBucket } from './RateLimiter.ts';

export interface AddressLimitOptions {
  /** Open socket.io connections per client address. */
  maxSockets: number;
  /** Distinct rooms joined at the same time per client address (several sockets in one room count once). */
  maxRooms: number;
  /** Take the client address from the right-most X-Forwarded-For entry (only behind a reverse proxy that sets it). */
  trustProxy: boolean;
  /** Cluster mode: the other nodes' counts, added to this node's in every check. */
  cluster?: SharedAddressCounts;
}

/** What is counted per client address. */
export interface AddressCounts {
  sockets: number;
  rooms: number;
}

/** The other nodes' counts of a cluster, read synchronously (kept fresh in the background), and this node's published. */
export interface SharedAddressCounts {
  /** The other live nodes' last published counts for `address` (zeros when none). */
  others(address: string): AddressCounts;
  /** Where the publisher reads this node's own counts from. */
  publishFrom(local: () => ReadonlyMap<string, AddressCounts>): void;
}

export interface RelayBudgetOptions {
  /** Sustained relay fan-out per room, bytes per second. */
  bytesPerSec: number;
  /** Bucket size in bytes: the largest burst a room may send at once. */
  burstBytes: number;
}

/**
 * The key a client address is counted under: IPv4 as is, IPv4-mapped IPv6 as its IPv4, other IPv6 by its /64
 * prefix (ipaddr.js parses and normalizes). Not an IP address at all → the string itself (never reached with Node's
 * socket addresses).
 */
export function addressKey(address: string): string {
  const a = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (!ipaddr.isValid(a)) return a;
  const ip = ipaddr.process(a);
  if (ip.kind() === 'ipv4') return ip.toString();
  return `${(ip as ipaddr.IPv6).parts
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** The client address of an HTTP request (handshake or upgrade), as a counting key. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const header = req.headers['x-forwarded-for'];
    const entries = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((x) => x.trim());
    const last = entries[entries.length - 1];
    if (last && net.isIP(last.replace(/^\[|\]$/g, '')) !== 0) return addressKey(last);
  }
  return addressKey(req.socket.remoteAddress ?? 'unknown');
}

export class AddressLimits {
  readonly #opts: AddressLimitOptions;
  readonly #sockets = new Map<string, number>();
  /** address → room id → sockets of that address in the room. */
  readonly #rooms = new Map<string, Map<string, number>>();

  constructor(opts: AddressLimitOptions) {
    this.#opts = opts;
    opts.cluster?.publishFrom(() => this.counts());
  }

  /** This node's counts per address (what cluster mode publishes). */
  counts(): Map<string, AddressCounts> {
    const out = new Map<string, AddressCounts>();
    for (const [address, sockets] of this.#sockets) out.set(address, { sockets, rooms: 0 });
    for (const [address, rooms] of this.#rooms) out.set(address, { sockets: out.get(address)?.sockets ?? 0, rooms: rooms.size });
    return out;
  }

  #others(address: string): AddressCounts {
    return this.#opts.cluster?.others(address) ?? { sockets: 0, rooms: 0 };
  }

  addressOf(req: IncomingMessage): string {
    return clientAddress(req, this.#opts.trustProxy);
  }

  /** Whether one more connection from `address` would be allowed (the handshake check; nothing is counted). */
  canConnect(address: string): boolean {
    return (this.#sockets.get(address) ?? 0) + this.#others(address).sockets < this.#opts.maxSockets;
  }

  /** Counts an open connection; null (nothing counted) when the address already has `maxSockets`. */
  connect(address: string): (() => void) | null {
    const n = this.#sockets.get(address) ?? 0;
    if (n + this.#others(address).sockets >= this.#opts.maxSockets) return null;
    this.#sockets.set(address, n + 1);
    return once(() => decrement(this.#sockets, address));
  }

  /** Counts a socket of `address` in `roomId`; null (nothing counted) when that would be one room too many. */
  enterRoom(address: string, roomId: string): (() => void) | null {
    const rooms = this.#rooms.get(address) ?? new Map<string, number>();
    const n = rooms.get(roomId) ?? 0;
    if (n === 0 && rooms.size + this.#others(address).rooms >= this.#opts.maxRooms) return null;
    rooms.set(roomId, n + 1);
    this.#rooms.set(address, rooms);
    return once(() => {
      decrement(rooms, roomId);
      if (rooms.size === 0 && this.#rooms.get(address) === rooms) this.#rooms.delete(address);
    });
  }
}

/** Relay fan-out buckets, one per room (keyed by the Room object: a closed room's bucket goes with it). */
export class RelayBudget<R extends object> {
  readonly #opts: RelayBudgetOptions;
  readonly #buckets = new WeakMap<R, TokenBucket>();

  constructor(opts: RelayBudgetOptions) {
    this.#opts = opts;
  }

  /** Takes `bytes` from `room`'s bucket; false (nothing taken) when it does not hold that many. */
  take(room: R, bytes: number): boolean {
    let bucket = this.#buckets.get(room);
    if (!bucket) {
      bucket = new TokenBucket(this.#opts.bytesPerSec, this.#opts.burstBytes);
      this.#buckets.set(room, bucket);
    }
    return bucket.take(bytes);
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
