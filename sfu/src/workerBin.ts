/**
 * The one place that knows where the mediasoup worker binary lives.
 *
 * npm install scripts are off (.npmrc), so mediasoup's postinstall never builds
 * node_modules/mediasoup/worker/out/Release/mediasoup-worker. infra/build-mediasoup.sh builds it
 * (linked against Debian's OpenSSL 3) into `<repo>/.cache/mediasoup-worker/3.8.4/mediasoup-worker`,
 * outside node_modules so `npm ci` does not wipe it.
 *
 * How mediasoup 3.8.4 finds the binary (node_modules/mediasoup/lib/Worker.js; the package has
 * `lib/`, not `node/lib/`): at the top level of that CommonJS module,
 *
 *     const workerBin = process.env.MEDIASOUP_WORKER_BIN ? process.env.MEDIASOUP_WORKER_BIN : <worker/out/Release>;
 *
 * i.e. the variable is read ONCE, when Worker.js is first evaluated — which happens as soon as
 * anything loads 'mediasoup' (lib/index.js requires ./Worker eagerly), not when createWorker() is
 * called. Setting the variable afterwards has no effect. Therefore:
 *   - call `ensureWorkerBinEnv()` and only then `await import('mediasoup')` (dynamic import), as
 *     sfu/src/WorkerPool.ts `loadMediasoup()` does; a static `import ... from 'mediasoup'` is hoisted
 *     and evaluated before any code of the importing module runs (type-only imports are fine);
 *   - or set MEDIASOUP_WORKER_BIN in the environment before starting node.
 * `ensureWorkerBinEnv()` throws if it detects that mediasoup's Worker.js was already loaded without
 * the variable pointing at the binary, instead of letting createWorker() fail later with ENOENT.
 */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { REPO_ROOT } from './paths.ts';

/** The mediasoup version pinned in package.json; the build script checks the installed one. */
export const MEDIASOUP_VERSION = '3.8.4';

/** Repository root (this file is <root>/sfu/src/workerBin.ts). */

/** Where infra/build-mediasoup.sh installs the worker. */
export const DEFAULT_WORKER_BIN = path.join(
  REPO_ROOT,
  '.cache',
  'mediasoup-worker',
  MEDIASOUP_VERSION,
  'mediasoup-worker',
);

function isExecutableFile(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Absolute path of the mediasoup worker binary: `$MEDIASOUP_WORKER_BIN` if set (resolved against the
 * current directory), else the one built by infra/build-mediasoup.sh. Throws a clear error if the file
 * is missing or not executable.
 */
export function resolveWorkerBin(): string {
  const fromEnv = process.env.MEDIASOUP_WORKER_BIN;
  if (fromEnv) {
    const p = path.resolve(fromEnv);
    if (!isExecutableFile(p)) {
      throw new Error(
        `MEDIASOUP_WORKER_BIN=${fromEnv} is not an executable file. Unset it to use the worker built by ` +
          '`npm run build:worker`, or point it at a mediasoup 3.8.4 worker binary.',
      );
    }
    return p;
  }
  if (!isExecutableFile(DEFAULT_WORKER_BIN)) {
    throw new Error(
      `mediasoup worker binary not found at ${DEFAULT_WORKER_BIN}. ` +
        'Run `npm run build:worker` (infra/build-mediasoup.sh, ~3 minutes) or `npm run setup` first.',
    );
  }
  return DEFAULT_WORKER_BIN;
}

/**
 * Sets `process.env.MEDIASOUP_WORKER_BIN` to `resolveWorkerBin()`. Must run before mediasoup is first
 * loaded (see the comment at the top of this file). Idempotent.
 */
export function ensureWorkerBinEnv(): void {
  const bin = resolveWorkerBin();
  const before = process.env.MEDIASOUP_WORKER_BIN;
  if (workerModuleLoaded() && (!before || path.resolve(before) !== bin)) {
    throw new Error(
      'mediasoup was loaded before ensureWorkerBinEnv(): mediasoup 3.8.4 reads MEDIASOUP_WORKER_BIN only ' +
        "when its lib/Worker.js is first evaluated. Call ensureWorkerBinEnv() before `import('mediasoup')` " +
        '(use a dynamic import; only `import type` statically).',
    );
  }
  process.env.MEDIASOUP_WORKER_BIN = bin;
}

/** Whether node_modules/mediasoup/lib/Worker.js has already been evaluated in this process. */
function workerModuleLoaded(): boolean {
  try {
    const require = createRequire(import.meta.url);
    const workerJs = path.join(path.dirname(require.resolve('mediasoup')), 'Worker.js');
    return existsSync(workerJs) && require.cache[workerJs] !== undefined;
  } catch {
    return false;
  }
}
