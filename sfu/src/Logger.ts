/**
 * A tiny JSON-lines logger. By design it only accepts a closed set of field names with primitive
 * values: event names, room ids, peer ids, error codes, pids and counters. Payloads, tokens, display
 * names and relay blobs have no field to go into, so they cannot be logged by accident.
 *
 * Room and peer ids are never written as given: the room id is in the invite URL, so a raw id in a log
 * line would name a meeting. The `roomId` / `peerId` fields are written as `room: "r-<8 hex>"` /
 * `peer: "p-<8 hex>"`, a keyed hash (HMAC-SHA-256, first 32 bits) under a random key made once per
 * process and never stored: lines of one process can be correlated while debugging, but a pseudonym
 * cannot be computed from a link, nor linked to the same room in another process or after a restart.
 */
import { createHmac, randomBytes } from 'node:crypto';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogField =
  | 'event'
  | 'roomId'
  | 'peerId'
  | 'code'
  | 'reason'
  | 'pid'
  | 'workerPid'
  | 'workers'
  | 'rooms'
  | 'peers'
  | 'count'
  | 'url'
  | 'host'
  | 'port'
  | 'ms'
  | 'error';
export type LogFields = Partial<Record<LogField, string | number | boolean | null>>;

export type LogSink = (line: string) => void;

/** This process's pseudonym key: random, in memory only, gone with the process. */
const PSEUDONYM_KEY = randomBytes(32);

/** Fields written as a pseudonym, under this output key and prefix. */
const PSEUDONYMOUS: Partial<Record<LogField, { key: string; prefix: string }>> = {
  roomId: { key: 'room', prefix: 'r-' },
  peerId: { key: 'peer', prefix: 'p-' },
};

/** The pseudonym this process's log lines use for a room or peer id (`r-` / `p-` + 8 hex). */
export function pseudonym(kind: 'roomId' | 'peerId', id: string): string {
  const { prefix } = PSEUDONYMOUS[kind]!;
  return prefix + createHmac('sha256', PSEUDONYM_KEY).update(`${kind}\0${id}`, 'utf8').digest('hex').slice(0, 8);
}

export class Logger {
  readonly #level: LogLevel;
  readonly #sink: LogSink;
  readonly #scope: string;

  constructor(level: LogLevel = 'info', sink?: LogSink, scope = 'sealed-meet') {
    this.#level = level;
    this.#sink = sink ?? ((line) => process.stdout.write(`${line}\n`));
    this.#scope = scope;
  }

  get level(): LogLevel {
    return this.#level;
  }

  child(scope: string): Logger {
    return new Logger(this.#level, this.#sink, scope);
  }

  enabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return RANK[level] >= RANK[this.#level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.#write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#write('error', msg, fields);
  }

  #write(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const line: Record<string, unknown> = { t: new Date().toISOString(), level, scope: this.#scope, msg };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const alias = PSEUDONYMOUS[k as LogField];
        if (alias) {
          line[alias.key] = v === null ? null : pseudonym(k as 'roomId' | 'peerId', String(v));
          continue;
        }
        // Bound every value: a string field is an id, a code or a short message, never a payload.
        line[k] = typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…` : v;
      }
    }
    try {
      this.#sink(JSON.stringify(line));
    } catch {
      // A logger never throws.
    }
  }
}

/** Short, stack-free description of an error, safe to log or to send to a client. */
export function errorMessage(error: unknown): string {
  const raw = error instanceof Error ? error.message : typeof error === 'string' ? error : 'unknown error';
  const firstLine = raw.split('\n')[0] ?? '';
  return firstLine.length > 200 ? `${firstLine.slice(0, 200)}…` : firstLine;
}
