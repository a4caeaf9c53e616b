/**
 * Vitest fixtures (vitest 4 `test.extend`, builder form) for the server tests, so a file declares the
 * servers it needs instead of writing beforeAll/afterAll or try/finally around them:
 *
 *   const it = serverTest({ workers: 1, roomCap: 2 });      // `server`: one real server for the whole file
 *   it('…', async ({ server }) => { … });                    // started on first use, closed after the file
 *   it('…', async ({ startServer }) => { const s = await startServer({ rateLimitBurst: 5 }); … });
 *                                                            // extra servers for one test, closed after it
 */
import { test as base } from 'vitest';
import type { ConfigInput } from '../../sfu/src/config.ts';
import type { StartOptions } from '../../signaling/src/main.ts';
import { startTestServer, type TestServer } from './helpers.ts';

type Cleanup = (close: () => Promise<void>) => void;

/** Starts a test server (helpers.ts defaults: one worker, debug logs) and hands its close to `onCleanup`. */
export async function startServerUntil(onCleanup: Cleanup, config: ConfigInput = {}, opts: StartOptions = {}): Promise<TestServer> {
  const server = await startTestServer(config, opts);
  onCleanup(() => server.close());
  return server;
}

/** `startServer(config?, opts?)`: servers for one test, all closed after it (a test may close one earlier: close() is idempotent). */
export const test = base.extend('startServer', async ({}, { onCleanup }) => {
  const closes: (() => Promise<void>)[] = [];
  onCleanup(async () => {
    await Promise.all(closes.map((close) => close()));
  });
  return (config: ConfigInput = {}, opts: StartOptions = {}): Promise<TestServer> => startServerUntil((close) => void closes.push(close), config, opts);
});

/** `test` with a file-scoped `server` started with `config`/`opts` (and `startServer` for extra ones). */
export function serverTest(config: ConfigInput = {}, opts: StartOptions = {}) {
  return test.extend('server', { scope: 'file' }, async ({}, { onCleanup }) => startServerUntil(onCleanup, config, opts));
}
