/**
 * Typed socket.io client for the wire contract in `signaling/src/protocol.ts` (type-only import: the client
 * bundle does not carry zod). Requests resolve with the ack's `data` or reject with a `RequestError`
 * whose `code` is one of the contract's closed error codes (or `TIMEOUT` / `DISCONNECTED` locally).
 */
import { io, type Socket } from 'socket.io-client';
import type {
  AckResult,
  ClientToServerEvents,
  ErrorCode,
  Requests,
  Responses,
  ServerToClientEvents,
} from '../../../signaling/src/protocol.ts';

export type {
  ConsumerInfo,
  ErrorCode,
  JoinResponse,
  MediaKind,
  ProducerInfo,
  Requests,
  Responses,
  TrackSource,
  TransportInfo,
} from '../../../signaling/src/protocol.ts';

export type RequestName = keyof Requests & keyof Responses;
export type LocalErrorCode = 'TIMEOUT' | 'DISCONNECTED';

export class RequestError extends Error {
  readonly code: ErrorCode | LocalErrorCode;
  readonly request: RequestName;
  constructor(request: RequestName, code: ErrorCode | LocalErrorCode, message: string) {
    super(`${request}: ${code}: ${message}`);
    this.name = 'RequestError';
    this.code = code;
    this.request = request;
  }
}

export type MeetSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export function connectSocket(url: string): MeetSocket {
  return io(url, {
    transports: ['websocket'],
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
    timeout: 8000,
    autoConnect: true,
  });
}

/**
 * `emitWithAck` for one request. socket.io-client's own typing of it cannot be resolved for a generic
 * event name `K` (`AllButLast<Parameters<...>[K]>` stays deferred), so `request` states it here.
 */
type AckEmitter<K extends RequestName> = { emitWithAck(ev: K, payload: Requests[K]): Promise<AckResult<Responses[K]>> };

/**
 * Sends `name` with `payload` and waits for its ack (socket.io's `timeout().emitWithAck()`): resolves with
 * the ack's `data`, rejects with a RequestError carrying the server's code, TIMEOUT when no ack came in
 * `timeoutMs`, DISCONNECTED when the socket is (or went) down.
 */
export async function request<K extends RequestName>(
  socket: MeetSocket,
  name: K,
  payload: Requests[K],
  timeoutMs = 10_000,
): Promise<Responses[K]> {
  if (!socket.connected) throw new RequestError(name, 'DISCONNECTED', 'socket not connected');
  let res: AckResult<Responses[K]>;
  try {
    res = await (socket.timeout(timeoutMs) as AckEmitter<K>).emitWithAck(name, payload);
  } catch (err) {
    throw new RequestError(name, socket.connected ? 'TIMEOUT' : 'DISCONNECTED', err instanceof Error ? err.message : String(err));
  }
  if (!res.ok) throw new RequestError(name, res.error.code, res.error.message);
  return res.data;
}

/**
 * `attempt()` again while it fails with RATE_LIMITED (the server refused it and sent nothing), after 0.25, 0.5, 1, 2
 * and 4 s; any other failure, or the sixth refusal, rejects.
 */
export async function retryRateLimited<T>(attempt: () => Promise<T>, retries = 5, firstDelayMs = 250): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof RequestError && err.code === 'RATE_LIMITED') || i >= retries) throw err;
      await new Promise((r) => setTimeout(r, firstDelayMs * 2 ** i));
    }
  }
}
