/**
 * The cluster's Lua scripts (room directory, address-count key) (run atomically by Redis; ioredis `defineCommand` sends EVALSHA and falls back to
 * EVAL after NOSCRIPT, e.g. after a Redis restart emptied the script cache). Standalone Redis only: the scripts touch
 * keys they compute (a node's lease key from a room's home), which Redis Cluster would refuse.
 *
 * Times come from Redis (`TIME`), never from a node's clock, so nodes with skewed clocks agree on the hold.
 */
import type { ChainableCommander, Redis } from 'ioredis';

/** Redis time in ms, in Lua. */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** The ms left of the hold of epoch `e` ("<random>:<born ms>") for a lease of `lease` ms (<= 0: no hold). */
const HOLD = `local function hold(e, lease) return tonumber(string.match(e, ':(%d+)$')) + lease - now end`;

export const SCRIPTS = {
  /**
   * KEYS: epoch. ARGV: random. The data epoch: created (with Redis time) when the key is missing, i.e. on a fresh or
   * restarted Redis. Returns the epoch.
   */
  smEpoch: {
    numberOfKeys: 1,
    lua: `${NOW}
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1] .. ':' .. now; redis.call('SET', KEYS[1], e) end
return e`,
  },
  /**
   * KEYS: room, epoch, nodes. ARGV: me, node key prefix, grace ms, lease ms, my epoch, my incarnation.
   * {'home', home, tok}: a live node hosts the room. {'epoch'}: the epoch is not mine (Redis lost its data since I
   * last looked). {'hold', ms}: no live home, but the epoch is younger than a lease (homes may not have re-registered
   * yet). {'claimed', me, tok}: I am the home now (the token hash, if any, kept).
   */
  smClaim: {
    numberOfKeys: 3,
    lua: `${NOW}
${HOLD}
local home = redis.call('HGET', KEYS[1], 'home')
local tok = redis.call('HGET', KEYS[1], 'tok') or ''
if home and redis.call('EXISTS', ARGV[2] .. home) == 1 then return {'home', home, tok} end
local e = redis.call('GET', KEYS[2])
if e ~= ARGV[5] then return {'epoch'} end
local wait = hold(e, tonumber(ARGV[4]))
if wait > 0 then return {'hold', tostring(wait)} end
redis.call('HSET', KEYS[1], 'home', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', ARGV[2] .. ARGV[1], ARGV[6], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return {'claimed', ARGV[1], tok}`,
  },
  /**
   * KEYS: room. ARGV: me, node key prefix, grace ms, token hash (hex). I host the room: home := me unless another live
   * node is its home; the stored token hash is kept (the given one only fills a missing one). Returns {home, tok}.
   */
  smHost: {
    numberOfKeys: 1,
    lua: `local home = redis.call('HGET', KEYS[1], 'home')
if home and home ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. home) == 1 then
  return {home, redis.call('HGET', KEYS[1], 'tok') or ''}
end
redis.call('HSET', KEYS[1], 'home', ARGV[1])
redis.call('HSETNX', KEYS[1], 'tok', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ARGV[1], redis.call('HGET', KEYS[1], 'tok')}`,
  },
  /** KEYS: room. ARGV: me, grace ms. The room closed here: no home, the token hash kept for the grace period. */
  smRelease: {
    numberOfKeys: 1,
    lua: `if redis.call('HGET', KEYS[1], 'home') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'home')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`,
  },
  /**
   * KEYS: node key, nodes. ARGV: me, lease ms, my incarnation (random per process). Renews my lease (its value: the
   * incarnation, so a node restarted under the same NODE_ID within a lease is told apart) and my place in the node
   * list (score: Redis time).
   */
  smLease: {
    numberOfKeys: 2,
    lua: `${NOW}
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1`,
  },
  /**
   * KEYS: epoch, nodes. ARGV: node key prefix, lease ms, forget ms, me, other known ids...
   * Drops nodes not renewed for `forget` ms from the list; returns {epoch, hold ms, id1, incarnation1, id2, ...} over
   * the listed and the known nodes (me excluded); incarnation '' = no lease.
   */
  smPoll: {
    numberOfKeys: 2,
    lua: `${NOW}
${HOLD}
local e = redis.call('GET', KEYS[1]) or ''
local wait = 0
if e ~= '' then wait = hold(e, tonumber(ARGV[2])) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local ids, seen = {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do ids[#ids + 1] = id end
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
local out = {e, tostring(wait)}
for _, id in ipairs(ids) do
  if id ~= ARGV[4] and not seen[id] then
    seen[id] = true
    out[#out + 1] = id
    out[#out + 1] = redis.call('GET', ARGV[1] .. id) or ''
  end
end
return out`,
  },
  /** KEYS: key. ARGV: value. The stored value; `value` is stored first when there is none (SET NX + GET in one). */
  smOnce: {
    numberOfKeys: 1,
    lua: `local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1]); v = ARGV[1] end
return v`,
  },
} as const;

export type ScriptName = keyof typeof SCRIPTS;
export type ScriptRunner = (name: ScriptName, keys: string[], args: (string | number)[]) => Promise<unknown>;

/** Defines the scripts on `redis` (idempotent) and returns a typed way to run them. */
export function scriptsOn(redis: Redis): ScriptRunner {
  for (const [name, def] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, def);
  }
  const commands = redis as unknown as Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;
  return (name, keys, args) => commands[name](...keys, ...args);
}

/** The scripts (defined on its client by `scriptsOn`) queued on a pipeline or MULTI. */
export function queued(pipe: ChainableCommander): (name: ScriptName, keys: string[], args: (string | number)[]) => void {
  const commands = pipe as unknown as Record<ScriptName, (...args: (string | number)[]) => unknown>;
  return (name, keys, args) => void commands[name](...keys, ...args);
}
