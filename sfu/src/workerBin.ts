/**
 * The one place that knows where the mediasoup worker binary lives.
 *
 * npm install scripts are off (.npmrc), so mediasoup's postinstall never fetches or builds a worker.
 * infra/build-mediasoup.sh builds it from the npm tarball with Debian's libraries into
 * `<repo>/.cache/mediasoup-worker/<version>/mediasoup-worker`, outside node_modules so `npm ci` does
 * not wipe it. WorkerPool hands the path to `createWorker({ workerBin })` (mediasoup >= 3.15), so
 * nothing depends on when mediasoup is first loaded.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { version as mediasoupVersion } from 'mediasoup';
import { REPO_ROOT } from './paths.ts';

/** The mediasoup version installed (node_modules/mediasoup); the build script builds that one. */
export const MEDIASOUP_VERSION: string = mediasoupVersion;

/** Repository root (this file is <root>/sfu/src/workerBin.ts). */

/** Where infra/build-mediasoup.sh installs the worker. */
export const DEFAULT_WORKER_BIN = path.join(REPO_ROOT, '.cache', 'mediasoup-worker', MEDIASOUP_VERSION, 'mediasoup-worker');

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
          `\`npm run build:worker\`, or point it at a mediasoup ${MEDIASOUP_VERSION} worker binary.`,
      );
    }
    return p;
  }
  if (!isExecutableFile(DEFAULT_WORKER_BIN)) {
    throw new Error(
      `mediasoup worker binary not found at ${DEFAULT_WORKER_BIN}. ` +
        'Run `npm run build:worker` (infra/build-mediasoup.sh, ~4 minutes) or `npm run setup` first.',
    );
  }
  return DEFAULT_WORKER_BIN;
}
