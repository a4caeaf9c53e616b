/**
 * Per-browser-profile persistence (IndexedDB, database `sealed-meet`, object store `kv`):
 * - `identity`: the Ed25519 identity key, created on first use (e2ee/identity-key.ts formats): the non-extractable
 *   WebCrypto `CryptoKey` itself with its public key where the browser has WebCrypto Ed25519, else the raw-key JSON
 *   string. A JSON identity (every identity made before the WebCrypto key) is migrated once, on load, into a
 *   non-extractable key that replaces it (same key: same fingerprint); where the browser has no WebCrypto Ed25519 it
 *   stays raw, and is migrated on a later load by a browser that has;
 * - `verifications`: verified fingerprints per display name (verification.ts export format).
 *
 * If IndexedDB is unavailable (private mode in some browsers), an in-memory identity is used for this page only.
 */
import { wipe } from '../e2ee/bytes.ts';
import { isE2eeError } from '../e2ee/errors.ts';
import type { Identity } from '../e2ee/identity.ts';
import {
  createIdentity,
  exportIdentity,
  fromIdentityRecord,
  identityRecord,
  importIdentity,
  toNonExtractable,
  type IdentityKey,
  type RawIdentity,
  type WebCryptoIdentity,
} from '../e2ee/identity-key.ts';
import { emptyVerifications, exportVerifications, importVerifications, type Verifications } from '../e2ee/verification.ts';

const DB_NAME = 'sealed-meet';
const STORE = 'kv';
const IDENTITY_KEY = 'identity';
const VERIFICATIONS_KEY = 'verifications';

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('indexedDB open failed'));
  });
}

async function withStore<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error ?? new Error('indexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('indexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

function getValue(key: string): Promise<unknown> {
  return withStore<unknown>('readonly', (s) => s.get(key));
}

async function getString(key: string): Promise<string | undefined> {
  const v = await getValue(key);
  return typeof v === 'string' ? v : undefined;
}

/** `value`: a string, or a structured-clonable object (the identity record with its CryptoKey). */
async function putValue(key: string, value: unknown): Promise<void> {
  await withStore('readwrite', (s) => s.put(value, key));
}

async function deleteKey(key: string): Promise<void> {
  await withStore('readwrite', (s) => s.delete(key));
}

let memoryIdentity: Promise<Identity> | null = null;
let loading: Promise<Identity> | null = null;

/** What `identity` holds for `id`: the CryptoKey record, or the raw JSON only for a raw key. */
function storedForm(id: IdentityKey): unknown {
  return id.kind === 'webcrypto' ? identityRecord(id) : exportIdentity(id);
}

/** The old JSON identity once into a non-extractable key that replaces it; raw as it was if that cannot be done. */
async function migrate(raw: RawIdentity): Promise<Identity> {
  let key: WebCryptoIdentity | null;
  try {
    key = await toNonExtractable(raw);
    if (key === null) return raw; // no WebCrypto Ed25519 here: keep the raw key (and its JSON)
    await putValue(IDENTITY_KEY, identityRecord(key)); // replaces the JSON (one transaction)
  } catch {
    console.warn('[identity] could not move the identity into a non-extractable key: keeping it as it is');
    return raw;
  }
  wipe(raw.secretKey);
  return key;
}

async function loadStored(): Promise<Identity> {
  const stored = await getValue(IDENTITY_KEY);
  if (stored !== undefined) {
    try {
      return typeof stored === 'string' ? await migrate(importIdentity(stored)) : await fromIdentityRecord(stored);
    } catch (e) {
      // A key this page cannot use now (no WebCrypto, a failing sign) is left stored for the next page: memory identity.
      if (!isE2eeError(e) || e.code === 'state') throw e;
      console.warn('[identity] stored identity is unreadable: creating a new one');
    }
  }
  const id = await createIdentity();
  await putValue(IDENTITY_KEY, storedForm(id));
  return id;
}

/** The identity of this browser profile, created and stored on first use. */
export function loadIdentity(): Promise<Identity> {
  loading ??= loadStored().catch(() => (memoryIdentity ??= createIdentity()));
  return loading;
}

/** Throw the identity away; the next `loadIdentity()` creates a new one (others will see "identity changed"). */
export async function resetIdentity(): Promise<void> {
  loading = null;
  memoryIdentity = null;
  try {
    await deleteKey(IDENTITY_KEY);
  } catch {
    /* nothing stored */
  }
}

export async function loadVerifications(): Promise<Verifications> {
  try {
    const s = await getString(VERIFICATIONS_KEY);
    return s === undefined ? emptyVerifications() : importVerifications(s);
  } catch {
    return emptyVerifications();
  }
}

export async function saveVerifications(v: Verifications): Promise<void> {
  try {
    await putValue(VERIFICATIONS_KEY, exportVerifications(v));
  } catch {
    /* not persisted */
  }
}
