/**
 * The room directory of a cluster (LiveKit's model: a room is pinned to one node, its "home"; any node accepts
 * sockets and forwards a member's requests to the home). Redis holds, per room, the home and the room's token
 * hash; per node, a lease. Key layout (prefix `sm:`, see docs/protocol.md):
 *
 *   sm:epoch                "<16 hex>:<Redis ms>"  the data epoch, made by the first node that finds it missing
 *   sm:node:<nodeId>        <16 hex>, PX lease     a node's lease (value: its incarnation, random per process), renewed every lease/3
 *   sm:nodes                ZSET nodeId → Redis ms of its last renewal (a node unseen for the grace period is dropped)
 *   sm:room:<32 hex>        HASH {home, tok}        home = node id; tok = hex SHA-256 of the room's access token;
 *                                                   PEXPIRE grace, renewed by its home with its lease
 *
 * The room key is SHA-256("sealed-meet/room\0" + roomId), first 128 bits, hex: the room id (which is in the invite
 * URL) is not in Redis. Unkeyed on purpose: room ids are 128 random bits from the client, so the hash cannot be
 * reversed by guessing, and a keyed hash would need a secret every node shares (more config for no gain).
 *
 * Rules:
 * - `locate()` answers the home when its lease is alive; otherwise it claims the room for this node (one Lua script:
 *   "me, if no home or its lease is gone", keeping the stored token hash). Two nodes racing: one wins, the other
 *   gets the winner.
 * - `hosted()` (the room was created here) writes home and, if none is stored yet, the token hash; the home renews
 *   the entry every lease/3. The entry lives `graceMs` (default 60 s) past the last renewal, so after a node loss
 *   its token hash outlives the home's lease: whoever re-creates the room elsewhere gets it (a wrong token is not let
 *   in through the re-created room).
 * - `released()` (the room closed here) removes the home but keeps the token hash for the grace period, so the
 *   first wrong-token joiner after a failover cannot reset it by making the re-created room close empty.
 * - After a Redis restart (empty data) every node re-registers its lease and its rooms at once (on reconnect) and on
 *   every renewal. Claims are held for one lease after the data epoch was born (Redis time): a node must not claim a
 *   room whose home has not re-registered yet. Reconnect backoff is capped at 1 s (redis.ts), so every live home is
 *   back well inside the hold. The epoch check is inside the claim script, so a claim queued during the outage
 *   cannot slip through on reconnect. A fresh Redis holds the same way (the first room of a new cluster waits a
 *   lease).
 * - `onNodeLost` is polled every lease/3: a listed or seen node whose lease key is gone, reported once, never
 *   during the hold (after a Redis restart every lease is briefly missing). A node restarted under the same NODE_ID
 *   before its lease ran out is reported too: its lease holds another incarnation (the rooms it had are gone).
 * - A Redis outage: renewals are skipped while the client is not ready; `locate()` waits up to `locateTimeoutMs`
 *   and then fails UNAVAILABLE (clients retry the join). A node cut off from Redis for longer than a lease loses its
 *   lease: its rooms may be claimed elsewhere (its /readyz is 503 meanwhile, see main.ts); when it is back, its
 *   renewals find the new home and it logs a warning instead of taking the room back.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../../../sfu/src/Logger.ts';
import { SfuError } from '../../../sfu/src/SfuError.ts';
import { isReady, whenReady } from './redis.ts';
import { queued, scriptsOn, type ScriptRunner } from './scripts.ts';

export interface RoomLocation {
  home: string;
  tokenHash: Buffer | undefined;
}

export interface RoomDirectoryOptions {
  redis: Redis;
  nodeId: string;
  /** Node lease in ms (CLUSTER_LEASE; default 5000). */
  leaseMs?: number;
  logger: Logger;
  /** How long a room entry outlives its last renewal or its release (default 60 s; at least two leases). */
  graceMs?: number;
  /** How long locate() may wait for Redis or a hold before failing UNAVAILABLE (default 2 leases + 2 s). */
  locateTimeoutMs?: number;
  /** How long start() waits for Redis (default 10 s). */
  startTimeoutMs?: number;
}

const PREFIX = 'sm:';
const EPOCH_KEY = `${PREFIX}epoch`;
const NODES_KEY = `${PREFIX}nodes`;
const NODE_PREFIX = `${PREFIX}node:`;

/** The directory key of a room: no room id in Redis. */
export function roomKey(roomId: string): string {
  return `${PREFIX}room:${createHash('sha256').update(`sealed-meet/room\0${roomId}`, 'utf8').digest('hex').slice(0, 32)}`;
}

export const nodeKey = (nodeId: string): string => `${NODE_PREFIX}${nodeId}`;
export { NODES_KEY };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const tokenOf = (hex: unknown): Buffer | undefined => (typeof hex === 'string' && /^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, 'hex') : undefined);

export class RoomDirectory {
  readonly nodeId: string;
  readonly #redis: Redis;
  readonly #run: ScriptRunner;
  readonly #log: Logger;
  readonly #leaseMs: number;
  readonly #graceMs: number;
  readonly #locateTimeoutMs: number;
  /** Rooms hosted here: room id → token hash (hex), renewed with the lease. */
  readonly #hosted = new Map<string, string>();
  /** Rooms whose entry names another live home although hosted here (warned once). */
  readonly #conflicts = new Set<string>();
  /** Nodes seen alive (in locate() answers or in the node list) → their incarnation ('' = not known yet). */
  readonly #seen = new Map<string, string>();
  /** This process's incarnation: the value of its lease key. */
  readonly #incarnation = randomBytes(8).toString('hex');
  readonly #lostListeners = new Set<(nodeId: string) => void>();
  readonly #timers: NodeJS.Timeout[] = [];
  #epoch = '';
  #closed = false;
  #renewing: Promise<void> | undefined;
  readonly #onReady = (): void => void this.#renew();

  private constructor(opts: RoomDirectoryOptions) {
    this.nodeId = opts.nodeId;
    this.#redis = opts.redis;
    this.#run = scriptsOn(opts.redis);
    this.#log = opts.logger.child('directory');
    this.#leaseMs = opts.leaseMs ?? 5000;
    this.#graceMs = Math.max(opts.graceMs ?? 60_000, 2 * this.#leaseMs);
    this.#locateTimeoutMs = opts.locateTimeoutMs ?? 2 * this.#leaseMs + 2000;
  }

  static async start(opts: RoomDirectoryOptions): Promise<RoomDirectory> {
    const dir = new RoomDirectory(opts);
    await whenReady(opts.redis, opts.startTimeoutMs ?? 10_000).catch(() => {
      throw new Error('cluster mode: Redis (REDIS_URL) is not reachable');
    });
    dir.#epoch = String(await dir.#run('smEpoch', [EPOCH_KEY], [randomBytes(8).toString('hex')]));
    await dir.#renew();
    await dir.#poll();
    const every = Math.max(200, Math.floor(dir.#leaseMs / 3));
    dir.#timers.push(setInterval(() => void dir.#renew(), every), setInterval(() => void dir.#poll(), every));
    for (const t of dir.#timers) t.unref();
    // After a reconnect (maybe to an emptied Redis): re-register at once rather than at the next tick.
    opts.redis.on('ready', dir.#onReady);
    return dir;
  }

  /** The live home of `roomId`; claims the room for this node when no live node hosts it. */
  async locate(roomId: string): Promise<RoomLocation> {
    this.#assertOpen();
    const deadline = Date.now() + this.#locateTimeoutMs;
    const unavailable = (): SfuError => new SfuError('UNAVAILABLE', 'the room directory is unreachable; try again');
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw unavailable();
      // Not while disconnected: a claim must not wait in the offline queue to run before the epoch is re-read.
      await whenReady(this.#redis, left).catch(() => {
        throw unavailable();
      });
      const reply = (await this.#run('smClaim', [roomKey(roomId), EPOCH_KEY, NODES_KEY], [this.nodeId, NODE_PREFIX, this.#graceMs, this.#leaseMs, this.#epoch, this.#incarnation]).catch(
        () => null,
      )) as string[] | null;
      if (reply === null) continue;
      const [kind, a, tok] = reply;
      if (kind === 'home' || kind === 'claimed') {
        if (kind === 'claimed') this.#log.debug('room claimed', { roomId });
        if (a !== this.nodeId && !this.#seen.has(a!)) this.#seen.set(a!, '');
        return { home: a!, tokenHash: tokenOf(tok) };
      }
      if (kind === 'epoch') {
        await this.#refreshEpoch();
      } else {
        // 'hold': wait it out (bounded by the deadline), then look again.
        await sleep(Math.min(Math.max(Number(a) || 0, 20), Math.max(0, deadline - Date.now())));
      }
    }
  }

  /** This node created the room: it is the home (renewed with the lease); the stored token hash, if any, is kept. */
  async hosted(roomId: string, tokenHash: Buffer): Promise<void> {
    this.#assertOpen();
    const hex = tokenHash.toString('hex');
    this.#hosted.set(roomId, hex);
    const [home, stored] = (await this.#run('smHost', [roomKey(roomId)], [this.nodeId, NODE_PREFIX, this.#graceMs, hex])) as string[];
    this.#check(roomId, home!, stored);
  }

  /** The room closed here: no home any more; its token hash stays for the grace period. */
  async released(roomId: string): Promise<void> {
    this.#hosted.delete(roomId);
    this.#conflicts.delete(roomId);
    if (this.#closed) return;
    await this.#run('smRelease', [roomKey(roomId)], [this.nodeId, this.#graceMs]);
  }

  async isAlive(nodeId: string): Promise<boolean> {
    if (nodeId === this.nodeId) return !this.#closed;
    return (await this.#redis.exists(nodeKey(nodeId))) === 1;
  }

  /** `fn(nodeId)` when a node's lease expired (polled every lease/3). Returns the unsubscribe. */
  onNodeLost(fn: (nodeId: string) => void): () => void {
    this.#lostListeners.add(fn);
    return () => void this.#lostListeners.delete(fn);
  }

  /** Stops renewing, releases the rooms still hosted and drops this node's lease (others see it gone at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#redis.off('ready', this.#onReady);
    await this.#renewing;
    if (!isReady(this.#redis)) return;
    const pipe = this.#redis.pipeline();
    const run = queued(pipe);
    for (const roomId of this.#hosted.keys()) run('smRelease', [roomKey(roomId)], [this.nodeId, this.#graceMs]);
    pipe.del(nodeKey(this.nodeId)).zrem(NODES_KEY, this.nodeId);
    await pipe.exec().catch(() => undefined);
    this.#hosted.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'server shutting down');
  }

  async #refreshEpoch(): Promise<void> {
    const before = this.#epoch;
    this.#epoch = String(await this.#run('smEpoch', [EPOCH_KEY], [randomBytes(8).toString('hex')]));
    if (before !== this.#epoch) {
      this.#log.warn('redis lost its data (restart?): claims held for one lease while nodes re-register', { ms: this.#leaseMs });
      void this.#renew();
    }
  }

  #check(roomId: string, home: string, stored: string | undefined): void {
    if (home !== this.nodeId) {
      if (!this.#conflicts.has(roomId)) this.#log.warn('room hosted here has another live home in the directory', { roomId });
      this.#conflicts.add(roomId);
    } else if (stored !== undefined && stored !== this.#hosted.get(roomId)) {
      this.#log.warn('room hosted here with a token hash other than the directory keeps', { roomId });
    }
  }

  /** Lease and every hosted room, in one pipeline; skipped while Redis is not reachable (nothing piles up). */
  #renew(): Promise<void> {
    if (this.#closed || this.#renewing || !isReady(this.#redis)) return this.#renewing ?? Promise.resolve();
    this.#renewing = (async () => {
      const rooms = [...this.#hosted];
      const pipe = this.#redis.pipeline();
      const run = queued(pipe);
      run('smLease', [nodeKey(this.nodeId), NODES_KEY], [this.nodeId, this.#leaseMs, this.#incarnation]);
      for (const [roomId, hex] of rooms) run('smHost', [roomKey(roomId)], [this.nodeId, NODE_PREFIX, this.#graceMs, hex]);
      const results = (await pipe.exec().catch(() => null)) ?? [];
      rooms.forEach(([roomId], i) => {
        const [err, reply] = results[i + 1] ?? [null, null];
        if (!err && Array.isArray(reply) && this.#hosted.has(roomId)) this.#check(roomId, String(reply[0]), reply[1] as string | undefined);
      });
    })().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  #reportLost(id: string): void {
    this.#log.info('node lost (lease expired or node restarted)', { event: id });
    for (const fn of [...this.#lostListeners]) {
      try {
        fn(id);
      } catch (err) {
        this.#log.error('node-lost listener threw', { error: String(err) });
      }
    }
  }

  async #poll(): Promise<void> {
    if (this.#closed || !isReady(this.#redis)) return;
    const reply = (await this.#run('smPoll', [EPOCH_KEY, NODES_KEY], [NODE_PREFIX, this.#leaseMs, this.#graceMs, this.nodeId, ...this.#seen.keys()]).catch(
      () => null,
    )) as (string | number)[] | null;
    if (!reply || this.#closed) return;
    const [epoch, wait, ...pairs] = reply;
    if (epoch !== this.#epoch) {
      await this.#refreshEpoch().catch(() => undefined);
      return;
    }
    // During the hold every lease may be missing because Redis just lost them: report nothing.
    if (Number(wait) > 0) return;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const id = String(pairs[i]);
      const incarnation = String(pairs[i + 1]);
      const known = this.#seen.get(id);
      // Gone, or alive as another process than the one seen before (restarted under the same NODE_ID).
      const lost = known !== undefined && (incarnation === '' || (known !== '' && known !== incarnation));
      if (incarnation === '') this.#seen.delete(id);
      else this.#seen.set(id, incarnation);
      if (lost) this.#reportLost(id);
    }
  }
}
