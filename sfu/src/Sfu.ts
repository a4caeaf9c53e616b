/**
 * The SFU facade: a worker pool plus the rooms placed on it. No networking of its own; the signaling
 * layer drives it. Rooms are created by their first joiner and closed when empty. A room may spread over
 * several workers (RoomRouters.ts); a worker that dies takes only its part of each room (those peers rejoin),
 * and a room closes with reason `worker-died` only when none of its peers is left.
 */
import { randomBytes } from 'node:crypto';
import type { types as ms } from 'mediasoup';
import { localMediaWarning, type Config } from './config.ts';
import { errorMessage, Logger } from './Logger.ts';
import { MediaTap, type MediaTapOptions } from './MediaTap.ts';
import type { BaseTransportOptions, Peer, PeerLimits } from './Peer.ts';
import { Room, type RoomCloseReason } from './Room.ts';
import { SfuError } from './SfuError.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import { WorkerPool, type MediaListen } from './WorkerPool.ts';

export type SfuConfig = Pick<
  Config,
  | 'workers'
  | 'rtcMode'
  | 'rtcPort'
  | 'rtcMinPort'
  | 'rtcMaxPort'
  | 'listenIp'
  | 'announcedIp'
  | 'isLocal'
  | 'localLanMedia'
  | 'localLanIp'
  | 'roomCap'
  | 'routerMaxConsumers'
  | 'audioLevelExt'
>;

export interface SfuStats {
  workers: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  rooms: number;
  peers: number;
}

export type SfuEvents = {
  roomCreated: [room: Room];
  roomClosed: [info: { roomId: string; reason: RoomCloseReason; peerIds: string[] }];
  workerDied: [info: { pid: number }];
  workerAdded: [info: { pid: number }];
};

export interface SfuOptions {
  logger?: Logger;
  peerLimits?: Partial<PeerLimits>;
  audioLevel?: { threshold?: number; interval?: number };
  /**
   * TEST-ONLY: record every forwarded frame (MediaTap.ts). Off by default; only code can turn it on
   * (`startServer(config, { tap: true })`), never the environment or the network.
   */
  tap?: boolean | MediaTapOptions;
}

/** Where WebRTC media is received, from the configuration (RTC_MODE, RTC_PORT, RTC_MIN/MAX_PORT, IPs). */
export function mediaListen(config: SfuConfig): MediaListen {
  const base = {
    ip: config.listenIp,
    ...(config.announcedIp && config.announcedIp !== config.listenIp ? { announcedAddress: config.announcedIp } : {}),
    ...(config.localLanIp !== undefined ? { lanIp: config.localLanIp } : {}),
    minPort: config.rtcMinPort,
    maxPort: config.rtcMaxPort,
  };
  return config.rtcMode === 'server' ? { mode: 'server', ...base, port: config.rtcPort } : { mode: 'range', ...base };
}

export class Sfu extends TypedEmitter<SfuEvents> {
  readonly #config: SfuConfig;
  readonly #logger: Logger;
  readonly #pool: WorkerPool;
  readonly #rooms = new Map<string, Room>();
  readonly #pending = new Map<string, Promise<Room>>();
  readonly #transportOptions: BaseTransportOptions;
  readonly #opts: SfuOptions;
  readonly #tap: MediaTap | undefined;
  #closed = false;

  private constructor(config: SfuConfig, pool: WorkerPool, logger: Logger, opts: SfuOptions) {
    super();
    this.#config = config;
    this.#pool = pool;
    this.#logger = logger;
    this.#opts = opts;
    this.#tap = opts.tap ? new MediaTap(opts.tap === true ? {} : opts.tap, logger) : undefined;
    // Where the transports listen comes from the pool (the room's worker's WebRtcServer, or the range).
    this.#transportOptions = {
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 1_000_000,
    };
    pool.on('roomLost', ({ roomId, routerId }) => {
      // Only that router's part of the room (its peers rejoin); the room closes if nobody is left.
      this.#rooms.get(roomId)?.routerLost(routerId);
    });
    pool.on('workerDied', ({ pid }) => this.emit('workerDied', { pid }));
    pool.on('workerAdded', ({ pid }) => this.emit('workerAdded', { pid }));
  }

  static async create(config: SfuConfig, opts: SfuOptions = {}): Promise<Sfu> {
    const logger = opts.logger ?? new Logger('info');
    const listen = mediaListen(config);
    const pool = await WorkerPool.create({ size: config.workers, listen, logger });
    const sfu = new Sfu(config, pool, logger.child('sfu'), opts);
    if (listen.mode === 'server') {
      sfu.#logger.info('media: one WebRtcServer per worker (UDP + TCP), worker i on port + i', { port: listen.port, workers: pool.size });
    } else {
      sfu.#logger.info('media: one port per transport (RTC_MODE=range)', { port: listen.minPort, count: listen.maxPort - listen.minPort + 1 });
    }
    if (listen.lanIp !== undefined) {
      // The server's own address (not a client's): Firefox pairs no loopback candidates.
      sfu.#logger.info('media: also on this non-loopback address, for Firefox (LOCAL_LAN_MEDIA)', { host: listen.lanIp });
    }
    const warning = localMediaWarning(config);
    if (warning) sfu.#logger.warn(warning);
    return sfu;
  }

  get closed(): boolean {
    return this.#closed;
  }
  get pool(): WorkerPool {
    return this.#pool;
  }
  get roomCap(): number {
    return this.#config.roomCap;
  }
  get audioLevelExt(): boolean {
    return this.#config.audioLevelExt;
  }
  /** The test-only media tap, when enabled (`tap` option); undefined otherwise. */
  get tap(): MediaTap | undefined {
    return this.#tap;
  }

  getRoom(roomId: string): Room | undefined {
    return this.#rooms.get(roomId);
  }

  rooms(): Room[] {
    return [...this.#rooms.values()];
  }

  getPeer(roomId: string, peerId: string): Peer | undefined {
    return this.#rooms.get(roomId)?.getPeer(peerId);
  }

  /**
   * Joins (creating the room for its first joiner; `create.tokenHash`, when given, fixes the new room's token hash instead
   * of this token's). Throws SfuError UNAUTHORIZED / ROOM_FULL / UNAVAILABLE.
   */
  async join(roomId: string, accessToken: string, create: { tokenHash?: Buffer } = {}): Promise<{ room: Room; peer: Peer }> {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'server shutting down');
    const room = await this.#getOrCreateRoom(roomId, accessToken, create.tokenHash);
    try {
      const peer = await room.join(randomBytes(12).toString('base64url'), accessToken);
      return { room, peer };
    } catch (error) {
      // Never leave a room behind that nobody managed to join.
      if (room.idle) room.close('empty');
      throw error;
    }
  }

  /** Frees every object of a peer; closes its room when it was the last one. */
  leave(roomId: string, peerId: string): void {
    this.#rooms.get(roomId)?.leave(peerId);
  }

  stats(): SfuStats {
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    let peers = 0;
    for (const room of this.#rooms.values()) {
      for (const peer of room.peers()) {
        peers++;
        transports += peer.transportCount;
        producers += peer.producerCount;
        consumers += peer.consumerCount;
      }
    }
    return {
      workers: this.#pool.size,
      routers: this.#pool.routerCount,
      transports,
      producers,
      consumers,
      rooms: this.#rooms.size,
      peers,
    };
  }

  /** `worker.dump()` of every live worker (diagnostics, tests). */
  async dumpWorkers(): Promise<ms.WorkerDump[]> {
    return Promise.all(this.#pool.workers.map((w) => w.dump()));
  }

  /** Everything the SFU holds, as plain data (diagnostics; tests check it holds no secrets). */
  toJSON(): Record<string, unknown> {
    return {
      closed: this.#closed,
      config: this.#config,
      transportOptions: this.#transportOptions,
      stats: this.stats(),
      pending: [...this.#pending.keys()],
      rooms: [...this.#rooms.values()].map((r) => r.toJSON()),
    };
  }

  /** mediasoup's own dumps of every room (router, transports, producers, consumers). */
  async dumpRooms(): Promise<unknown[]> {
    return Promise.all([...this.#rooms.values()].map((r) => r.dump()));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#tap?.close();
    for (const room of [...this.#rooms.values()]) room.close('shutdown');
    this.#rooms.clear();
    this.#pool.close();
    this.removeAllListeners();
  }

  async #getOrCreateRoom(roomId: string, accessToken: string, tokenHash: Buffer | undefined): Promise<Room> {
    const existing = this.#rooms.get(roomId);
    if (existing) return existing;
    let pending = this.#pending.get(roomId);
    if (!pending) {
      pending = Room.create({
        roomId,
        accessToken,
        ...(tokenHash ? { tokenHash } : {}),
        pool: this.#pool,
        cap: this.#config.roomCap,
        routerMaxConsumers: this.#config.routerMaxConsumers,
        transportOptions: this.#transportOptions,
        audioLevelExt: this.#config.audioLevelExt,
        logger: this.#logger,
        ...(this.#opts.peerLimits ? { peerLimits: this.#opts.peerLimits } : {}),
        ...(this.#opts.audioLevel ? { audioLevel: this.#opts.audioLevel } : {}),
        ...(this.#tap ? { tap: this.#tap } : {}),
      })
        .then(async (room) => {
          if (this.#tap) {
            try {
              await this.#tap.attachRoom(room);
            } catch (error) {
              this.#logger.warn('media tap could not attach to a room', { roomId, error: errorMessage(error) });
            }
          }
          return room;
        })
        .then(
        (room) => {
          this.#pending.delete(roomId);
          if (this.#closed) {
            room.close('shutdown');
            throw new SfuError('UNAVAILABLE', 'server shutting down');
          }
          this.#rooms.set(roomId, room);
          room.on('closed', (info) => {
            if (this.#rooms.get(roomId) === room) this.#rooms.delete(roomId);
            this.emit('roomClosed', info);
          });
          this.#logger.info('room created', { roomId, workerPid: room.workerPid, rooms: this.#rooms.size });
          this.emit('roomCreated', room);
          return room;
        },
        (error: unknown) => {
          this.#pending.delete(roomId);
          throw error;
        },
      );
      this.#pending.set(roomId, pending);
    }
    return pending;
  }
}
