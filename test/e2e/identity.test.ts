/**
 * The identity key in a real Chromium profile (issue 13 §7, lib/identity-store.ts): a profile that still holds an
 * identity in the old JSON format (the raw secret, as every identity was stored before) joins a call; afterwards its
 * IndexedDB holds the identity as a CryptoKey with `extractable === false` (exportKey rejects), the JSON entry is
 * gone, and the fingerprint is the one of the old key — as this browser shows it, and as another member sees it.
 * After a reload the same key and fingerprint are back. A fresh profile gets a non-extractable key from the start.
 *
 * Saves test-results/identity-participants.png.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportIdentity, rawIdentity } from '../../client/src/e2ee/identity-key.ts';
import { identityDisplay } from '../../client/src/session/trust-monitor.ts';
import { Harness, createMeeting, dumpLogs, joinByLink, resultsPath, snapshot, waitUntil, type Participant } from './harness.ts';

const API = 'script' as const;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** What the profile's IndexedDB (`sealed-meet` / `kv`) holds, read in the page. */
interface StoredIdentity {
  keys: string[];
  /** Values that are strings containing the old export's kind (the JSON identity). */
  jsonIdentities: number;
  type: string;
  v: unknown;
  isCryptoKey: boolean;
  extractable: boolean | null;
  algorithm: string | null;
  usages: string[];
  exportRejects: string[];
  publicKey: string | null;
}

async function storedIdentity(p: Participant): Promise<StoredIdentity> {
  return p.page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const q = indexedDB.open('sealed-meet');
      q.onsuccess = () => resolve(q.result);
      q.onerror = () => reject(q.error);
    });
    const read = <T,>(f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> =>
      new Promise((resolve, reject) => {
        const r = f(db.transaction('kv', 'readonly').objectStore('kv'));
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
    const keys = (await read((s) => s.getAllKeys())).map(String);
    const values = await read((s) => s.getAll());
    const v = (await read((s) => s.get('identity'))) as { v?: unknown; privateKey?: unknown; publicKey?: unknown } | string | undefined;
    db.close();
    const rec = typeof v === 'object' && v !== null ? v : undefined;
    const key = rec?.privateKey instanceof CryptoKey ? rec.privateKey : null;
    const exportRejects: string[] = [];
    if (key) {
      for (const format of ['pkcs8', 'jwk', 'raw'] as const) {
        if (await crypto.subtle.exportKey(format, key).then(() => false, () => true)) exportRejects.push(format);
      }
    }
    const pk = rec?.publicKey instanceof Uint8Array ? rec.publicKey : null;
    return {
      keys,
      jsonIdentities: values.filter((x) => typeof x === 'string' && x.includes('sealed-meet identity')).length,
      type: typeof v,
      v: rec?.v,
      isCryptoKey: key !== null,
      extractable: key ? key.extractable : null,
      algorithm: key ? key.algorithm.name : null,
      usages: key ? [...key.usages] : [],
      exportRejects,
      publicKey: pk ? [...pk].map((b) => b.toString(16).padStart(2, '0')).join('') : null,
    };
  });
}

function expectNonExtractable(s: StoredIdentity, publicKey: string): void {
  expect(s.type).toBe('object');
  expect(s.v).toBe(2);
  expect(s.isCryptoKey).toBe(true);
  expect(s.extractable).toBe(false);
  expect(s.algorithm).toBe('Ed25519');
  expect(s.usages).toEqual(['sign']);
  expect(s.exportRejects).toEqual(['pkcs8', 'jwk', 'raw']);
  expect(s.publicKey).toBe(publicKey);
  expect(s.jsonIdentities, 'no JSON identity left').toBe(0);
}

async function shownFingerprint(p: Participant): Promise<string> {
  if ((await p.page.getByTestId('participants').count()) === 0) await p.page.getByTestId('toggle-participants').click();
  return (await p.page.locator('[title="Your identity fingerprint"]').textContent({ timeout: 10_000 })) ?? '';
}

describe('identity key in the browser: non-extractable, migrated from the old JSON, stable across reloads', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('an old JSON identity becomes a non-extractable CryptoKey on join, with the same fingerprint, also after a reload', async () => {
    const old = rawIdentity();
    const oldJson = exportIdentity(old);
    const expected = identityDisplay(old.publicKey);
    const alice = await h.participant('Alice');
    const bob = await h.participant('Bob');
    try {
      // Seed the old format on the app's origin from a page that does not run the app (no identity made yet).
      await alice.page.goto(`${h.url}/build-hash.txt`);
      await alice.page.evaluate(async (json) => {
        const db = await new Promise<IDBDatabase>((resolve, reject) => {
          const q = indexedDB.open('sealed-meet', 1);
          q.onupgradeneeded = () => q.result.createObjectStore('kv');
          q.onsuccess = () => resolve(q.result);
          q.onerror = () => reject(q.error);
        });
        await new Promise<void>((resolve, reject) => {
          const tx = db.transaction('kv', 'readwrite');
          tx.objectStore('kv').put(json, 'identity');
          tx.oncomplete = () => resolve();
          tx.onerror = () => reject(tx.error);
        });
        db.close();
      }, oldJson);
      const seeded = await storedIdentity(alice);
      expect([seeded.type, seeded.jsonIdentities]).toEqual(['string', 1]);

      const link = await createMeeting(alice, h.url, API);
      await joinByLink(alice, link, API);
      expect((await snapshot(alice)).e2ee.myFingerprint).toBe(expected);
      expect(await shownFingerprint(alice)).toBe(expected);
      expectNonExtractable(await storedIdentity(alice), hex(old.publicKey));

      // another member sees the same (old) fingerprint for alice, and alice signs with the WebCrypto key for it
      await joinByLink(bob, link, API);
      await waitUntil(async () => (await snapshot(bob)).e2ee.members.some((m) => m.fingerprint === expected && m.keyState !== 'waiting'), 30_000, 'bob has alice, keyed');
      const bobFp = (await snapshot(bob)).e2ee.myFingerprint;
      expect(bobFp).toMatch(/^[0-9a-f]{4}( [0-9a-f]{4}){9}$/);
      expect((await snapshot(alice)).e2ee.members.map((m) => m.fingerprint)).toContain(bobFp);
      // the fresh profile got a non-extractable key from the start
      const bobStored = await storedIdentity(bob);
      expect(bobStored.publicKey).toMatch(/^[0-9a-f]{64}$/);
      expectNonExtractable(bobStored, bobStored.publicKey!);
      await alice.page.screenshot({ path: resultsPath('identity-participants.png') });

      // reload (the fragment was removed from the address bar: open the link again): the same key and fingerprint
      await alice.page.reload();
      await joinByLink(alice, link, API);
      expect((await snapshot(alice)).e2ee.myFingerprint).toBe(expected);
      expect(await shownFingerprint(alice)).toBe(expected);
      expectNonExtractable(await storedIdentity(alice), hex(old.publicKey));
      await waitUntil(async () => (await snapshot(bob)).e2ee.members.some((m) => m.fingerprint === expected), 30_000, 'bob sees the rejoined alice with the same fingerprint');
    } catch (e) {
      console.log(dumpLogs(h));
      throw e;
    }
  }, 180_000);
});
