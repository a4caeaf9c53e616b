/**
 * Test helpers for cluster mode: nodes as real CLI processes and Debian's nginx as the one name in front of them.
 *
 *   const node = await startNode({ nodeId: 'node-a', port, redisUrl, clientDir });   // ready (/readyz 200)
 *   node.kill('SIGKILL'); await node.exited;  node.output  // its log lines
 *   const lb = await startBalancer([{ id: 'a', port: portA }, ...]);                   // http://localhost:<port>
 *
 * The balancer (plain HTTP on 127.0.0.1, which browsers treat as a secure context as `localhost`) proxies the static
 * client and the socket.io WebSocket, like infra/nginx/sealed-meet.conf, to an upstream of all nodes, round-robin.
 * TEST-ONLY pinning: a browser with the cookie `sm_node=<id>` is sent to that node first, and to the others (as
 * `backup` servers) only when it refuses connections, so a test can place members on different nodes and still see
 * them move when their node dies. A production balancer needs nothing of this: any node accepts any socket.
 * The access log names, per request, the cookie and the upstream that answered (`$upstream_addr`; for a WebSocket
 * written when it closes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../../sfu/src/paths.ts';
import { freePort } from './coturn.ts';

export const NGINX = process.env['NGINX_PATH'] ?? '/usr/sbin/nginx';

export interface NodeProcess {
  nodeId: string;
  port: number;
  url: string;
  proc: ChildProcess;
  /** stdout + stderr lines so far. */
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL (a crash) and wait for the exit. */
  kill(): Promise<void>;
}

async function until(fn: () => Promise<boolean>, timeoutMs: number, what: string, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** One node: `bash infra/node.sh --import tsx signaling/src/main.ts`, configured from the environment like an operator's. */
export async function startNode(opts: { nodeId: string; port: number; redisUrl: string; clientDir: string; env?: Record<string, string> }): Promise<NodeProcess> {
  const proc = spawn('bash', ['infra/node.sh', '--import', 'tsx', 'signaling/src/main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: String(opts.port),
      HOST: 'localhost',
      CLIENT_DIR: opts.clientDir,
      REDIS_URL: opts.redisUrl,
      NODE_ID: opts.nodeId,
      CLUSTER_LEASE: '2',
      // Each node its own free WebRtcServer port (one worker each).
      RTC_PORT: '0',
      WORKERS: '1',
      TRUST_PROXY: 'on',
      LOG_LEVEL: 'info',
      LOCAL_LAN_MEDIA: 'off',
      DRAIN_TIMEOUT: '0',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [proc.stdout!, proc.stderr!]) {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      output.push(...parts);
    });
  }
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      gone = true;
      resolve({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${opts.port}`;
  try {
    await until(async () => {
      if (gone) throw new Error('exited');
      return (await fetch(`${url}/readyz`)).status === 200;
    }, 60_000, `node ${opts.nodeId} ready`, 200);
  } catch {
    proc.kill('SIGKILL');
    throw new Error(`node ${opts.nodeId} did not become ready:\n${output.slice(-30).join('\n')}`);
  }
  return {
    nodeId: opts.nodeId,
    port: opts.port,
    url,
    proc,
    output,
    exited,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface Balancer {
  /** What browsers open: http://localhost:<port>. */
  url: string;
  port: number;
  /** Access log lines: `<cookie sm_node or -> <upstream addresses> <status> <path>`. */
  accessLog(): string[];
  stop(): Promise<void>;
}

/** The nginx configuration (http {} context) for `nodes`: round-robin, with the test's cookie pinning. */
export function balancerConfig(nodes: { id: string; port: number }[], listenPort: number, logPath: string): string {
  const server = (port: number, backup: boolean): string => `    server 127.0.0.1:${port} max_fails=1 fail_timeout=2s${backup ? ' backup' : ''};`;
  return [
    'upstream sm_all {',
    ...nodes.map((n) => server(n.port, false)),
    '}',
    ...nodes.flatMap((n) => [`upstream sm_${n.id} {`, server(n.port, false), ...nodes.filter((o) => o !== n).map((o) => server(o.port, true)), '}']),
    'map $cookie_sm_node $sm_upstream {',
    '    default sm_all;',
    ...nodes.map((n) => `    ${n.id} sm_${n.id};`),
    '}',
    'map $http_upgrade $sm_connection { default upgrade; \'\' \'\'; }',
    // As infra/nginx/sealed-meet.conf: the room id in /m/<roomId> cut off.
    'map $uri $sm_log_path { ~^/m/ /m/-; default $uri; }',
    "log_format sm_cluster '$cookie_sm_node $upstream_addr $status $sm_log_path';",
    'server {',
    `    listen 127.0.0.1:${listenPort};`,
    `    access_log ${logPath} sm_cluster;`,
    '    proxy_http_version 1.1;',
    '    proxy_next_upstream error timeout;',
    '    proxy_connect_timeout 2s;',
    '    location /socket.io/ {',
    '        proxy_pass http://$sm_upstream;',
    '        proxy_set_header Host $http_host;',
    '        proxy_set_header X-Forwarded-For $remote_addr;',
    '        proxy_set_header Upgrade $http_upgrade;',
    '        proxy_set_header Connection $sm_connection;',
    '        proxy_buffering off;',
    '        proxy_read_timeout 1h;',
    '    }',
    '    location / {',
    '        proxy_pass http://$sm_upstream;',
    "        proxy_set_header Connection '';",
    '        proxy_set_header Host $http_host;',
    '        proxy_set_header X-Forwarded-For $remote_addr;',
    '    }',
    '}',
  ].join('\n');
}

export async function startBalancer(nodes: { id: string; port: number }[]): Promise<Balancer> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: run \`apt-get install -y nginx\` (infra/setup.sh --for-test does this)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nginx-cluster-'));
  for (const d of ['logs', 'temp']) mkdirSync(path.join(dir, d));
  const port = await freePort();
  const accessLog = path.join(dir, 'logs', 'access.log');
  const errorLog = path.join(dir, 'logs', 'error.log');
  writeFileSync(path.join(dir, 'cluster.conf'), `${balancerConfig(nodes, port, accessLog)}\n`);
  const t = (n: string): string => `${n}_temp_path ${path.join(dir, 'temp', n)};`;
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    [
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      'worker_processes 1;',
      'events { worker_connections 512; }',
      `http { ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(t).join(' ')} include ${path.join(dir, 'cluster.conf')}; }`,
    ].join('\n') + '\n',
  );
  let out = '';
  const nginx = spawn(NGINX, ['-p', dir, '-e', errorLog, '-c', path.join(dir, 'nginx.conf'), '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [nginx.stdout!, nginx.stderr!]) s.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<void>((resolve) => nginx.once('exit', () => resolve()));
  try {
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
          s.once('error', () => resolve(false));
        }),
      10_000,
      'nginx listening',
    );
  } catch (err) {
    nginx.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${out}${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`);
  }
  return {
    url: `http://localhost:${port}`,
    port,
    accessLog: () => (existsSync(accessLog) ? readFileSync(accessLog, 'utf8').split('\n').filter(Boolean) : []),
    stop: async () => {
      if (nginx.exitCode === null) {
        nginx.kill('SIGQUIT');
        const timer = setTimeout(() => nginx.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
