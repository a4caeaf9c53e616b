/**
 * `npm run doctor`: checks a deployment from the server's side and says in plain words what is wrong.
 *
 *   npm run doctor                                   (configuration from the environment, like the server)
 *   npm run doctor -- --env-file /etc/sealed-meet/sealed-meet.env
 *
 * It reads the same configuration as the server (`loadConfig`), never starts the server or a worker, needs no
 * root, and finishes within a few seconds. One line per check: `ok`, `warn` or `FAIL`, with what to do; the exit
 * status is 1 when anything FAILs. Nothing secret is printed: not the TURN secret or credential, not the TLS key.
 *
 * Each check is a plain function of its inputs (configuration, network interfaces, clock, paths), so the tests
 * run them against real ports, real certificates and a real coturn.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as dgram from 'node:dgram';
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import ipaddr from 'ipaddr.js';
import { ConfigError, loadConfig, localMediaWarning, type Config } from '../../sfu/src/config.ts';
import { REPO_ROOT } from '../../sfu/src/paths.ts';
import { chosenWorkerBin } from '../../sfu/src/workerBin.ts';
import { checkRedis } from './cluster/doctor-redis.ts';
import { probeIceServer, type ProbeOptions } from './stun-probe.ts';
import { turnCredentials } from './turn.ts';

export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  /** Short name of what was checked ("TLS certificate"). */
  check: string;
  level: Level;
  /** What was found, in plain words. */
  message: string;
  /** What to do about it (warn / fail). */
  fix?: string;
}

const ok = (check: string, message: string): Finding => ({ check, level: 'ok', message });
const warn = (check: string, message: string, fix: string): Finding => ({ check, level: 'warn', message, fix });
const fail = (check: string, message: string, fix: string): Finding => ({ check, level: 'fail', message, fix });

/** Days before expiry from which the certificate check warns. */
export const CERT_WARN_DAYS = 14;
const DAY_MS = 86_400_000;

// -------------------------------------------------------------------------------------------------
// Configuration
// -------------------------------------------------------------------------------------------------

/** The server's own configuration reader; a ConfigError becomes a FAIL listing every problem. */
export function checkConfig(env: NodeJS.ProcessEnv): { config?: Config; finding: Finding } {
  try {
    const config = loadConfig(env);
    const mode = config.rtcMode === 'server' ? `RTC_MODE=server, RTC_PORT=${config.rtcPort}` : `RTC_MODE=range ${config.rtcMinPort}-${config.rtcMaxPort}`;
    return { config, finding: ok('configuration', `HOST=${config.host} PORT=${config.port}, ${config.workers} worker(s), ${mode}`) };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return {
      finding: fail(
        'configuration',
        `the server would refuse to start: ${e.issues.join('; ')}`,
        'fix these settings in the environment file (every setting is listed at the top of sfu/src/config.ts)',
      ),
    };
  }
}

// -------------------------------------------------------------------------------------------------
// Announced IP
// -------------------------------------------------------------------------------------------------

type Interfaces = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

function localAddresses(interfaces: Interfaces): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(interfaces)) for (const a of list ?? []) out.add(ipaddr.process(a.address).toString());
  return out;
}

const isPublic = (ip: string): boolean => ipaddr.process(ip).range() === 'unicast';

/** Addresses worth announcing: not loopback, not link-local. */
const announceable = (local: Set<string>): string =>
  [...local].filter((a) => !['loopback', 'linkLocal'].includes(ipaddr.process(a).range())).join(', ') || 'none found';

/** Browsers on other machines use this server: not localhost, or localhost behind a proxy with a reachable ANNOUNCED_IP. */
export function servesOthers(config: Pick<Config, 'isLocal' | 'announcedIp'>): boolean {
  return !config.isLocal || ipaddr.process(config.announcedIp).range() !== 'loopback';
}

/**
 * The address put in the ICE candidates must reach this machine: one of its own addresses, or (1:1 NAT, as in
 * most clouds) a public address the provider maps to it, which no local interface shows.
 */
export function checkAnnouncedIp(config: Pick<Config, 'announcedIp' | 'isLocal'>, interfaces: Interfaces): Finding[] {
  const name = 'announced IP';
  const local = localAddresses(interfaces);
  const ip = ipaddr.process(config.announcedIp).toString();
  const out: Finding[] = [];
  const range = ipaddr.process(ip).range();
  if (range === 'loopback' && !config.isLocal) {
    out.push(
      fail(name, `ANNOUNCED_IP is ${ip}, a loopback address: browsers on other machines would send their media to themselves`, 'set ANNOUNCED_IP to the public (or LAN) address clients reach this machine at'),
    );
  } else if (local.has(ip)) {
    out.push(ok(name, `${ip} is an address of this machine${range === 'loopback' ? ' (loopback: only browsers on this machine can join)' : ''}`));
  } else if (isPublic(ip)) {
    const hasPublic = [...local].some(isPublic);
    out.push(
      warn(
        name,
        `${ip} is not an address of this machine. That is right behind 1:1 NAT (a cloud VM's public or elastic IP, which the VM itself never sees)${hasPublic ? ', but this machine has public addresses of its own' : ''}; otherwise media will not arrive`,
        `make sure ${ip} is forwarded to this machine for the RTC ports (UDP and TCP), or set ANNOUNCED_IP to one of: ${announceable(local)}`,
      ),
    );
  } else {
    out.push(
      fail(
        name,
        `${ip} is a ${range === 'private' ? 'private' : `non-public (${range})`} address but not one of this machine's: clients would send their media to another host`,
        `set ANNOUNCED_IP to this machine's address (${announceable(local)}) or to the public IP forwarded to it`,
      ),
    );
  }
  return out;
}

// -------------------------------------------------------------------------------------------------
// Ports
// -------------------------------------------------------------------------------------------------

export type Proto = 'udp' | 'tcp';

/** Binds `ip:port` exclusively and releases it: null when that worked, else the error. */
export function tryBind(proto: Proto, ip: string, port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    if (proto === 'udp') {
      const s = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
      s.once('error', (e) => (s.close(), resolve(e)));
      s.bind({ port, address: ip, exclusive: true }, () => s.close(() => resolve(null)));
    } else {
      const s = net.createServer();
      s.once('error', (e) => resolve(e));
      s.listen({ port, host: ip, exclusive: true }, () => s.close(() => resolve(null)));
    }
  });
}

/** Plain words for a failed bind of `what` (e.g. "UDP port 40000 on 0.0.0.0"). */
export function bindProblem(what: string, port: number, err: NodeJS.ErrnoException): { message: string; fix: string } {
  switch (err.code) {
    case 'EADDRINUSE':
      return {
        message: `${what} is in use by another process`,
        fix: `find it with \`ss -lupnt 'sport = :${port}'\` (if it is sealed-meet itself, already running, that is expected); or choose another port`,
      };
    case 'EACCES':
      return {
        message: `${what}: permission denied`,
        fix:
          port < 1024
            ? 'ports below 1024 need CAP_NET_BIND_SERVICE (see infra/systemd/sealed-meet.service) or a reverse proxy in front; or use a port >= 1024'
            : 'a security policy refuses this port to this user; choose another port',
      };
    case 'EADDRNOTAVAIL':
      return { message: `${what}: that address is not one of this machine's`, fix: 'set LISTEN_IP (or HOST) to an address of this machine, or 0.0.0.0' };
    default:
      return { message: `${what}: ${err.code ?? ''} ${err.message}`.trim(), fix: 'check the address and port settings' };
  }
}

/** Ports sampled in a range: its ends and evenly spaced ones between them. */
export function samplePorts(min: number, max: number, n = 8): number[] {
  const out = new Set<number>([min, max]);
  for (let i = 1; i < n - 1; i++) out.add(Math.round(min + ((max - min) * i) / (n - 1)));
  return [...out].sort((a, b) => a - b);
}

/** The media (RTC) ports the server will bind: every worker's RTC_PORT+i (server mode), or a sample of the range. */
export async function checkRtcPorts(config: Pick<Config, 'rtcMode' | 'rtcPort' | 'rtcMinPort' | 'rtcMaxPort' | 'workers' | 'listenIp' | 'localLanIp'>): Promise<Finding[]> {
  const name = 'RTC ports';
  const ips = [config.listenIp, ...(config.localLanIp ? [config.localLanIp] : [])];
  const fixed = config.rtcMode === 'server' && config.rtcPort !== 0;
  const ports = fixed ? Array.from({ length: config.workers }, (_, i) => config.rtcPort + i) : samplePorts(config.rtcMinPort, config.rtcMaxPort);
  const probes = ports.flatMap((port) => ips.flatMap((ip) => (['udp', 'tcp'] as const).map((proto) => ({ port, ip, proto }))));
  const results = await Promise.all(probes.map(async (p) => ({ ...p, err: await tryBind(p.proto, p.ip, p.port) })));
  const bad = results.filter((r) => r.err !== null);
  const label = (r: { proto: Proto; port: number; ip: string }): string => `${r.proto.toUpperCase()} port ${r.port} on ${r.ip}`;
  if (fixed) {
    if (bad.length === 0) return [ok(name, `UDP and TCP ${ports.length === 1 ? `port ${ports[0]}` : `ports ${ports[0]}-${ports.at(-1)}`} (one per worker) are free on ${ips.join(', ')}`)];
    return bad.map((r) => {
      const p = bindProblem(label(r), r.port, r.err!);
      return fail(name, `${p.message}: a worker could not start its media server there`, p.fix);
    });
  }
  const what = `${config.rtcMinPort}-${config.rtcMaxPort}`;
  if (bad.length === 0) return [ok(name, `a sample of ${ports.length} ports of ${what} binds for UDP and TCP on ${ips.join(', ')}`)];
  if (bad.length === results.length) {
    const p = bindProblem(label(bad[0]!), bad[0]!.port, bad[0]!.err!);
    return [fail(name, `none of the sampled ports of ${what} binds (${p.message})`, p.fix)];
  }
  const p = bindProblem(bad.map(label).join(', '), bad[0]!.port, bad[0]!.err!);
  return [warn(name, `${p.message} (other ports of ${what} are free; mediasoup skips busy ones)`, p.fix)];
}

/** A TCP listener the server opens: the HTTP(S) port, or METRICS_LISTEN. */
export async function checkTcpPort(name: string, host: string, port: number): Promise<Finding> {
  if (port === 0) return ok(name, 'port 0: any free port is taken at start');
  const err = await tryBind('tcp', host, port);
  if (!err) return ok(name, `TCP port ${port} on ${host} is free`);
  const p = bindProblem(`TCP port ${port} on ${host}`, port, err);
  return fail(name, p.message, p.fix);
}

/**
 * A loopback HOST serving other machines sits behind a reverse proxy: then the client address is only known from
 * X-Forwarded-For (TRUST_PROXY=on), or every client counts as the proxy's one address in the per-address quotas.
 */
export function checkProxy(config: Pick<Config, 'isLocal' | 'announcedIp' | 'trustProxy'>): Finding[] {
  if (config.isLocal && servesOthers(config) && !config.trustProxy) {
    return [warn('reverse proxy', 'HOST is loopback but ANNOUNCED_IP is not: behind a reverse proxy every client arrives from the proxy\'s address, so all share one per-address quota', 'set TRUST_PROXY=on (the proxy must set X-Forwarded-For, as infra/nginx/sealed-meet.conf does)')];
  }
  return [];
}

// -------------------------------------------------------------------------------------------------
// TLS
// -------------------------------------------------------------------------------------------------

function readProblem(what: string, file: string, e: unknown): Finding {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return fail('TLS certificate', `${what} ${file} does not exist`, `put the PEM file there, or fix the path in the environment file`);
  if (code === 'EACCES') return fail('TLS certificate', `${what} ${file} is not readable by this user (${os.userInfo().username})`, 'make it readable by the service user (e.g. group sealed-meet, mode 0640), not world-readable for the key');
  return fail('TLS certificate', `${what} ${file} cannot be read (${code ?? (e as Error).message})`, 'check the path');
}

/** TLS_CERT/TLS_KEY: readable, a certificate for HOST, valid now and for 14 more days, the key belonging to it. */
export function checkTls(config: Pick<Config, 'host' | 'isLocal' | 'announcedIp' | 'tlsCert' | 'tlsKey'>, now: Date = new Date()): Finding {
  const name = 'TLS certificate';
  if (!config.tlsCert || !config.tlsKey) {
    if (config.isLocal) return ok(name, `none: plain HTTP on ${config.host}${servesOthers(config) ? ' (TLS must end in the reverse proxy in front, see infra/nginx/)' : ''}`);
    return warn(name, `no TLS_CERT/TLS_KEY: the server makes a self-signed certificate for ${config.host}, and browsers will warn`, 'set TLS_CERT and TLS_KEY to a real certificate (e.g. Let\'s Encrypt), or terminate TLS in the reverse proxy (infra/nginx/)');
  }
  let certPem: Buffer;
  let keyPem: Buffer;
  try {
    certPem = readFileSync(config.tlsCert);
  } catch (e) {
    return readProblem('TLS_CERT', config.tlsCert, e);
  }
  try {
    keyPem = readFileSync(config.tlsKey);
  } catch (e) {
    return readProblem('TLS_KEY', config.tlsKey, e);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return fail(name, `TLS_CERT ${config.tlsCert} is not a PEM certificate`, 'point TLS_CERT at the certificate (full chain) PEM file');
  }
  try {
    const key = createPrivateKey(keyPem);
    if (!cert.checkPrivateKey(key)) {
      return fail(name, `TLS_KEY ${config.tlsKey} is not the key of the certificate in TLS_CERT`, 'use the private key that was issued with this certificate');
    }
  } catch {
    // The parser's message is not printed: it could quote the file.
    return fail(name, `TLS_KEY ${config.tlsKey} is not a readable unencrypted PEM private key`, 'point TLS_KEY at the (unencrypted) private key PEM file');
  }
  const host = config.host.replace(/^\[|\]$/g, '');
  const matches = net.isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  const names = cert.subjectAltName ?? cert.subject;
  if (!matches) return fail(name, `the certificate does not match HOST=${config.host} (it is for ${names})`, `get a certificate for ${config.host}, or set HOST to the name the certificate is for`);
  const notAfter = new Date(cert.validTo);
  const notBefore = new Date(cert.validFrom);
  if (notBefore.getTime() > now.getTime()) return fail(name, `the certificate is not valid before ${notBefore.toISOString()}`, 'check the clock of this machine, or use a certificate valid now');
  if (notAfter.getTime() <= now.getTime()) return fail(name, `the certificate expired on ${notAfter.toISOString()}`, 'renew it (e.g. certbot renew) and restart the service');
  const days = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  if (notAfter.getTime() - now.getTime() < CERT_WARN_DAYS * DAY_MS) {
    return warn(name, `the certificate expires in ${days} day(s), on ${notAfter.toISOString()}`, 'renew it soon (e.g. certbot renew) and restart the service');
  }
  return ok(name, `matches ${config.host}, valid until ${notAfter.toISOString().slice(0, 10)} (${days} days), key matches`);
}

// -------------------------------------------------------------------------------------------------
// TURN
// -------------------------------------------------------------------------------------------------

export interface TurnSettings {
  /** Browsers on other machines use this server (`servesOthers`). */
  servesOthers: boolean;
  turnUrls: string[];
}

/**
 * What the configuration says about TURN, before any network probe. (Contradictions such as TURN_SECRET without
 * a turn: URL are the configuration's own errors, reported by `checkConfig`.)
 */
export function checkTurnSettings(c: TurnSettings): Finding[] {
  const name = 'TURN';
  const turn = c.turnUrls.filter((u) => /^turns?:/i.test(u));
  if (turn.length === 0) {
    if (!c.servesOthers) return [ok(name, 'not configured (not needed on localhost)')];
    return [warn(name, 'no TURN server configured: people behind firewalls that block UDP, or let only HTTPS out, cannot connect', 'run coturn (infra/) and set TURN_URLS and TURN_SECRET')];
  }
  if (!turn.some((u) => /^turns:/i.test(u) || /transport=tcp/i.test(u))) {
    return [warn(name, 'TURN is configured over UDP only: networks that block UDP still cannot connect', 'add a turn:…?transport=tcp and a turns: URL (port 443)')];
  }
  return [];
}

/**
 * Sends a real STUN request to each URL over its transport. With `credentials`, turn:/turns: URLs are also asked
 * for an allocation with them, which tells whether the server accepts the secret we hand out.
 */
export async function checkTurnReachable(
  urls: string[],
  opts: { timeoutMs?: number; credentials?: { username: string; password: string }; ca?: ProbeOptions['ca'] } = {},
): Promise<Finding[]> {
  return Promise.all(
    urls.map(async (url): Promise<Finding> => {
      const name = `TURN ${url}`;
      const r = await probeIceServer(url, {
        timeoutMs: opts.timeoutMs ?? 2000,
        ...(opts.credentials ? { auth: opts.credentials } : {}),
        ...(opts.ca ? { ca: opts.ca } : {}),
      }).catch((e: unknown) => ({ reachable: false as const, reason: (e as Error).message }));
      if (!r.reachable) {
        return fail(name, `unreachable: ${r.reason}`, 'check that coturn runs, listens on that address and port, and that the firewall lets this transport through');
      }
      if (r.auth && !r.auth.accepted) {
        return fail(name, `answers, but refused credentials made from TURN_SECRET (${r.auth.error})`, 'TURN_SECRET must equal coturn\'s static-auth-secret (with use-auth-secret), and the clocks must agree');
      }
      if (r.certProblem) {
        return warn(name, `answers in ${r.rttMs} ms, but its TLS certificate is not trusted (${r.certProblem})`, 'give coturn a certificate for this name from a public CA: browsers refuse an untrusted turns: server');
      }
      return ok(name, `answers in ${r.rttMs} ms (${r.answer})${r.auth ? ', accepts our credentials' : ''}`);
    }),
  );
}

// -------------------------------------------------------------------------------------------------
// Runtime and files
// -------------------------------------------------------------------------------------------------

/** Node's major version against package.json `engines.node` (">=22"). */
export function checkNode(version: string, engines: string): Finding {
  const name = 'Node.js';
  const min = Number(/>=\s*(\d+)/.exec(engines)?.[1] ?? NaN);
  const major = Number(version.replace(/^v/, '').split('.')[0]);
  if (!Number.isFinite(min)) return warn(name, `package.json engines.node "${engines}" has no >= bound to compare with`, 'set engines.node to ">=<major>"');
  if (major < min) return fail(name, `Node ${version} is older than the supported ${engines}`, 'run through infra/node.sh (it fetches Node 24 LTS), or install Node 24');
  return ok(name, `Node ${version} (supported: ${engines})`);
}

/** The mediasoup worker binary: there, a file, executable by this user. */
export function checkWorkerBin(file: string, source: string): Finding {
  const name = 'mediasoup worker';
  try {
    if (!statSync(file).isFile()) return fail(name, `${source} ${file} is not a file`, 'run `npm run build:worker`, or point MEDIASOUP_WORKER_BIN at the worker binary');
  } catch {
    return fail(name, `${source} ${file} does not exist`, 'run `npm run build:worker` (or `npm run setup`) in the checkout, or point MEDIASOUP_WORKER_BIN at the worker binary');
  }
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    return fail(name, `${source} ${file} is not executable by this user (${os.userInfo().username})`, `chmod 755 it; the service user needs read and execute access to the checkout`);
  }
  return ok(name, `${file}`);
}

/** The built client: CLIENT_DIR/index.html. */
export function checkClientBundle(clientDir: string): Finding {
  const name = 'client bundle';
  const index = path.join(clientDir, 'index.html');
  try {
    readFileSync(index);
    return ok(name, index);
  } catch {
    return fail(name, `${index} is missing or unreadable: browsers would get 404`, 'run `npm run setup` (or `npm run build:client`), or fix CLIENT_DIR');
  }
}

// -------------------------------------------------------------------------------------------------
// All checks, and the CLI
// -------------------------------------------------------------------------------------------------

export interface DoctorInputs {
  env: NodeJS.ProcessEnv;
  interfaces: Interfaces;
  now: Date;
  nodeVersion: string;
  engines: string;
  /** Where the server would look for the worker binary, and why there. */
  workerBin: { file: string; source: string };
  timeoutMs?: number;
}

/** Runs every check (in parallel where they touch the network); the order of the result is fixed. */
export async function runChecks(inputs: DoctorInputs): Promise<Finding[]> {
  const { config, finding } = checkConfig(inputs.env);
  const base = [finding, checkNode(inputs.nodeVersion, inputs.engines), checkWorkerBin(inputs.workerBin.file, inputs.workerBin.source)];
  if (!config) return [...base, checkClientBundle(inputs.env['CLIENT_DIR'] || path.join(REPO_ROOT, 'client', 'dist'))];
  const credentials = turnCredentialsOf(config);
  const lanWarning = localMediaWarning(config);
  const [rtc, http, metrics, reach, cluster] = await Promise.all([
    checkRtcPorts(config),
    checkTcpPort('HTTP port', config.bindHost, config.port),
    config.metricsListen ? checkTcpPort('metrics port', config.metricsListen.host, config.metricsListen.port) : ok('metrics port', 'METRICS_LISTEN off: no /metrics'),
    checkTurnReachable(config.turnUrls, { ...(inputs.timeoutMs ? { timeoutMs: inputs.timeoutMs } : {}), ...(credentials ? { credentials } : {}) }),
    checkRedis(config, inputs.env, inputs.timeoutMs),
  ]);
  return [
    ...base,
    checkClientBundle(config.clientDir),
    ...checkAnnouncedIp(config, inputs.interfaces),
    ...(lanWarning ? [warn('LAN media', lanWarning, 'set LOCAL_LAN_IP to an address of this machine')] : []),
    ...rtc,
    http,
    metrics,
    ...checkProxy(config),
    checkTls(config, inputs.now),
    ...checkTurnSettings({ servesOthers: servesOthers(config), turnUrls: config.turnUrls }),
    ...reach,
    ...cluster,
  ];
}

/** TURN credentials like the server hands out: the TURN_SECRET scheme's (turn.ts), or the static ones. */
function turnCredentialsOf(config: Config): { username: string; password: string } | undefined {
  if (config.turnSecret !== undefined) {
    const { username, credential } = turnCredentials(config.turnSecret, config.turnTtl);
    return { username, password: credential };
  }
  if (config.turnUsername !== undefined && config.turnCredential !== undefined) return { username: config.turnUsername, password: config.turnCredential };
  return undefined;
}

const LABEL: Record<Level, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

/** One line per finding (plus an indented "→ what to do" line for warn/FAIL). */
export function formatFindings(findings: Finding[]): string {
  return findings.map((f) => `${LABEL[f.level]}  ${f.check}: ${f.message}${f.fix ? `\n      → ${f.fix}` : ''}`).join('\n');
}

function readEngines(): string {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { engines?: { node?: string } };
  return pkg.engines?.node ?? '';
}

async function cli(argv: string[]): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const i = argv.indexOf('--env-file');
  if (i !== -1) {
    const file = argv[i + 1];
    if (!file) throw new Error('--env-file needs a path');
    Object.assign(env, parseEnv(readFileSync(file, 'utf8')));
  }
  const bin = chosenWorkerBin(env);
  const started = performance.now();
  const findings = await runChecks({
    env,
    interfaces: os.networkInterfaces(),
    now: new Date(),
    nodeVersion: process.version,
    engines: readEngines(),
    workerBin: { file: bin.file, source: bin.fromEnv ? 'MEDIASOUP_WORKER_BIN' : 'the built worker' },
  });
  process.stdout.write(`${formatFindings(findings)}\n`);
  const failed = findings.filter((f) => f.level === 'fail').length;
  const warned = findings.filter((f) => f.level === 'warn').length;
  const ms = Math.round(performance.now() - started);
  process.stdout.write(`\n${failed ? `${failed} FAIL` : 'no FAIL'}, ${warned} warning(s), ${findings.length} checks in ${ms} ms\n`);
  return failed ? 1 : 0;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  cli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`sealed-meet doctor: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(2);
    },
  );
}
