/**
 * One member of a room: its WebRTC transports, producers and consumers.
 *
 * Every method only acts on this peer's own objects: an id that is not one of its own is NOT_FOUND, no
 * matter whether it exists elsewhere. Consumers are created paused (the client resumes them once its
 * consumer is set up). `close()` is idempotent and frees everything the peer holds.
 *
 * The peer lives on one router of its room (both transports; RoomRouters.ts places it). A producer of a peer
 * on another router is made consumable here first by the room's `reach` hook (a pipe, see RoomRouters).
 */
import type { types as ms } from 'mediasoup';
import { filterCapabilities, filterParameters } from './codecs.ts';
import { SfuError } from './SfuError.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { ConsumerInfo, Direction, MediaKind, ProducerInfo, TrackSource, TransportInfo } from './wire.ts';
import type { TransportListen } from './WorkerPool.ts';

export interface PeerLimits {
  maxTransports: number;
  maxProducers: number;
  maxConsumers: number;
}
export const DEFAULT_PEER_LIMITS: PeerLimits = { maxTransports: 8, maxProducers: 8, maxConsumers: 500 };

/** WebRtcTransport options every transport shares; where it listens comes with the room (TransportListen). */
export interface BaseTransportOptions {
  enableUdp: boolean;
  enableTcp: boolean;
  preferUdp: boolean;
  initialAvailableOutgoingBitrate: number;
}
export type TransportOptions = BaseTransportOptions & TransportListen;

/** Finds a producer anywhere in the room (for consume). */
export type ProducerLookup = (producerId: string) => { producer: ms.Producer; peerId: string; source: TrackSource } | undefined;

export interface PeerOptions {
  id: string;
  roomId: string;
  router: ms.Router;
  transportOptions: TransportOptions;
  audioLevelExt: boolean;
  lookupProducer: ProducerLookup;
  /** Makes a producer of the room (found by lookupProducer) consumable on this peer's router; none: same router. */
  reach?: (producerId: string) => Promise<void>;
  limits?: Partial<PeerLimits>;
  /**
   * Awaited after a producer is created and before it is announced (test-only media tap: the tap
   * consumes it first, so it sees every frame any client can get).
   */
  beforeAnnounce?: (producer: ms.Producer) => Promise<void>;
}

export type PeerEvents = {
  producerCreated: [info: ProducerInfo, producer: ms.Producer];
  producerClosed: [info: { peerId: string; producerId: string; kind: MediaKind }];
  producerPaused: [info: { peerId: string; producerId: string }];
  producerResumed: [info: { peerId: string; producerId: string }];
  /** One of this peer's consumers was closed because its producer went away. */
  consumerClosed: [info: { consumerId: string }];
  /** One of this peer's consumers' producer was paused / resumed. */
  consumerPaused: [info: { consumerId: string }];
  consumerResumed: [info: { consumerId: string }];
  closed: [info: { peerId: string; reason: PeerCloseReason }];
};
export type PeerCloseReason = 'left' | 'worker-died' | 'room-closed';

// Type aliases, not interfaces: mediasoup's appData must be assignable to its index-signature AppData.
type ProducerAppData = {
  peerId: string;
  source: TrackSource;
};
type TransportAppData = {
  peerId: string;
  direction: Direction;
};

export class Peer extends TypedEmitter<PeerEvents> {
  readonly #id: string;
  readonly #roomId: string;
  readonly #router: ms.Router;
  readonly #transportOptions: TransportOptions;
  readonly #audioLevelExt: boolean;
  readonly #lookupProducer: ProducerLookup;
  readonly #reach: ((producerId: string) => Promise<void>) | undefined;
  readonly #limits: PeerLimits;
  readonly #beforeAnnounce: ((producer: ms.Producer) => Promise<void>) | undefined;
  readonly #transports = new Map<string, ms.WebRtcTransport>();
  readonly #producers = new Map<string, ms.Producer>();
  readonly #consumers = new Map<string, ms.Consumer>();
  #closed = false;

  constructor(opts: PeerOptions) {
    super();
    this.#id = opts.id;
    this.#roomId = opts.roomId;
    this.#router = opts.router;
    this.#transportOptions = opts.transportOptions;
    this.#audioLevelExt = opts.audioLevelExt;
    this.#lookupProducer = opts.lookupProducer;
    this.#reach = opts.reach;
    this.#limits = { ...DEFAULT_PEER_LIMITS, ...opts.limits };
    this.#beforeAnnounce = opts.beforeAnnounce;
  }

  get id(): string {
    return this.#id;
  }
  get roomId(): string {
    return this.#roomId;
  }
  get closed(): boolean {
    return this.#closed;
  }
  /** The router this peer's transports live on. */
  get routerId(): string {
    return this.#router.id;
  }
  get transportCount(): number {
    return this.#transports.size;
  }
  get producerCount(): number {
    return this.#producers.size;
  }
  get consumerCount(): number {
    return this.#consumers.size;
  }

  /** This peer's producers, as announced to the others. */
  producerInfos(): ProducerInfo[] {
    return [...this.#producers.values()].map((p) => this.#producerInfo(p));
  }

  /** A producer of this peer (used by the room for consume lookups). */
  findProducer(producerId: string): ms.Producer | undefined {
    return this.#producers.get(producerId);
  }

  async createTransport(direction: Direction): Promise<TransportInfo> {
    this.#assertOpen();
    if (this.#transports.size >= this.#limits.maxTransports) throw new SfuError('BAD_REQUEST', 'too many transports');
    const appData: TransportAppData = { peerId: this.#id, direction };
    const transport = await this.#router.createWebRtcTransport({ ...this.#transportOptions, appData });
    if (this.#closed) {
      transport.close();
      this.#assertOpen();
    }
    this.#transports.set(transport.id, transport);
    transport.on('routerclose', () => this.#transports.delete(transport.id));
    transport.observer.on('close', () => this.#transports.delete(transport.id));
    return {
      id: transport.id,
      iceParameters: { ...transport.iceParameters },
      iceCandidates: transport.iceCandidates.map((c) => ({ ...c })),
      dtlsParameters: structuredClone(transport.dtlsParameters),
    };
  }

  async connectTransport(transportId: string, dtlsParameters: Record<string, unknown>): Promise<void> {
    const transport = this.#transport(transportId);
    await transport.connect({ dtlsParameters: dtlsParameters as unknown as ms.DtlsParameters });
  }

  async restartIce(transportId: string): Promise<{ iceParameters: ms.IceParameters }> {
    const transport = this.#transport(transportId);
    const iceParameters = await transport.restartIce();
    return { iceParameters: { ...iceParameters } };
  }

  async produce(params: {
    transportId: string;
    kind: MediaKind;
    rtpParameters: Record<string, unknown>;
    source: TrackSource;
  }): Promise<ProducerInfo> {
    const transport = this.#transport(params.transportId, 'send');
    if (params.source === 'mic' && params.kind !== 'audio') throw new SfuError('BAD_REQUEST', 'source "mic" must be audio');
    if (params.source === 'camera' && params.kind !== 'video') throw new SfuError('BAD_REQUEST', 'source "camera" must be video');
    if (this.#producers.size >= this.#limits.maxProducers) throw new SfuError('BAD_REQUEST', 'too many producers');
    const appData: ProducerAppData = { peerId: this.#id, source: params.source };
    const rtpParameters = filterParameters(params.rtpParameters as unknown as ms.RtpParameters, this.#audioLevelExt);
    const producer = await transport.produce({ kind: params.kind, rtpParameters, appData });
    if (this.#beforeAnnounce && !producer.closed) {
      try {
        await this.#beforeAnnounce(producer);
      } catch {
        // the hook (media tap) logs its own failures; producing goes on
      }
    }
    if (this.#closed || transport.closed || producer.closed) {
      producer.close();
      this.#assertOpen();
      throw new SfuError('NOT_FOUND', 'transport closed');
    }
    this.#producers.set(producer.id, producer);
    producer.on('transportclose', () => this.#producers.delete(producer.id));
    const info = this.#producerInfo(producer);
    this.emit('producerCreated', info, producer);
    return info;
  }

  async closeProducer(producerId: string): Promise<void> {
    const producer = this.#producer(producerId);
    this.#closeProducer(producer);
  }

  async pauseProducer(producerId: string): Promise<void> {
    const producer = this.#producer(producerId);
    if (producer.paused) return;
    await producer.pause();
    this.emit('producerPaused', { peerId: this.#id, producerId });
  }

  async resumeProducer(producerId: string): Promise<void> {
    const producer = this.#producer(producerId);
    if (!producer.paused) return;
    await producer.resume();
    this.emit('producerResumed', { peerId: this.#id, producerId });
  }

  async consume(params: { transportId: string; producerId: string; rtpCapabilities: Record<string, unknown> }): Promise<ConsumerInfo> {
    const transport = this.#transport(params.transportId, 'recv');
    const found = this.#lookupProducer(params.producerId);
    if (!found || found.producer.closed) throw new SfuError('NOT_FOUND', 'producer not found');
    if (this.#consumers.size >= this.#limits.maxConsumers) throw new SfuError('BAD_REQUEST', 'too many consumers');
    const rtpCapabilities = filterCapabilities(params.rtpCapabilities as unknown as ms.RtpCapabilities, this.#audioLevelExt);
    if (this.#reach) {
      try {
        await this.#reach(params.producerId);
      } catch (error) {
        if (found.producer.closed) throw new SfuError('NOT_FOUND', 'producer not found');
        throw error;
      }
      this.#assertOpen();
    }
    let can = false;
    try {
      can = this.#router.canConsume({ producerId: params.producerId, rtpCapabilities });
    } catch {
      can = false;
    }
    if (!can) throw new SfuError('CANNOT_CONSUME', 'rtpCapabilities cannot consume this producer');
    const consumer = await transport.consume({
      producerId: params.producerId,
      rtpCapabilities,
      paused: true,
      appData: { peerId: this.#id, producerPeerId: found.peerId, source: found.source },
    });
    if (this.#closed || transport.closed) {
      consumer.close();
      this.#assertOpen();
      throw new SfuError('NOT_FOUND', 'transport closed');
    }
    if (consumer.closed) throw new SfuError('NOT_FOUND', 'producer closed');
    const id = consumer.id;
    this.#consumers.set(id, consumer);
    consumer.on('transportclose', () => this.#consumers.delete(id));
    consumer.on('producerclose', () => {
      if (this.#consumers.delete(id)) this.emit('consumerClosed', { consumerId: id });
    });
    consumer.on('producerpause', () => this.emit('consumerPaused', { consumerId: id }));
    consumer.on('producerresume', () => this.emit('consumerResumed', { consumerId: id }));
    return {
      consumerId: id,
      producerId: params.producerId,
      peerId: found.peerId,
      kind: consumer.kind,
      source: found.source,
      rtpParameters: structuredClone(consumer.rtpParameters),
      type: consumer.type,
      producerPaused: consumer.producerPaused,
    };
  }

  async resumeConsumer(consumerId: string): Promise<void> {
    await this.#consumer(consumerId).resume();
  }

  async pauseConsumer(consumerId: string): Promise<void> {
    await this.#consumer(consumerId).pause();
  }

  async closeConsumer(consumerId: string): Promise<void> {
    const consumer = this.#consumer(consumerId);
    this.#consumers.delete(consumerId);
    consumer.close();
  }

  async setPreferredLayers(consumerId: string, spatialLayer: number, temporalLayer?: number): Promise<void> {
    const consumer = this.#consumer(consumerId);
    if (consumer.kind !== 'video') throw new SfuError('BAD_REQUEST', 'preferred layers apply to video consumers');
    await consumer.setPreferredLayers(temporalLayer === undefined ? { spatialLayer } : { spatialLayer, temporalLayer });
  }

  /** This peer's live consumers of `producerId`. */
  consumersOf(producerId: string): ms.Consumer[] {
    return [...this.#consumers.values()].filter((c) => c.producerId === producerId && !c.closed);
  }

  /** Everything this peer holds, as plain data (diagnostics; tests check it holds no secrets). */
  toJSON(): Record<string, unknown> {
    return {
      id: this.#id,
      roomId: this.#roomId,
      routerId: this.#router.id,
      closed: this.#closed,
      limits: { ...this.#limits },
      transports: [...this.#transports.values()].map((t) => ({ id: t.id, appData: t.appData })),
      producers: [...this.#producers.values()].map((p) => ({ ...this.#producerInfo(p), appData: p.appData, rtpParameters: p.rtpParameters })),
      consumers: [...this.#consumers.values()].map((c) => ({
        id: c.id,
        producerId: c.producerId,
        kind: c.kind,
        type: c.type,
        paused: c.paused,
        appData: c.appData,
        rtpParameters: c.rtpParameters,
      })),
    };
  }

  /** mediasoup's own dump() of every transport, producer and consumer of this peer. */
  async dump(): Promise<{ transports: unknown[]; producers: unknown[]; consumers: unknown[] }> {
    const safe = (p: Promise<unknown>): Promise<unknown> => p.catch(() => null);
    return {
      transports: await Promise.all([...this.#transports.values()].map((t) => safe(t.dump()))),
      producers: await Promise.all([...this.#producers.values()].map((p) => safe(p.dump()))),
      consumers: await Promise.all([...this.#consumers.values()].map((c) => safe(c.dump()))),
    };
  }

  async requestKeyFrame(consumerId: string): Promise<void> {
    const consumer = this.#consumer(consumerId);
    if (consumer.kind !== 'video') return;
    await consumer.requestKeyFrame();
  }

  /** Frees every object of this peer. Producers are announced as closed unless the worker died. */
  close(reason: PeerCloseReason = 'left'): void {
    if (this.#closed) return;
    this.#closed = true;
    if (reason !== 'worker-died') {
      for (const producer of [...this.#producers.values()]) this.#closeProducer(producer);
    }
    for (const consumer of this.#consumers.values()) consumer.close();
    this.#consumers.clear();
    for (const transport of this.#transports.values()) transport.close();
    this.#transports.clear();
    this.#producers.clear();
    this.emit('closed', { peerId: this.#id, reason });
    this.removeAllListeners();
  }

  #closeProducer(producer: ms.Producer): void {
    if (!this.#producers.delete(producer.id)) return;
    producer.close();
    this.emit('producerClosed', { peerId: this.#id, producerId: producer.id, kind: producer.kind });
  }

  #producerInfo(producer: ms.Producer): ProducerInfo {
    const appData = producer.appData as ProducerAppData;
    return { peerId: this.#id, producerId: producer.id, kind: producer.kind, source: appData.source, paused: producer.paused };
  }

  #assertOpen(): void {
    if (this.#closed) throw new SfuError('UNAVAILABLE', 'peer closed');
  }

  #transport(transportId: string, direction?: Direction): ms.WebRtcTransport {
    this.#assertOpen();
    const transport = this.#transports.get(transportId);
    if (!transport || transport.closed) throw new SfuError('NOT_FOUND', 'transport not found');
    if (direction && (transport.appData as TransportAppData).direction !== direction) {
      throw new SfuError('NOT_FOUND', `${direction} transport not found`);
    }
    return transport;
  }

  #producer(producerId: string): ms.Producer {
    this.#assertOpen();
    const producer = this.#producers.get(producerId);
    if (!producer || producer.closed) throw new SfuError('NOT_FOUND', 'producer not found');
    return producer;
  }

  #consumer(consumerId: string): ms.Consumer {
    this.#assertOpen();
    const consumer = this.#consumers.get(consumerId);
    if (!consumer || consumer.closed) throw new SfuError('NOT_FOUND', 'consumer not found');
    return consumer;
  }
}
