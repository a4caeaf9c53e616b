/**
 * The node link of cluster mode: requests of members from the node holding their socket (the "edge") to the node
 * hosting their room (the "home"), and everything the home sends back (replies, room and peer events, relays,
 * `rejoin`, "left the room"), as ONE ordered stream per receiving node.
 *
 * Why not socket.io's own inter-server path: in @socket.io/redis-streams-adapter 0.3.1 (dist/adapter.js `doPublish`,
 * `isEphemeral`) `serverSideEmit` is "ephemeral" and goes over Redis PUB/SUB, while `io.to(socketId).emit` goes into
 * the Redis stream (XADD) read by a separate connection with blocking XREAD. The two arrive over two connections with
 * no order between them, so a reply could overtake the events sent before it (and the client drops a `peerJoined`
 * that arrives before its join answer). Here every message for node N is XADDed to the Redis stream `sm:link:<N>`
 * through the sender's one Redis client, in call order; N reads its stream with XREAD in stream order. So what one
 * home sends one edge arrives in the order it was sent.
 *
 * Stream entry: fields `f` (sender node id) and `m` (JSON, one of `LinkMessage`). Streams are capped (MAXLEN ~ 2000)
 * and expire 10 min after their last message (a node gone for good leaves nothing behind).
 * A request not answered within `timeoutMs` (or whose node is declared lost) is answered UNAVAILABLE.
 */
import type { Redis } from 'ioredis';
import { errorMessage, type Logger } from '../../../sfu/src/Logger.ts';
import type { AckResult, ProtocolError } from '../protocol.ts';

/** Where a room lives (cluster/directory.ts). */
export interface RoomLocation {
  home: string;
  tokenHash: Buffer | undefined;
}

/** The part of the room directory (cluster/directory.ts, RoomDirectory) signaling uses. */
export interface ClusterDirectory {
  readonly nodeId: string;
  /** The live home; claims the room for this node when no live node hosts it. */
  locate(roomId: string): Promise<RoomLocation>;
  /** This node created the room. */
  hosted(roomId: string, tokenHash: Buffer): Promise<void>;
  /** The room closed here. */
  released(roomId: string): Promise<void>;
  /** A node whose lease expired; returns the unsubscribe. */
  onNodeLost(fn: (nodeId: string) => void): () => void;
}

/** One link message (the JSON in field `m`). */
export type LinkMessage =
  /** edge → home: a validated request of socket `socket` (answered by a `rep` with the same `id`). */
  | { k: 'req'; id: number; socket: string; event: string; payload: unknown }
  /** home → edge: the answer to request `id`. */
  | { k: 'rep'; id: number; result: AckResult<unknown> }
  /** home → edge: socket event `event` to each of the edge's `sockets`. */
  | { k: 'ev'; sockets: string[]; event: string; payload: Record<string, unknown> }
  /** home → edge: the socket's member is in no room any more. */
  | { k: 'left'; socket: string }
  /** edge → home: the socket is gone (after its last request was answered). */
  | { k: 'gone'; socket: string };

/** What a node does with the messages it receives; `from` is the sender's node id. */
export interface LinkReceiver {
  request(from: string, socket: string, event: string, payload: unknown): Promise<AckResult<unknown>>;
  events(sockets: string[], event: string, payload: Record<string, unknown>): void;
  left(from: string, socket: string): void;
  gone(from: string, socket: string): void;
}

export interface NodeLinkOptions {
  /** Writes (XADD); duplicated once for the blocking reader. Not closed by the link. */
  redis: Redis;
  nodeId: string;
  logger: Logger;
  receiver: LinkReceiver;
  /** Default 10 s. */
  timeoutMs?: number;
  /** Approximate cap of each node's stream (default 2000 entries). */
  maxLen?: number;
}

const streamOf = (nodeId: string): string => `sm:link:${nodeId}`;
/** A node's stream with no message for this long is deleted by Redis. */
const STREAM_TTL_MS = 10 * 60_000;
const UNAVAILABLE = (message: string): AckResult<never> => ({ ok: false, error: { code: 'UNAVAILABLE', message } satisfies ProtocolError });

interface Pending {
  to: string;
  resolve: (res: AckResult<unknown>) => void;
  timer: NodeJS.Timeout;
}

export class NodeLink {
  readonly #opts: NodeLinkOptions;
  readonly #reader: Redis;
  readonly #pending = new Map<number, Pending>();
  readonly #timeoutMs: number;
  #nextId = 1;
  #closed = false;
  /** Resolves once the reader knows where its stream ends (messages after that are read). */
  readonly ready: Promise<void>;

  constructor(opts: NodeLinkOptions) {
    this.#opts = opts;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#reader = opts.redis.duplicate();
    this.#reader.on('error', () => {}); // reconnects by itself; reads retry below
    this.ready = this.#read();
  }

  /**
   * Whether the reader knows where its stream ends, waiting up to the request timeout. A node becomes a room's home only
   * through a join it serves, so joins wait for this: nothing sent to a home can land before its reader's start.
   */
  async readyWithin(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.#timeoutMs)));
    const ready = await Promise.race([this.ready.then(() => !this.#closed), late]);
    clearTimeout(timer);
    return ready;
  }

  /** Sends a request to `to` for socket `socket`; always resolves (UNAVAILABLE on timeout, loss or close). */
  request(to: string, socket: string, event: string, payload: unknown): Promise<AckResult<unknown>> {
    if (this.#closed) return Promise.resolve(UNAVAILABLE('this node is shutting down'));
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#settle(id, UNAVAILABLE("the room's node did not answer; rejoin")), this.#timeoutMs);
      this.#pending.set(id, { to, resolve, timer });
      this.#send(to, { k: 'req', id, socket, event, payload });
    });
  }

  emit(to: string, sockets: string[], event: string, payload: Record<string, unknown>): void {
    this.#send(to, { k: 'ev', sockets, event, payload });
  }

  left(to: string, socket: string): void {
    this.#send(to, { k: 'left', socket });
  }

  gone(to: string, socket: string): void {
    this.#send(to, { k: 'gone', socket });
  }

  /** Node `nodeId` is lost: its pending requests are answered UNAVAILABLE. */
  failPending(nodeId: string): void {
    for (const [id, p] of this.#pending) if (p.to === nodeId) this.#settle(id, UNAVAILABLE("the room's node was lost; rejoin"));
  }

  /** Stops reading and answers pending requests UNAVAILABLE (the writer client is the caller's). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) this.#settle(id, UNAVAILABLE('this node is shutting down'));
    this.#reader.disconnect();
  }

  #settle(id: number, res: AckResult<unknown>): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(res);
  }

  #send(to: string, message: LinkMessage): void {
    const { redis, nodeId, logger, maxLen } = this.#opts;
    const stream = streamOf(to);
    // One pipeline on the one connection: entries keep their call order. The TTL removes the stream of a node that is
    // gone for good (a live node's stream is renewed by every message; an expired one is made again by the next).
    redis
      .pipeline()
      .xadd(stream, 'MAXLEN', '~', String(maxLen ?? 2000), '*', 'f', nodeId, 'm', JSON.stringify(message))
      .pexpire(stream, STREAM_TTL_MS)
      .exec()
      .then((results) => {
        const failed = results?.find(([error]) => error)?.[0];
        if (failed) logger.warn('node link: send failed', { error: errorMessage(failed) });
      })
      .catch((error: unknown) => logger.warn('node link: send failed', { error: errorMessage(error) }));
  }

  async #read(): Promise<void> {
    const stream = streamOf(this.#opts.nodeId);
    // Only what is sent from now on (older entries are a previous run's).
    let offset: string | undefined;
    while (offset === undefined && !this.#closed) {
      try {
        const last = await this.#reader.xrevrange(stream, '+', '-', 'COUNT', 1);
        offset = last[0]?.[0] ?? '0-0';
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    void (async () => {
      while (!this.#closed) {
        try {
          const res = await this.#reader.xread('COUNT', 100, 'BLOCK', 2000, 'STREAMS', stream, offset!);
          for (const [, entries] of res ?? []) {
            for (const [id, fields] of entries) {
              offset = id;
              this.#receive(fields);
            }
          }
        } catch (error) {
          if (this.#closed) return;
          this.#opts.logger.debug('node link: read failed; retrying', { error: errorMessage(error) });
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();
  }

  #receive(fields: string[]): void {
    const from = fields[fields.indexOf('f') + 1];
    const raw = fields[fields.indexOf('m') + 1];
    let message: LinkMessage;
    try {
      message = JSON.parse(raw ?? '') as LinkMessage;
    } catch {
      return;
    }
    if (from === undefined) return;
    const { receiver } = this.#opts;
    switch (message.k) {
      case 'req':
        void receiver
          .request(from, message.socket, message.event, message.payload)
          .then((result) => this.#send(from, { k: 'rep', id: message.id, result }));
        return;
      case 'rep':
        this.#settle(message.id, message.result);
        return;
      case 'ev':
        receiver.events(message.sockets, message.event, message.payload);
        return;
      case 'left':
        receiver.left(from, message.socket);
        return;
      case 'gone':
        receiver.gone(from, message.socket);
        return;
      default:
        message satisfies never;
    }
  }
}
