/**
 * Test helper: Debian's redis-server (`/usr/bin/redis-server`) on loopback, for the cluster tests.
 *
 *   const redis = await startRedis();   // a free port, a temp dir, no persistence
 *   redis.url                           // redis://127.0.0.1:<port>  (REDIS_URL)
 *   await redis.kill();                 // SIGKILL: an outage, nothing flushed (connections see a reset)
 *   await redis.restart();              // a new, EMPTY redis-server on the same port (what a restart without
 *                                       // persistence is: every key gone)
 *   await redis.stop();                 // SIGTERM (then SIGKILL) and the temp dir removed; idempotent
 *
 * `redis-server --port N --bind 127.0.0.1 --save '' --appendonly no --dir <tmp>`: no RDB, no AOF, nothing outside
 * the temp dir; it is never a system service. Startup is waited for by PING over a raw socket (usually < 50 ms).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { freePort } from './coturn.ts';

export const REDIS_SERVER = process.env['REDIS_SERVER_PATH'] ?? '/usr/bin/redis-server';

export interface TestRedis {
  url: string;
  port: number;
  /** redis-server's stdout/stderr so far (its log). */
  log(): string;
  /** SIGKILL and wait for the exit (restart() brings one up again). */
  kill(): Promise<void>;
  /** Kills the running instance (if any) and starts an empty one on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** PING over a raw socket: true once the server answers +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    s.once('error', () => done(false));
  });
}

export async function startRedis(opts: { port?: number } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(path.join(tmpdir(), 'redis-'));
  const port = opts.port ?? (await freePort());
  let output = '';
  let child: ChildProcess | undefined;
  let exit: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const proc = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let exited = false;
    exit = new Promise<void>((resolve) =>
      proc.once('exit', () => {
        exited = true;
        resolve();
      }),
    );
    for (const s of [proc.stdout!, proc.stderr!]) s.on('data', (d: Buffer) => (output += d.toString('utf8')));
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline) {
      if (await ping(port)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    proc.kill('SIGKILL');
    await exit;
    throw new Error(`redis-server did not come up on 127.0.0.1:${port}:\n${output}`);
  };

  const kill = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
  };
  const stop = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child?.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    log: () => output,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop,
  };
}
