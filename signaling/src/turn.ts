/**
 * TURN credentials for the join answer.
 *
 * With TURN_SECRET (coturn `use-auth-secret` + `static-auth-secret`), every successful join gets credentials of its
 * own in the "TURN REST API" scheme (draft-uberti-behave-turn-rest-00 §2.2, as coturn implements it):
 *   username   = `<expiry as unix seconds>:<suffix>`   (suffix: 96 random bits, base64url; names no person, room or peer)
 *   credential = base64(HMAC-SHA1(secret, username))
 * coturn recomputes the HMAC from its copy of the secret and refuses a username whose expiry has passed (401), but
 * only when an allocation is made: an allocation made in time keeps working (refreshes, permissions, channels) for as
 * long as the client keeps it, so a call outlives its credentials. New allocations after the expiry (an ICE restart)
 * need fresh credentials: every `restartIce` answer carries new ones, which the client sets on the transport
 * (`updateIceServers`) before it restarts ICE.
 *
 * Without TURN_SECRET the join answer carries the fixed list (static TURN_USERNAME/TURN_CREDENTIAL, or none).
 * The secret never leaves this module; the credentials are never logged.
 *
 * No npm library does this (the candidates are TURN servers, not credential helpers); HMAC-SHA1 comes from node:crypto.
 *
 * @module
 */
import { createHmac, randomBytes } from 'node:crypto';
import { iceServersOf, type Config, type IceServer, type IceTransportPolicy } from '../../sfu/src/config.ts';

export type TurnSettings = Pick<Config, 'turnUrls' | 'turnSecret' | 'turnTtl' | 'turnUsername' | 'turnCredential' | 'iceTransportPolicy'>;

export interface TurnCredentials {
  username: string;
  credential: string;
  /** Unix seconds after which coturn refuses new allocations with these credentials. */
  expiresAt: number;
}

/** What a successful join answer carries about ICE. */
export interface JoinIce {
  iceServers: IceServer[];
  iceTransportPolicy: IceTransportPolicy;
}

export class TurnError extends Error {
  readonly code: 'BAD_SECRET' | 'BAD_TTL' | 'BAD_TIME' | 'BAD_SUFFIX';
  constructor(code: TurnError['code'], message: string) {
    super(message);
    this.name = 'TurnError';
    this.code = code;
  }
}

/** Random bits in the username suffix: unguessable, unlinkable across joins. */
const SUFFIX_BYTES = 12;

/**
 * Credentials valid for `ttlSec` seconds from `nowMs` (TURN REST API §2.2: "username = timestamp:userid",
 * "password = base64(HMAC-SHA1(secret, username))"). `suffix` defaults to fresh random bytes.
 */
export function turnCredentials(secret: string, ttlSec: number, nowMs: number = Date.now(), suffix?: string): TurnCredentials {
  if (typeof secret !== 'string' || secret.length === 0) throw new TurnError('BAD_SECRET', 'the TURN secret is empty');
  if (!Number.isInteger(ttlSec) || ttlSec <= 0) throw new TurnError('BAD_TTL', `TURN TTL must be a positive whole number of seconds, got ${ttlSec}`);
  if (!Number.isFinite(nowMs) || nowMs < 0) throw new TurnError('BAD_TIME', `bad clock value ${nowMs}`);
  const expiresAt = Math.floor(nowMs / 1000) + ttlSec;
  const id = suffix ?? randomBytes(SUFFIX_BYTES).toString('base64url');
  // coturn splits the username at the first ':' (its default rest-api-separator) and reads the expiry before it.
  if (id.length === 0 || id.includes(':')) throw new TurnError('BAD_SUFFIX', 'the username suffix must be non-empty and contain no ":"');
  const username = `${expiresAt}:${id}`;
  // TURN REST API §2.2: the password is the base64 HMAC-SHA1 of the username under the shared secret.
  const credential = createHmac('sha1', secret).update(username, 'utf8').digest('base64');
  return { username, credential, expiresAt };
}

/** Hands out the ICE part of each join answer. */
export class TurnIssuer {
  readonly #settings: TurnSettings;
  readonly #now: () => number;
  readonly #fixed: IceServer[];

  constructor(settings: TurnSettings, now: () => number = Date.now) {
    if (settings.turnSecret !== undefined) turnCredentials(settings.turnSecret, settings.turnTtl, now());
    this.#settings = { ...settings, turnUrls: [...settings.turnUrls] };
    this.#now = now;
    this.#fixed = iceServersOf(settings);
  }

  /** No TURN at all, policy `all` (tests and a plain localhost setup). */
  static none(): TurnIssuer {
    return new TurnIssuer({ turnUrls: [], turnSecret: undefined, turnTtl: 600, turnUsername: undefined, turnCredential: undefined, iceTransportPolicy: 'all' });
  }

  /** Fresh for every call: each join gets credentials of its own (TURN_SECRET), or a copy of the fixed list. */
  forJoin(): JoinIce {
    const { turnUrls, turnSecret, turnTtl, iceTransportPolicy } = this.#settings;
    if (turnSecret === undefined || turnUrls.length === 0) {
      return { iceServers: this.#fixed.map((s) => ({ ...s })), iceTransportPolicy };
    }
    const { username, credential } = turnCredentials(turnSecret, turnTtl, this.#now());
    return { iceServers: [{ urls: [...turnUrls], username, credential }], iceTransportPolicy };
  }
}
