import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

const root = fileURLToPath(new URL('.', import.meta.url));
const outDir = fileURLToPath(new URL('./dist', import.meta.url));

/**
 * The TEST build: `vite build --config client/vite.config.ts --mode test-hooks` (test/client-build.ts) writes a
 * bundle with the e2e key-export hooks (`?e2ee-test-hooks=1`, `__meet.exportKeysForTest`, session/test-keys.ts)
 * into `.cache/client-test/`. Every other mode — `npm start`, `npm run build:client`, client/dist — is built with
 * `__SEALED_MEET_TEST_HOOKS__` = false, so the minifier drops every hook branch and tree-shaking drops the
 * recorder: the production bundle contains no key-export path at all (test/build/test-hooks.test.ts checks it).
 */
export const TEST_HOOKS_MODE = 'test-hooks';
export const TEST_OUT_DIR = fileURLToPath(new URL('../.cache/client-test', import.meta.url));

/**
 * Subresource Integrity + published build hash (defence against a host that serves modified files).
 *
 * - Every `<script src>` and `<link rel="stylesheet"|"modulepreload" href>` in the built index.html gets
 *   `integrity="sha384-…"` and `crossorigin="anonymous"` (same-origin, so no credentials change).
 * - `dist/build-hash.txt`: `sha256:<hex>` over the sorted lines `<sha256 hex>  <path>` of every file in dist
 *   (build-hash.txt itself excluded), followed by those lines, so operators can publish one hash and anyone can
 *   re-check a served copy. Printed at the end of the build.
 *
 * Limitation: module workers started with `new Worker(new URL('…', import.meta.url))` (the transform worker) are
 * fetched by the browser without an integrity check — SRI does not exist for workers. They are covered by the
 * build hash and by the CSP (`worker-src 'self'`), not by SRI.
 */
/** Adds integrity + crossorigin to every <script src> and <link rel=stylesheet|modulepreload href>. */
export function addIntegrity(html: string, read: (url: string) => Uint8Array): string {
  const tag = /<(script|link)\b([^>]*?)(\/?)>/g;
  return html.replace(tag, (whole, name: string, attrs: string, selfClose: string) => {
    const isScript = name === 'script';
    if (!isScript) {
      const rel = /\brel\s*=\s*"([^"]*)"/.exec(attrs)?.[1]?.toLowerCase() ?? '';
      if (!/\b(stylesheet|modulepreload)\b/.test(rel)) return whole;
    }
    const url = new RegExp(`\\b${isScript ? 'src' : 'href'}\\s*=\\s*"([^"]+)"`).exec(attrs)?.[1];
    if (!url || /\bintegrity\s*=/.test(attrs)) return whole;
    if (!url.startsWith('/') || url.startsWith('//')) throw new Error(`SRI: unexpected subresource URL ${url}`);
    const integrity = 'sha384-' + createHash('sha384').update(read(url)).digest('base64');
    const cross = /\bcrossorigin\b/.test(attrs) ? '' : ' crossorigin="anonymous"';
    return `<${name}${attrs} integrity="${integrity}"${cross}${selfClose}>`;
  });
}

function sriAndBuildHash(): Plugin {
  let dist = outDir;
  return {
    name: 'sealed-meet-sri',
    apply: 'build',
    enforce: 'post',
    configResolved(config) {
      dist = path.resolve(config.root, config.build.outDir);
    },
    // Runs after every file is on disk: other plugins may still rewrite chunks after transformIndexHtml (e.g. the
    // worker URL placeholder), so integrity is computed from the written files, never from the bundle in memory.
    closeBundle() {
      const indexPath = path.join(dist, 'index.html');
      const html = readFileSync(indexPath, 'utf8');
      writeFileSync(indexPath, addIntegrity(html, (url) => readFileSync(path.join(dist, url.replace(/^\/+/, '')))));
      const files: string[] = [];
      const walk = (dir: string): void => {
        for (const n of readdirSync(dir)) {
          const p = path.join(dir, n);
          if (statSync(p).isDirectory()) walk(p);
          else files.push(path.relative(dist, p).split(path.sep).join('/'));
        }
      };
      walk(dist);
      const lines = files
        .filter((f) => f !== 'build-hash.txt')
        .sort()
        .map((f) => `${createHash('sha256').update(readFileSync(path.join(dist, f))).digest('hex')}  ${f}`);
      const list = lines.join('\n') + '\n';
      const hash = createHash('sha256').update(list).digest('hex');
      writeFileSync(path.join(dist, 'build-hash.txt'), `sha256:${hash}\n${list}`);
      console.log(`\nsealed-meet build hash: sha256:${hash} (dist/build-hash.txt; publish it so users can check what is served)`);
    },
  };
}

// The app is served under a strict CSP (`script-src 'self'`), so: no inline scripts, no module preload
// polyfill (it would be injected inline), and every asset file name carries a content hash.
export default defineConfig(({ mode }) => ({
  root,
  base: '/',
  publicDir: false,
  plugins: [svelte(), sriAndBuildHash()],
  // A build-time constant (not an env variable read at run time): `false` in every build but the TEST one.
  define: { __SEALED_MEET_TEST_HOOKS__: JSON.stringify(mode === TEST_HOOKS_MODE) },
  worker: { format: 'es' },
  build: {
    outDir: mode === TEST_HOOKS_MODE ? TEST_OUT_DIR : outDir,
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: { port: 5173 },
}));
