/**
 * Cluster-wide per-address counts for AddressLimits (limits.ts `cluster` option). Keys (prefix `sm:`):
 *
 *   sm:addrkey           32 random bytes (hex), stored once (`SET NX` in a script): the cluster's address-hash key
 *   sm:addr:<nodeId>     HASH <address hash> → "<sockets>.<rooms>", PX lease: a node's current counts
 *
 * An address hash is HMAC-SHA-256(addrkey, "sealed-meet/address\0" + address), first 128 bits, base64url: Redis
 * never holds a client address. What this protects against, and what not: the key is in the same Redis, so someone
 * who can read Redis can test guessed addresses against the hashes (all of IPv4 is cheap to try); the hashing keeps
 * addresses out of dumps, keys and `MONITOR`-style logs in plain form, and the counts live only a lease.
 *
 * Every `intervalMs` (1 s) a node rewrites its hash (DEL + HSET + PEXPIRE in MULTI) and reads the other listed nodes'
 * (sm:nodes, kept by the directory). Checks add the sum of the others' last read counts (eventually consistent, see
 * limits.ts). After a Redis restart (addrkey gone) the first node to publish stores the key it already had, so the
 * cluster keeps one key; a node whose key differs from the stored one adopts the stored one. When Redis cannot be
 * read for longer than a lease, the others' counts are dropped: each node then limits by its own counts only.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { errorMessage, type Logger } from '../../../sfu/src/Logger.ts';
import type { AddressCounts, SharedAddressCounts } from '../limits.ts';
import { NODES_KEY } from './directory.ts';
import { isReady } from './redis.ts';
import { scriptsOn, type ScriptRunner } from './scripts.ts';

export const ADDR_KEY = 'sm:addrkey';
export const addrCountsKey = (nodeId: string): string => `sm:addr:${nodeId}`;

export interface ClusterAddressCountsOptions {
  redis: Redis;
  nodeId: string;
  /** Node lease in ms (CLUSTER_LEASE): how long a published count lives. */
  leaseMs?: number;
  /** Publish + read period (default 1000 ms). */
  intervalMs?: number;
  logger: Logger;
}

const ZERO: AddressCounts = Object.freeze({ sockets: 0, rooms: 0 });

export class ClusterAddressCounts implements SharedAddressCounts {
  readonly #redis: Redis;
  readonly #run: ScriptRunner;
  readonly #nodeId: string;
  readonly #leaseMs: number;
  readonly #log: Logger;
  #key: Buffer;
  #local: () => ReadonlyMap<string, AddressCounts> = () => new Map();
  /** address hash → the other nodes' summed counts, as last read. */
  #others = new Map<string, AddressCounts>();
  #readAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  #warned = false;

  private constructor(opts: ClusterAddressCountsOptions, key: Buffer) {
    this.#redis = opts.redis;
    this.#run = scriptsOn(opts.redis);
    this.#nodeId = opts.nodeId;
    this.#leaseMs = opts.leaseMs ?? 5000;
    this.#log = opts.logger.child('address-counts');
    this.#key = key;
  }

  static async start(opts: ClusterAddressCountsOptions): Promise<ClusterAddressCounts> {
    const mine = randomBytes(32).toString('hex');
    const stored = String(await scriptsOn(opts.redis)('smOnce', [ADDR_KEY], [mine]));
    const counts = new ClusterAddressCounts(opts, Buffer.from(stored, 'hex'));
    await counts.refresh();
    counts.#timer = setInterval(() => void counts.refresh(), opts.intervalMs ?? 1000);
    counts.#timer.unref();
    return counts;
  }

  /** The keyed hash an address is published under. */
  hashOf(address: string): string {
    return createHmac('sha256', this.#key).update(`sealed-meet/address\0${address}`, 'utf8').digest().subarray(0, 16).toString('base64url');
  }

  others(address: string): AddressCounts {
    if (this.#others.size === 0) return ZERO;
    if (Date.now() - this.#readAt > this.#leaseMs) {
      this.#others = new Map();
      return ZERO;
    }
    return this.#others.get(this.hashOf(address)) ?? ZERO;
  }

  publishFrom(local: () => ReadonlyMap<string, AddressCounts>): void {
    this.#local = local;
  }

  /** One publish + read round (the timer's; tests call it to skip the wait). */
  refresh(): Promise<void> {
    if (this.#closed || !isReady(this.#redis)) return Promise.resolve();
    this.#running ??= this.#round()
      .catch((err: unknown) => {
        if (!this.#warned) this.#log.warn('publishing address counts failed', { error: errorMessage(err) });
        this.#warned = true;
      })
      .finally(() => (this.#running = undefined));
    return this.#running;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
    if (isReady(this.#redis)) await this.#redis.del(addrCountsKey(this.#nodeId)).catch(() => undefined);
  }

  async #round(): Promise<void> {
    const fields: string[] = [];
    for (const [address, c] of this.#local()) {
      if (c.sockets > 0 || c.rooms > 0) fields.push(this.hashOf(address), `${c.sockets}.${c.rooms}`);
    }
    const mine = addrCountsKey(this.#nodeId);
    const tx = this.#redis.multi().del(mine);
    if (fields.length > 0) tx.hset(mine, ...fields).pexpire(mine, this.#leaseMs);
    const [stored, , nodes] = await Promise.all([
      this.#run('smOnce', [ADDR_KEY], [this.#key.toString('hex')]),
      tx.exec(),
      this.#redis.zrange(NODES_KEY, 0, -1),
    ]);
    if (stored !== this.#key.toString('hex')) {
      this.#log.info('adopted the cluster address-hash key stored in redis');
      this.#key = Buffer.from(String(stored), 'hex');
    }
    const others = nodes.filter((n) => n !== this.#nodeId);
    const read = this.#redis.pipeline();
    for (const n of others) read.hgetall(addrCountsKey(n));
    const replies = others.length > 0 ? ((await read.exec()) ?? []) : [];
    const sum = new Map<string, AddressCounts>();
    for (const [err, hash] of replies) {
      if (err || !hash) continue;
      for (const [h, v] of Object.entries(hash as Record<string, string>)) {
        const [s, r] = v.split('.').map(Number);
        const prev = sum.get(h) ?? { sockets: 0, rooms: 0 };
        sum.set(h, { sockets: prev.sockets + (s || 0), rooms: prev.rooms + (r || 0) });
      }
    }
    this.#others = sum;
    this.#readAt = Date.now();
    this.#warned = false;
  }
}
