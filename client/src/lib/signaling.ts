/**
 * Typed socket.io client for the wire contract in `signaling/src/protocol.ts` (type-only import: the client
 * bundle does not carry zod). Requests resolve with the ack's `data` or reject with a `RequestError`
 * whose `code` is one of the contract's closed error codes (or `TIMEOUT` / `DISCONNECTED` locally).
 */
import { io, type Socket } from 'socket.io-client';
import type {
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
/** @deprecated the `createTransport` answer is `TransportInfo` (one definition, sfu/src/wire.ts); alias kept while call.svelte.ts moves over. */
export type { TransportInfo as TransportResponse, ConsumerInfo as ConsumeResponse } from '../../../signaling/src/protocol.ts';

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

type AnyAckResult = { ok: true; data: unknown } | { ok: false; error: { code: ErrorCode; message: string } };
type LooseEmitter = {
  timeout(ms: number): { emit(ev: string, payload: unknown, cb: (err: Error | null, res: AnyAckResult) => void): void };
};

export function request<K extends RequestName>(
  socket: MeetSocket,
  name: K,
  payload: Requests[K],
  timeoutMs = 10_000,
): Promise<Responses[K]> {
  if (!socket.connected) return Promise.reject(new RequestError(name, 'DISCONNECTED', 'socket not connected'));
  return new Promise((resolve, reject) => {
    (socket as unknown as LooseEmitter).timeout(timeoutMs).emit(name, payload, (err, res) => {
      if (err) {
        reject(new RequestError(name, socket.connected ? 'TIMEOUT' : 'DISCONNECTED', err.message));
      } else if (res.ok) {
        resolve(res.data as Responses[K]);
      } else {
        reject(new RequestError(name, res.error.code, res.error.message));
      }
    });
  });
}
