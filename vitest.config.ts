import { defineConfig } from 'vitest/config';

// Two projects: fast in-process tests (crypto core, schemas, SFU + signaling with real mediasoup workers)
// and browser end-to-end tests (real Chromium driven by playwright-core). The machine has 2 cores, so the
// e2e project runs its files one at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**', 'node_modules/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
