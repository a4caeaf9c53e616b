/**
 * Per-browser-profile persistence (IndexedDB, database `sealed-meet`, object store `kv`):
 * - `identity`: the Ed25519 identity key (identity.ts export format), created on first use;
 * - `verifications`: verified fingerprints per display name (verification.ts export format).
 *
 * If IndexedDB is unavailable (private mode in some browsers), an in-memory identity is used for this page only.
 */
import { exportIdentity, generateIdentity, importIdentity, type Identity } from '../e2ee/identity.ts';
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

async function getString(key: string): Promise<string | undefined> {
  const v = await withStore<unknown>('readonly', (s) => s.get(key));
  return typeof v === 'string' ? v : undefined;
}

async function putString(key: string, value: string): Promise<void> {
  await withStore('readwrite', (s) => s.put(value, key));
}

async function deleteKey(key: string): Promise<void> {
  await withStore('readwrite', (s) => s.delete(key));
}

let memoryIdentity: Identity | null = null;
let loading: Promise<Identity> | null = null;

/** The identity of this browser profile, created and stored on first use. */
export function loadIdentity(): Promise<Identity> {
  loading ??= (async () => {
    try {
      const stored = await getString(IDENTITY_KEY);
      if (stored !== undefined) {
        try {
          return importIdentity(stored);
        } catch {
          console.warn('[identity] stored identity is unreadable: creating a new one');
        }
      }
      const id = generateIdentity();
      await putString(IDENTITY_KEY, exportIdentity(id));
      return id;
    } catch {
      memoryIdentity ??= generateIdentity();
      return memoryIdentity;
    }
  })();
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
    await putString(VERIFICATIONS_KEY, exportVerifications(v));
  } catch {
    /* not persisted */
  }
}
