/**
 * A tiny JSON-lines logger. By design it only accepts a closed set of field names with primitive
 * values: event names, room ids, peer ids, error codes, pids and counters. Payloads, tokens, display
 * names and relay blobs have no field to go into, so they cannot be logged by accident.
 */
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
