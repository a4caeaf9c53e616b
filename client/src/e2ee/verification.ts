/**
 * Verification records (property 5): which identity (fingerprint, identity.ts) a user has verified for a display
 * name, by comparing safety numbers out of band. Immutable values; the caller stores `exportVerifications(...)`
 * (JSON) in IndexedDB and re-imports it.
 *
 *   check(records, name, fingerprint) ->
 *     'verified'   the name is known and this is the identity verified for it;
 *     'changed'    the name is known but comes with a different identity: show a warning (`warning` is set);
 *     'unverified' the name is not known (`knownAs` is set if this identity was verified under another name).
 *
 * Names are compared after normalization: Unicode NFKC, trimmed, inner whitespace collapsed, lower-cased
 * (so "Alice" and " alice " are the same person for this purpose).
 *
 * Storage format: `{"kind":"sealed-meet verifications","v":1,"records":[{"name":..., "fingerprint":
 * "<base64url 32 bytes>", "verifiedAt": <ms>}, ...]}` (records sorted by normalized name, names unique).
 *
 * @module
 */
import * as z from 'zod/mini';
import { equalBytes, fromBase64urlExact, toBase64url } from './bytes.ts';
import { FINGERPRINT_LEN, fingerprint } from './identity.ts';
import { E2eeError } from './errors.ts';
import { parseJson } from './json.ts';

export const VERIFICATIONS_KIND = 'sealed-meet verifications';
const MAX_NAME = 256;
const MAX_RECORDS = 10_000;

export interface VerificationRecord {
  /** The display name as the user saw it when verifying. */
  readonly name: string;
  readonly fingerprint: Uint8Array;
  readonly verifiedAt: number;
}

export interface Verifications {
  /** Keyed by normalized name. */
  readonly byName: ReadonlyMap<string, VerificationRecord>;
}

export type VerificationStatus = 'verified' | 'unverified' | 'changed';

export interface CheckResult {
  status: VerificationStatus;
  /** Set when status is 'changed': the warning to show. */
  warning?: { kind: 'identity-changed'; name: string; knownFingerprint: Uint8Array; seenFingerprint: Uint8Array; verifiedAt: number };
  /** Set when status is 'unverified' but this identity is verified under another name. */
  knownAs?: string;
}

export function normalizeName(name: string): string {
  return name.normalize('NFKC').trim().replace(/\s+/gu, ' ').toLowerCase();
}

function checkFp(fp: Uint8Array): void {
  if (fp.length !== FINGERPRINT_LEN) throw new E2eeError('bad-key', `fingerprint must be ${FINGERPRINT_LEN} bytes`);
}

function checkName(name: string): string {
  const n = normalizeName(name);
  if (n.length === 0 || n.length > MAX_NAME) throw new E2eeError('malformed', 'name must be 1..256 characters');
  return n;
}

export function emptyVerifications(): Verifications {
  return { byName: new Map() };
}

/** Records `fingerprint` as the verified identity of `name` (replacing any earlier one). */
export function markVerified(v: Verifications, name: string, fingerprint: Uint8Array, now: number): Verifications {
  checkFp(fingerprint);
  const key = checkName(name);
  const byName = new Map(v.byName);
  byName.set(key, { name, fingerprint: fingerprint.slice(), verifiedAt: now });
  return { byName };
}

export function check(v: Verifications, name: string, fingerprint: Uint8Array): CheckResult {
  checkFp(fingerprint);
  const rec = v.byName.get(normalizeName(name));
  if (rec !== undefined) {
    if (equalBytes(rec.fingerprint, fingerprint)) return { status: 'verified' };
    return {
      status: 'changed',
      warning: { kind: 'identity-changed', name: rec.name, knownFingerprint: rec.fingerprint, seenFingerprint: fingerprint.slice(), verifiedAt: rec.verifiedAt },
    };
  }
  for (const r of v.byName.values()) if (equalBytes(r.fingerprint, fingerprint)) return { status: 'unverified', knownAs: r.name };
  return { status: 'unverified' };
}

export function exportVerifications(v: Verifications): string {
  const records = [...v.byName.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => ({ name: r.name, fingerprint: toBase64url(r.fingerprint), verifiedAt: r.verifiedAt }));
  return JSON.stringify({ kind: VERIFICATIONS_KIND, v: 1, records });
}

const VerificationsExport = z.strictObject({
  kind: z.literal(VERIFICATIONS_KIND),
  v: z.number(),
  records: z.array(z.strictObject({ name: z.string(), fingerprint: z.string(), verifiedAt: z.number() })).check(z.maxLength(MAX_RECORDS)),
});

/** Strict import. @throws E2eeError('malformed' | 'unsupported-version' | 'bad-key') */
export function importVerifications(json: string): Verifications {
  const r = parseJson(VerificationsExport, json, 'verifications');
  if (r.v !== 1) throw new E2eeError('unsupported-version', 'verifications version');
  let v = emptyVerifications();
  for (const e of r.records) {
    if (v.byName.has(normalizeName(e.name))) throw new E2eeError('malformed', 'duplicate name');
    v = markVerified(v, e.name, fromBase64urlExact(e.fingerprint, FINGERPRINT_LEN, 'fingerprint'), e.verifiedAt);
  }
  return v;
}

/**
 * Invite links may carry the creator's fingerprint (invite.ts): a member whose identity matches it is the creator,
 * verified automatically. Constant-time comparison.
 */
export function isCreator(creatorFingerprint: Uint8Array | undefined, identityPublicKey: Uint8Array): boolean {
  if (creatorFingerprint === undefined || creatorFingerprint.length !== FINGERPRINT_LEN) return false;
  return equalBytes(creatorFingerprint, fingerprint(identityPublicKey));
}
