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
 * Which worker binary would be used, without checking it: `MEDIASOUP_WORKER_BIN` if set (resolved against the
 * current directory), else the one built by infra/build-mediasoup.sh. `fromEnv` says which (npm run doctor reports it).
 */
export function chosenWorkerBin(env: NodeJS.ProcessEnv = process.env): { file: string; fromEnv: boolean } {
  const fromEnv = env['MEDIASOUP_WORKER_BIN'];
  return fromEnv ? { file: path.resolve(fromEnv), fromEnv: true } : { file: DEFAULT_WORKER_BIN, fromEnv: false };
}

/**
 * Absolute path of the mediasoup worker binary (chosenWorkerBin). Throws a clear error if the file is missing or not
 * executable.
 */
export function resolveWorkerBin(): string {
  const { file, fromEnv } = chosenWorkerBin();
  if (isExecutableFile(file)) return file;
  throw new Error(
    fromEnv
      ? `MEDIASOUP_WORKER_BIN=${process.env['MEDIASOUP_WORKER_BIN']} is not an executable file. Unset it to use the worker built by ` +
          `\`npm run build:worker\`, or point it at a mediasoup ${MEDIASOUP_VERSION} worker binary.`
      : `mediasoup worker binary not found at ${DEFAULT_WORKER_BIN}. ` +
          'Run `npm run build:worker` (infra/build-mediasoup.sh, ~4 minutes) or `npm run setup` first.',
  );
}
