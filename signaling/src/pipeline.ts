/**
 * The request pipeline of one socket: what every inbound event goes through before and after its
 * handler, whatever the handler does. In this order:
 *   1. per-socket token-bucket rate limit           → RATE_LIMITED
 *   2. exactly one payload argument                  → BAD_REQUEST
 *   3. payload size (JSON bytes) ≤ maxPayloadBytes   → TOO_LARGE
 *   4. `schemas[event].safeParse`                    → BAD_REQUEST (zod message)
 *   5. the handler, on the socket's serial queue (p-queue, concurrency 1): in arrival order, one at a time
 * and the ack is called exactly once with `{ ok: true, data }` or `{ ok: false, error: { code, message } }`.
 * A missing ack is tolerated. Unknown events are answered BAD_REQUEST (if they carry an ack; they count
 * against the rate limit) and dropped. A handler's `SfuError` keeps its code; anything else it throws is
 * SFU_ERROR with the first line of its message (never a stack).
 *
 * No mediasoup and no room logic here: `server.ts` passes the handler table.
 */
import PQueue from 'p-queue';
import type { z } from 'zod';
import { errorMessage, type Logger } from '../../sfu/src/Logger.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import type { MessageCapture } from './capture.ts';
import type { AckResult, ErrorCode, ProtocolError, SocketData } from './protocol.ts';
import { TokenBucket } from './RateLimiter.ts';

export type SchemaTable = Record<string, z.ZodType>;
/** One handler per schema, called with the parsed payload; its result is the ack's `data`. */
export type HandlerTable<S extends SchemaTable> = { [K in keyof S]: (request: z.output<S[K]>) => Promise<unknown> };

/** The part of a socket.io server socket the pipeline uses. */
export interface PipelineSocket {
  readonly id: string;
  readonly data: SocketData;
  use(fn: (packet: [string, ...unknown[]], next: (err?: Error) => void) => void): unknown;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

export interface PipelineOptions {
  maxPayloadBytes: number;
  /** Per-socket token bucket. */
  rateLimit: { perSec: number; burst: number };
  logger: Logger;
  /** TEST-ONLY: records every ack answer (capture.ts). */
  capture?: MessageCapture | undefined;
  /** Last word on a handler's failure before it is sent (e.g. SFU_ERROR → UNAVAILABLE once a room is lost). */
  mapError?: (error: ProtocolError) => ProtocolError;
  /** Told the code of every error answer (unknown events included), e.g. for metrics. */
  onFailure?: (code: ErrorCode) => void;
}

export interface SocketPipeline {
  /** Runs `task` on the socket's serial queue, after every handler queued before it. */
  enqueue<T>(task: () => Promise<T>): Promise<T>;
}

type AnyAck = (res: AckResult<unknown>) => void;

/** The wire form of anything a handler throws. */
export function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof SfuError) return { code: error.code, message: error.message };
  return { code: 'SFU_ERROR', message: errorMessage(error) };
}

function jsonBytes(payload: unknown): number {
  try {
    const s = JSON.stringify(payload);
    return s === undefined ? 0 : Buffer.byteLength(s, 'utf8');
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

function zodMessage(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ')
    .slice(0, 500);
}

/**
 * Serves `handlers` on `socket` through the pipeline above. Call it once per connection, after any
 * middleware that must see packets first (the capture's). Listens with `socket.on(event)` per schema.
 */
export function servePipeline<S extends SchemaTable>(
  socket: PipelineSocket,
  schemas: S,
  handlers: HandlerTable<S>,
  opts: PipelineOptions,
): SocketPipeline {
  const { maxPayloadBytes, logger, capture } = opts;
  const bucket = new TokenBucket(opts.rateLimit.perSec, opts.rateLimit.burst);
  const queue = new PQueue({ concurrency: 1 });
  const where = () => ({ roomId: socket.data.roomId ?? null, peerId: socket.data.peerId ?? null });

  /** Sends `res` to `ack` (if any), guarding against a throwing ack callback. */
  const answer = (event: string, ack: AnyAck | undefined, res: AckResult<unknown>): void => {
    if (!ack) return;
    capture?.record('ack', socket.id, socket.data.peerId ?? null, event, [res]);
    try {
      ack(res);
    } catch {
      // a throwing ack is the client library's problem
    }
  };

  // Unknown events: count them, answer BAD_REQUEST if they carry an ack, never dispatch them.
  socket.use((packet, next) => {
    const [event] = packet;
    if (typeof event === 'string' && Object.hasOwn(schemas, event)) {
      next();
      return;
    }
    const last = packet[packet.length - 1];
    const code: ErrorCode = bucket.take() ? 'BAD_REQUEST' : 'RATE_LIMITED';
    logger.debug('rejected unknown event', { code });
    opts.onFailure?.(code);
    const message = code === 'BAD_REQUEST' ? 'unknown event' : 'rate limited';
    answer(typeof event === 'string' ? event : String(event), typeof last === 'function' ? (last as AnyAck) : undefined, {
      ok: false,
      error: { code, message },
    });
  });

  for (const event of Object.keys(schemas) as (keyof S & string)[]) {
    const schema = schemas[event] as z.ZodType;
    const handler = handlers[event] as (request: unknown) => Promise<unknown>;
    socket.on(event, (...args: unknown[]) => {
      const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as AnyAck) : undefined;
      // Every path below replies once (and socket.io's ack drops any second call).
      const reply = (res: AckResult<unknown>): void => {
        if (!res.ok) {
          logger[res.error.code === 'SFU_ERROR' ? 'warn' : 'debug']('request failed', { event, code: res.error.code, ...where() });
          opts.onFailure?.(res.error.code);
        }
        answer(event, ack, res);
      };
      const fail = (code: ErrorCode, message: string): void => reply({ ok: false, error: { code, message } });

      if (!bucket.take()) return fail('RATE_LIMITED', 'too many events; slow down');
      if (args.length !== 1) return fail('BAD_REQUEST', 'expected exactly one payload object');
      const payload = args[0];
      if (jsonBytes(payload) > maxPayloadBytes) return fail('TOO_LARGE', `payload over ${maxPayloadBytes} bytes`);
      const parsed = schema.safeParse(payload);
      if (!parsed.success) return fail('BAD_REQUEST', zodMessage(parsed.error));
      logger.debug('event', { event, ...where() });
      queue.add(() => handler(parsed.data)).then(
        (data) => reply({ ok: true, data }),
        (error: unknown) => {
          const err = toProtocolError(error);
          reply({ ok: false, error: opts.mapError ? opts.mapError(err) : err });
        },
      );
    });
  }

  return { enqueue: (task) => queue.add(task) };
}
