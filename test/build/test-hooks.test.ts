/**
 * Nothing test-only ships (issue 13 §7): the production client (client/dist, what `npm start` serves) contains no
 * key-export path — no `?e2ee-test-hooks=1` reading, no `__meet.exportKeysForTest`, no key recorder — while the
 * TEST build (`--mode test-hooks`, .cache/client-test/, served only by the e2e harness) does, so the search below
 * is shown to find them when they are there. Both builds are made by test/client-build.ts if their sources changed.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLIENT_DIRS, ensureClientBuild, type ClientBuild } from '../client-build.ts';

/** Strings that survive minification (a query parameter, property names) and exist only on the key-export path. */
const KEY_EXPORT_MARKERS = [
  'e2ee-test-hooks', // the query parameter (app.svelte.ts)
  'exportKeysForTest', // the __meet method (debug.ts)
  'sendHistory', // a field of the recorder's export (session/test-keys.ts)
];

/** Every text file of a build (index.html, the app chunk, the transform worker chunk, …), concatenated. */
function builtText(kind: ClientBuild): { files: string[]; text: string } {
  const dir = ensureClientBuild(kind);
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = path.join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(js|html|css|txt)$/.test(n)) files.push(p);
    }
  };
  walk(dir);
  return { files, text: files.map((f) => readFileSync(f, 'utf8')).join('\n') };
}

describe('test hooks are compiled out of the production client', () => {
  it('the TEST build has the key-export path (so the search can find it)', () => {
    const { files, text } = builtText('test');
    expect(files.some((f) => f.endsWith('.js'))).toBe(true);
    expect(KEY_EXPORT_MARKERS.filter((m) => !text.includes(m)), 'markers missing from the TEST build').toEqual([]);
    // The define was applied: no bare identifier left to throw a ReferenceError in the browser.
    expect(text.includes('__SEALED_MEET_TEST_HOOKS__')).toBe(false);
  }, 240_000);

  it('the production client/dist has none of it', () => {
    const { files, text } = builtText('production');
    expect(path.dirname(files.find((f) => f.endsWith('index.html'))!)).toBe(CLIENT_DIRS.production);
    // The same app: the read-only debug view is there, only the key export is not.
    expect(text.includes('__meet')).toBe(true);
    expect(KEY_EXPORT_MARKERS.filter((m) => text.includes(m)), 'key-export markers in the production build').toEqual([]);
    expect(text.includes('__SEALED_MEET_TEST_HOOKS__')).toBe(false);
  }, 240_000);
});
