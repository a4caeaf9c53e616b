/**
 * Server configuration: read from the environment (`loadConfig(process.env)`) or given as an object
 * (`resolveConfig({ port: 0, ... })` for tests), validated with zod. Invalid configuration throws a
 * `ConfigError` that lists every problem; `main.ts` prints it and exits with status 1.
 *
 * | env | default | meaning |
 * | --- | --- | --- |
 * | PORT | 3000 | HTTP(S) port (0 = random) |
 * | HOST | localhost | bind host; localhost is bound as 127.0.0.1. Off localhost the server speaks HTTPS |
 * | LISTEN_IP | 127.0.0.1 local, else 0.0.0.0 | IP the mediasoup transports bind |
 * | ANNOUNCED_IP | 127.0.0.1 local, else first non-internal IPv4 (required if none) | IP in the ICE candidates |
 * | LOCAL_LAN_MEDIA | on | local HOST with loopback media only: also listen on and announce LOCAL_LAN_IP (UDP + TCP, same ports), since Firefox pairs no loopback ICE candidates. Exposes the media port (DTLS-SRTP + SFrame) on that network; signaling stays on 127.0.0.1. None found: a warning, and Firefox on localhost cannot connect (Chromium can) |
 * | LOCAL_LAN_IP | first non-internal IPv4 | with LOCAL_LAN_MEDIA: the address (of this machine, not loopback) |
 * | RTC_MODE | server | `server`: all media of a worker on one UDP + one TCP port (mediasoup WebRtcServer); `range`: one port per transport from RTC_MIN_PORT–RTC_MAX_PORT |
 * | RTC_PORT | 40000 | server mode: UDP and TCP port of the first worker, worker i uses RTC_PORT + i (0 = any free port in RTC_MIN_PORT–RTC_MAX_PORT) |
 * | RTC_MIN_PORT / RTC_MAX_PORT | 40000 / 49999 | range mode: mediasoup RTC port range (server mode with RTC_PORT=0: where the free port is picked) |
 * | TLS_CERT / TLS_KEY | - | PEM files; both or neither. Off localhost without them a self-signed cert is made |
 * | WORKERS | CPU count | mediasoup workers |
 * | ROOM_CAP | 50 | max peers per room |
 * | ROUTER_MAX_CONSUMERS | 800 | consumers per router (one room's part on one worker) before the room spreads to another worker (pipeToRouter). The capacity bench measured ~1,400–1,770 consumers per core without simulcast, NACK or ICE, so half of that leaves headroom |
 * | LOG_LEVEL | info | debug, info, warn, error, silent |
 * | TURN_URLS | - | comma-separated turn:/turns:/stun: URLs handed to joined clients, e.g. `turn:t.example.com:3478?transport=udp,turn:t.example.com:3478?transport=tcp,turns:t.example.com:443?transport=tcp` |
 * | TURN_SECRET | - | coturn `static-auth-secret` (`use-auth-secret`, TURN REST scheme; at least 16 characters, e.g. `openssl rand -hex 32`): each successful join gets its own credentials valid for TURN_TTL. Never sent to clients |
 * | TURN_TTL | 600 | seconds (60–3600) the TURN credentials of a join stay valid for new allocations (coturn checks expiry only when an allocation is made; running calls go on) |
 * | TURN_USERNAME / TURN_CREDENTIAL | - | static TURN credentials, for TURN servers without the shared-secret scheme (every member gets the same ones); not together with TURN_SECRET |
 * | ICE_TRANSPORT_POLICY | all | `relay`: clients send all media through TURN (join answer `iceTransportPolicy`; needs a turn:/turns: URL) |
 * | AUDIO_LEVEL_EXT | on (off with HIDE_VOICE_ACTIVITY) | off: the ssrc-audio-level RTP header extension is not negotiated (no speaker metadata in clear; no active-speaker events) |
 * | HIDE_VOICE_ACTIVITY | off | on: no audio-level extension, and clients send Opus without DTX at a constant bitrate, SFrame-padded to a fixed size (join answer `hideVoiceActivity`) |
 * | RATE_LIMIT_PER_SEC / RATE_LIMIT_BURST | 50 / 100 | per-socket token bucket for signaling events |
 * | RELAY_BYTES_PER_SEC / RELAY_BURST_BYTES | 4000000 / 32000000 | per-room token bucket on relay fan-out (blob bytes × recipients) |
 * | MAX_SOCKETS_PER_ADDRESS / MAX_ROOMS_PER_ADDRESS | 64 / 16 | open sockets / rooms joined at once per client address (IPv6: per /64) |
 * | TRUST_PROXY | off | on: the client address is the right-most X-Forwarded-For entry (only behind a proxy that sets it) |
 * | CLIENT_DIR | client/dist | static client files |
 * | ALLOWED_ORIGINS | - | extra browser origins allowed to open the socket (comma-separated, `*` = any); same-origin is always allowed |
 * | METRICS_LISTEN | off | `ip:port` (or `localhost:port`, `[v6]:port`) of a separate plain-HTTP listener for Prometheus `/metrics` (and `/healthz`, `/readyz`); never the public port. Labels name no room, peer or address |
 * | DRAIN_TIMEOUT | 30 | seconds SIGTERM waits for rooms to empty (new joins refused, clients told) before closing what is left; 0 = close at once |
 * | REDIS_URL | - | cluster mode: `redis://[user:password@]host:port[/db]` or `rediss://` (TLS) of the Redis that holds the room directory and carries socket.io events between nodes. Unset: one process, Redis never touched. Never logged or printed (it may hold a password) |
 * | NODE_ID | random per process (8 hex) | cluster mode: this node's name in the directory (1–40 of `A-Za-z0-9._-`); unique per node. Logged (names no person) |
 * | CLUSTER_LEASE | 5 | cluster mode: seconds (2–60) a node's lease in Redis lives without renewal (renewed every third of it): a dead node's rooms move after about this long |
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './paths.ts';
import { z } from 'zod';
import { LOG_LEVELS, type LogLevel } from './Logger.ts';

export class ConfigError extends Error {
  readonly issues: string[];
  constructor(issues: string[]) {
    super(`invalid configuration:\n  - ${issues.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface Config {
  port: number;
  /** The HOST as given. */
  host: string;
  /** The address the HTTP server binds (localhost → 127.0.0.1). */
  bindHost: string;
  /** HOST is localhost/127.0.0.1/::1: plain HTTP, loopback media. */
  isLocal: boolean;
  listenIp: string;
  announcedIp: string;
  /** LOCAL_LAN_MEDIA: on a local HOST, media also listens on and announces `localLanIp`. */
  localLanMedia: boolean;
  /** The non-loopback address media also uses on a local HOST (bound to itself); undefined when off, not local, or none found. */
  localLanIp: string | undefined;
  /** `server`: one WebRtcServer (one UDP + one TCP port) per worker; `range`: a port per transport. */
  rtcMode: RtcMode;
  /** server mode: port of worker 0 (worker i: rtcPort + i); 0 = any free port in rtcMinPort–rtcMaxPort. */
  rtcPort: number;
  rtcMinPort: number;
  rtcMaxPort: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  workers: number;
  roomCap: number;
  /** ROUTER_MAX_CONSUMERS: a room router's consumers before the room spreads to another worker. */
  routerMaxConsumers: number;
  logLevel: LogLevel;
  turnUrls: string[];
  /** TURN REST shared secret (coturn static-auth-secret): per-join credentials; never sent to clients. */
  turnSecret: string | undefined;
  /** Seconds a join's TURN credentials stay valid (TURN_SECRET scheme). */
  turnTtl: number;
  /** Static TURN credentials (TURN servers without the shared-secret scheme); never with turnSecret. */
  turnUsername: string | undefined;
  turnCredential: string | undefined;
  /** `relay`: clients use TURN relay candidates only. */
  iceTransportPolicy: IceTransportPolicy;
  audioLevelExt: boolean;
  /** Hide who speaks when: no audio-level extension; clients send constant-size audio (no DTX, CBR, padded). */
  hideVoiceActivity: boolean;
  rateLimitPerSec: number;
  rateLimitBurst: number;
  /** Per-room relay fan-out budget (bytes the server sends: blob length × recipients). */
  relayBytesPerSec: number;
  relayBurstBytes: number;
  maxSocketsPerAddress: number;
  maxRoomsPerAddress: number;
  trustProxy: boolean;
  clientDir: string;
  allowedOrigins: string[];
  /** METRICS_LISTEN: where the metrics listener binds; undefined = no metrics at all. */
  metricsListen: { host: string; port: number } | undefined;
  /** DRAIN_TIMEOUT: seconds a SIGTERM drain waits for rooms to empty. */
  drainTimeout: number;
  /** REDIS_URL: cluster mode when set (never log it: it may carry a password). */
  redisUrl: string | undefined;
  /** NODE_ID: this node's name in the room directory (random per process unless set). */
  nodeId: string;
  /** CLUSTER_LEASE: seconds a node lease lives without renewal. */
  clusterLease: number;
}

export const RTC_MODES = ['server', 'range'] as const;
export const ICE_TRANSPORT_POLICIES = ['all', 'relay'] as const;
export type IceTransportPolicy = (typeof ICE_TRANSPORT_POLICIES)[number];
export type RtcMode = (typeof RTC_MODES)[number];

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length || 1;
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.union([
  z.boolean(),
  z
    .string()
    .toLowerCase()
    .pipe(z.enum(['on', 'off', 'true', 'false', '1', '0', 'yes', 'no']))
    .transform((s) => s === 'on' || s === 'true' || s === '1' || s === 'yes'),
]);
const ip = z.string().refine((s) => net.isIP(s) !== 0, 'must be an IP address');
const list = z.union([
  z.array(z.string()),
  z.string().transform((s) =>
    s
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean),
  ),
]);

const Input = z.object({
  port: int(0, 65535).default(3000),
  host: z.string().min(1).default('localhost'),
  listenIp: ip.optional(),
  announcedIp: ip.optional(),
  localLanMedia: bool.default(true),
  localLanIp: ip.optional(),
  rtcMode: z.enum(RTC_MODES).default('server'),
  rtcPort: int(0, 65535)
    .refine((p) => p === 0 || p >= 1024, 'must be 0 (any free port) or 1024..65535')
    .default(40000),
  rtcMinPort: int(1024, 65535).default(40000),
  rtcMaxPort: int(1024, 65535).default(49999),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  workers: int(1, 64).optional(),
  roomCap: int(1, 1000).default(50),
  routerMaxConsumers: int(1, 100_000).default(800),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  turnUrls: list.default([]),
  // The credentials clients get are HMACs of this secret: a short one could be guessed offline from them.
  turnSecret: z.string().min(16, 'must be at least 16 characters (e.g. openssl rand -hex 32)').max(512).optional(),
  // Minutes, not days: coturn checks the expiry only when an allocation is made (a running call outlives it).
  turnTtl: int(60, 3600).default(600),
  turnUsername: z.string().min(1).max(512).optional(),
  turnCredential: z.string().min(1).max(512).optional(),
  iceTransportPolicy: z.enum(ICE_TRANSPORT_POLICIES).default('all'),
  audioLevelExt: bool.optional(),
  hideVoiceActivity: bool.default(false),
  rateLimitPerSec: int(1, 100_000).default(50),
  rateLimitBurst: int(1, 100_000).default(100),
  relayBytesPerSec: int(1, 1_000_000_000).default(4_000_000),
  // At least one maximal relay blob (65536 base64url chars) to one recipient, or such a relay could never pass.
  relayBurstBytes: int(65_536, 1_000_000_000).default(32_000_000),
  maxSocketsPerAddress: int(1, 1_000_000).default(64),
  maxRoomsPerAddress: int(1, 1_000_000).default(16),
  trustProxy: bool.default(false),
  clientDir: z.string().min(1).optional(),
  allowedOrigins: list.default([]),
  metricsListen: z.union([z.string(), z.object({ host: z.string(), port: z.number() })]).optional(),
  // 30 s: the default Kubernetes grace period and well inside systemd's 90 s stop timeout; calls go on meanwhile.
  drainTimeout: int(0, 3600).default(30),
  // The message never repeats the value: a Redis URL may carry a password.
  redisUrl: z.string().refine(isRedisUrl, 'must be a redis:// or rediss:// URL with a host (e.g. redis://127.0.0.1:6379)').optional(),
  nodeId: z.string().regex(/^[A-Za-z0-9._-]{1,40}$/, 'must be 1-40 characters of A-Z a-z 0-9 . _ -').optional(),
  clusterLease: int(2, 60).default(5),
});
export type ConfigInput = z.input<typeof Input>;

/** env var → config key. */
const ENV_KEYS: Record<string, keyof ConfigInput> = {
  PORT: 'port',
  HOST: 'host',
  LISTEN_IP: 'listenIp',
  ANNOUNCED_IP: 'announcedIp',
  LOCAL_LAN_MEDIA: 'localLanMedia',
  LOCAL_LAN_IP: 'localLanIp',
  RTC_MODE: 'rtcMode',
  RTC_PORT: 'rtcPort',
  RTC_MIN_PORT: 'rtcMinPort',
  RTC_MAX_PORT: 'rtcMaxPort',
  TLS_CERT: 'tlsCert',
  TLS_KEY: 'tlsKey',
  WORKERS: 'workers',
  ROOM_CAP: 'roomCap',
  ROUTER_MAX_CONSUMERS: 'routerMaxConsumers',
  LOG_LEVEL: 'logLevel',
  TURN_URLS: 'turnUrls',
  TURN_SECRET: 'turnSecret',
  TURN_TTL: 'turnTtl',
  TURN_USERNAME: 'turnUsername',
  TURN_CREDENTIAL: 'turnCredential',
  ICE_TRANSPORT_POLICY: 'iceTransportPolicy',
  AUDIO_LEVEL_EXT: 'audioLevelExt',
  HIDE_VOICE_ACTIVITY: 'hideVoiceActivity',
  RATE_LIMIT_PER_SEC: 'rateLimitPerSec',
  RATE_LIMIT_BURST: 'rateLimitBurst',
  RELAY_BYTES_PER_SEC: 'relayBytesPerSec',
  RELAY_BURST_BYTES: 'relayBurstBytes',
  MAX_SOCKETS_PER_ADDRESS: 'maxSocketsPerAddress',
  MAX_ROOMS_PER_ADDRESS: 'maxRoomsPerAddress',
  TRUST_PROXY: 'trustProxy',
  CLIENT_DIR: 'clientDir',
  ALLOWED_ORIGINS: 'allowedOrigins',
  METRICS_LISTEN: 'metricsListen',
  DRAIN_TIMEOUT: 'drainTimeout',
  REDIS_URL: 'redisUrl',
  NODE_ID: 'nodeId',
  CLUSTER_LEASE: 'clusterLease',
};

export function isLocalHost(host: string): boolean {
  return LOCAL_HOSTS.has(host.toLowerCase());
}

/** The first non-internal IPv4 address of this machine (`interfaces`: os.networkInterfaces()). */
export function firstExternalIPv4(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): string | undefined {
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return undefined;
}

/** Reads the configuration from environment variables (empty values count as unset). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, unknown> = {};
  for (const [envKey, key] of Object.entries(ENV_KEYS)) {
    const v = env[envKey];
    if (v !== undefined && v.trim() !== '') input[key] = v.trim();
  }
  return resolveConfig(input as ConfigInput, ENV_KEYS);
}

/** Validates a configuration object (missing keys take their defaults) and derives the rest. */
export function resolveConfig(input: ConfigInput | Config = {}, names?: Record<string, string>): Config {
  const envName = (key: string): string => {
    if (!names) return key;
    const hit = Object.entries(names).find(([, k]) => k === key);
    return hit ? hit[0] : key;
  };
  const parsed = Input.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${envName(String(i.path[0] ?? ''))}: ${i.message}`));
  }
  const c = parsed.data;
  const issues: string[] = [];
  const isLocal = isLocalHost(c.host);
  const bindHost = c.host.toLowerCase() === 'localhost' ? '127.0.0.1' : c.host.replace(/^\[(.*)\]$/, '$1');

  if (c.rtcMinPort >= c.rtcMaxPort) issues.push(`${envName('rtcMinPort')} must be below ${envName('rtcMaxPort')}`);
  const workers = c.workers ?? cpuCount();
  if (c.rtcMode === 'server' && c.rtcPort !== 0 && c.rtcPort + workers - 1 > 65535) {
    issues.push(`${envName('rtcPort')} + ${envName('workers')} - 1 must not exceed 65535 (one port per worker)`);
  }
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    issues.push(`${envName('tlsCert')} and ${envName('tlsKey')} must be given together`);
  }
  for (const url of c.turnUrls) {
    if (!/^(turns?|stuns?):[^\s]+$/.test(url)) issues.push(`${envName('turnUrls')}: "${url}" is not a turn:/turns:/stun: URL`);
  }
  for (const origin of c.allowedOrigins) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      issues.push(`${envName('allowedOrigins')}: "${origin}" is not an origin like https://host:port (or *)`);
    }
  }
  if (c.hideVoiceActivity && c.audioLevelExt === true) {
    issues.push(`${envName('audioLevelExt')}=on contradicts ${envName('hideVoiceActivity')}=on (audio levels show who speaks)`);
  }
  const hasTurn = c.turnUrls.some((u) => u.startsWith('turn'));
  const hasStatic = c.turnUsername !== undefined || c.turnCredential !== undefined;
  if (c.turnSecret !== undefined && hasStatic) {
    issues.push(`${envName('turnSecret')} and ${envName('turnUsername')}/${envName('turnCredential')} exclude each other (shared-secret or static TURN credentials)`);
  } else if (c.turnSecret !== undefined && !hasTurn) {
    issues.push(`${envName('turnSecret')} is set but ${envName('turnUrls')} has no turn:/turns: URL`);
  } else if (hasTurn && c.turnSecret === undefined && (c.turnUsername === undefined || c.turnCredential === undefined)) {
    issues.push(`${envName('turnUsername')} and ${envName('turnCredential')} are required with turn: URLs (or ${envName('turnSecret')})`);
  }
  if (c.iceTransportPolicy === 'relay' && !hasTurn) {
    issues.push(`${envName('iceTransportPolicy')}=relay needs a turn:/turns: URL in ${envName('turnUrls')} (clients could not connect)`);
  }

  const listenIp = c.listenIp ?? (isLocal ? '127.0.0.1' : '0.0.0.0');
  let announcedIp = c.announcedIp;
  if (announcedIp === undefined) {
    if (isLocal || (listenIp !== '0.0.0.0' && listenIp !== '::')) announcedIp = isLocal ? '127.0.0.1' : listenIp;
    else announcedIp = firstExternalIPv4();
  }
  if (announcedIp === undefined) {
    issues.push(`${envName('announcedIp')} is required: no non-internal IPv4 address was found to announce`);
  } else if (announcedIp === '0.0.0.0' || announcedIp === '::') {
    issues.push(`${envName('announcedIp')} must be a routable address, not ${announcedIp}`);
  }
  const metricsListen = resolveMetricsListen(c.metricsListen, c.port, envName, issues);
  const localLanIp = resolveLocalLanIp(c, { isLocal, listenIp, announcedIp }, envName, issues);
  if (issues.length > 0) throw new ConfigError(issues);

  return {
    port: c.port,
    host: c.host,
    bindHost,
    isLocal,
    listenIp,
    announcedIp: announcedIp as string,
    localLanMedia: c.localLanMedia,
    localLanIp,
    rtcMode: c.rtcMode,
    rtcPort: c.rtcPort,
    rtcMinPort: c.rtcMinPort,
    rtcMaxPort: c.rtcMaxPort,
    tlsCert: c.tlsCert,
    tlsKey: c.tlsKey,
    workers,
    roomCap: c.roomCap,
    routerMaxConsumers: c.routerMaxConsumers,
    logLevel: c.logLevel,
    turnUrls: c.turnUrls,
    turnSecret: c.turnSecret,
    turnTtl: c.turnTtl,
    turnUsername: c.turnUsername,
    turnCredential: c.turnCredential,
    iceTransportPolicy: c.iceTransportPolicy,
    audioLevelExt: c.audioLevelExt ?? !c.hideVoiceActivity,
    hideVoiceActivity: c.hideVoiceActivity,
    rateLimitPerSec: c.rateLimitPerSec,
    rateLimitBurst: c.rateLimitBurst,
    relayBytesPerSec: c.relayBytesPerSec,
    relayBurstBytes: c.relayBurstBytes,
    maxSocketsPerAddress: c.maxSocketsPerAddress,
    maxRoomsPerAddress: c.maxRoomsPerAddress,
    trustProxy: c.trustProxy,
    clientDir: c.clientDir ?? path.join(REPO_ROOT, 'client', 'dist'),
    allowedOrigins: c.allowedOrigins,
    metricsListen,
    drainTimeout: c.drainTimeout,
    redisUrl: c.redisUrl,
    nodeId: c.nodeId ?? randomBytes(4).toString('hex'),
    clusterLease: c.clusterLease,
  };
}

/** REDIS_URL: redis: or rediss:, a host, an optional port and database number; nothing else (no query options). */
function isRedisUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '' && /^(\/\d{0,2})?$/.test(url.pathname) && url.search === '' && url.hash === '';
}

/** METRICS_LISTEN: `ip:port`, `localhost:port` or `[v6]:port` (port 0 = any, for tests), `off`, never the public PORT. */
function resolveMetricsListen(
  value: string | { host: string; port: number } | undefined,
  publicPort: number,
  envName: (key: string) => string,
  issues: string[],
): { host: string; port: number } | undefined {
  if (value === undefined || (typeof value === 'string' && value.toLowerCase() === 'off')) return undefined;
  const m = typeof value === 'string' ? /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value.trim()) : null;
  const host = typeof value === 'string' ? (m?.[1] ?? m?.[2]) : value.host;
  const port = typeof value === 'string' ? Number(m?.[3]) : value.port;
  const shown = typeof value === 'string' ? value : `${value.host}:${value.port}`;
  if (host === undefined || !(host === 'localhost' || net.isIP(host) !== 0) || !Number.isInteger(port) || port < 0 || port > 65535) {
    issues.push(`${envName('metricsListen')}: "${shown}" is not ip:port (e.g. 127.0.0.1:9464, [::1]:9464, localhost:9464) or off`);
    return undefined;
  }
  if (port !== 0 && port === publicPort) {
    issues.push(`${envName('metricsListen')}: port ${port} is the public ${envName('port')}; metrics need a separate listen address`);
    return undefined;
  }
  return { host: host === 'localhost' ? '127.0.0.1' : host, port };
}

const isLoopback = (a: string): boolean => a === '::1' || (net.isIPv4(a) && a.startsWith('127.'));

/**
 * LOCAL_LAN_MEDIA / LOCAL_LAN_IP: Firefox does not pair loopback ICE candidates (Chromium does), so a local
 * HOST whose media is on loopback only also listens on and announces a non-loopback address of this machine.
 */
function resolveLocalLanIp(
  c: { localLanMedia: boolean; localLanIp?: string | undefined },
  at: { isLocal: boolean; listenIp: string; announcedIp: string | undefined },
  envName: (key: string) => string,
  issues: string[],
): string | undefined {
  const loopbackOnly = at.isLocal && isLoopback(at.listenIp) && at.announcedIp !== undefined && isLoopback(at.announcedIp);
  if (c.localLanIp !== undefined) {
    const own = Object.values(os.networkInterfaces()).some((addrs) => addrs?.some((a) => a.address === c.localLanIp));
    const problem = !c.localLanMedia
      ? `contradicts ${envName('localLanMedia')}=off`
      : !loopbackOnly
        ? `only applies with a local HOST and loopback media (${envName('listenIp')}/${envName('announcedIp')} unset)`
        : isLoopback(c.localLanIp) || c.localLanIp === '0.0.0.0' || c.localLanIp === '::'
          ? 'must be a non-loopback address of this machine'
          : !own
            ? `${c.localLanIp} is not an address of this machine`
            : undefined;
    if (problem) issues.push(`${envName('localLanIp')}: ${problem}`);
    return c.localLanIp;
  }
  return c.localLanMedia && loopbackOnly ? firstExternalIPv4() : undefined;
}

/**
 * The plain-words warning for a local HOST where media stays on loopback (LOCAL_LAN_MEDIA on, no
 * non-loopback address found); undefined when there is nothing to warn about.
 */
export function localMediaWarning(config: Pick<Config, 'isLocal' | 'localLanMedia' | 'localLanIp' | 'listenIp' | 'announcedIp'>): string | undefined {
  if (!config.isLocal || !config.localLanMedia || config.localLanIp !== undefined) return undefined;
  if (!isLoopback(config.listenIp) || !isLoopback(config.announcedIp)) return undefined;
  return (
    'media is on 127.0.0.1 only: this machine has no non-loopback IPv4 address to announce as well, and Firefox does not ' +
    'pair loopback ICE candidates, so Firefox cannot connect to this local server (Chromium can). Set LOCAL_LAN_IP, or ' +
    'run with a HOST/ANNOUNCED_IP other browsers can reach'
  );
}

/**
 * The fixed ICE server list (TURN_URLS with the static TURN_USERNAME/TURN_CREDENTIAL, if any). With TURN_SECRET the
 * join answer gets per-join credentials instead (signaling/src/turn.ts).
 */
export function iceServersOf(config: Pick<Config, 'turnUrls' | 'turnUsername' | 'turnCredential'>): IceServer[] {
  if (config.turnUrls.length === 0) return [];
  const server: IceServer = { urls: config.turnUrls };
  if (config.turnUsername !== undefined) server.username = config.turnUsername;
  if (config.turnCredential !== undefined) server.credential = config.turnCredential;
  return [server];
}
