/**
 * Builds the browser client for tests, once, and only when its sources changed since the last build:
 *
 * - `production`: `client/dist` (what `npm start` serves), exactly as `npm run build:client` builds it;
 * - `test`: `.cache/client-test/`, the TEST build (`--mode test-hooks`, client/vite.config.ts) with the e2e key-export
 *   hooks compiled in. The e2e harness serves this one; nothing else does.
 *
 * A build goes into a fresh sibling directory that replaces the old one only once it succeeded (a server still
 * serving the old files keeps working until then), and records `.setup-stamp` (the stamp infra/setup.sh uses too),
 * dated when the build started so an edit made while it runs triggers the next one.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../sfu/src/paths.ts';
import { TEST_HOOKS_MODE, TEST_OUT_DIR } from '../client/vite.config.ts';

export type ClientBuild = 'production' | 'test';

export const CLIENT_DIRS: Readonly<Record<ClientBuild, string>> = {
  production: path.join(REPO_ROOT, 'client', 'dist'),
  test: TEST_OUT_DIR,
};

const STAMP = '.setup-stamp';

/** Everything the client bundle is built from (it imports the wire types from sfu/ and signaling/). */
const SOURCES = ['client/src', 'client/index.html', 'client/vite.config.ts', 'sfu/src/wire.ts', 'signaling/src/protocol.ts', 'package-lock.json'];

function newestMtime(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // added or removed files change the directory
  for (const name of readdirSync(p)) newest = Math.max(newest, newestMtime(path.join(p, name)));
  return newest;
}

function upToDate(dir: string): boolean {
  const stamp = path.join(dir, STAMP);
  if (!existsSync(path.join(dir, 'index.html')) || !existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return SOURCES.every((s) => newestMtime(path.join(REPO_ROOT, s)) < built);
}

/** Builds `kind` unless it is up to date (`E2E_SKIP_BUILD=1`: use whatever is there); returns its directory. */
export function ensureClientBuild(kind: ClientBuild): string {
  const dir = CLIENT_DIRS[kind];
  if (existsSync(path.join(dir, 'index.html')) && (process.env['E2E_SKIP_BUILD'] === '1' || upToDate(dir))) return dir;
  const fresh = `${dir}.build-${process.pid}`;
  rmSync(fresh, { recursive: true, force: true });
  const started = new Date();
  const vite = path.join(REPO_ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const args = [vite, 'build', '--config', 'client/vite.config.ts', '--logLevel', 'warn', '--outDir', fresh, '--emptyOutDir'];
  if (kind === 'test') args.push('--mode', TEST_HOOKS_MODE);
  try {
    // NODE_ENV=production: vitest sets NODE_ENV=test, which would make Vite build a development bundle.
    execFileSync(process.execPath, args, { cwd: REPO_ROOT, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'production' } });
  } catch (err) {
    rmSync(fresh, { recursive: true, force: true });
    throw err;
  }
  // Dated when the build started: a source edited while it ran is newer, so the next call builds again.
  writeFileSync(path.join(fresh, STAMP), '');
  utimesSync(path.join(fresh, STAMP), started, started);
  const old = `${dir}.old-${process.pid}`;
  rmSync(old, { recursive: true, force: true });
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(fresh, dir);
  rmSync(old, { recursive: true, force: true });
  return dir;
}
