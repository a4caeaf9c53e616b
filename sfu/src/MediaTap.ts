/**
 * TEST-ONLY media tap: records what the SFU forwards, to prove it only ever sees SFrame ciphertext.
 *
 * Off by default. It exists only when a test calls `startServer(config, { tap: true })` (or
 * `Sfu.create(config, { tap: true })`); no environment variable, config field or network request turns it on.
 *
 * For every router of a room (a room may spread over several workers: RoomRouters.ts) it opens one mediasoup
 * DirectTransport on it; for every producer created on that router (whatever transport it came in on, except
 * the pipe producers that bring other routers' producers over: each producer is tapped on its own router)
 * it creates a `pipe` consumer on it, which receives every RTP
 * stream of the producer (each simulcast layer separately, with its own SSRC) exactly as the SFU
 * forwards it, and asks for a key frame when it starts. Frames are reassembled per RTP stream
 * (`rtp.ts`: Opus one frame per packet; VP8/VP9 payload descriptors stripped, packets of one frame
 * concatenated). Per producer it keeps the last `maxFrames` frames and the first `firstFrames` frames of
 * every stream.
 *
 * The tap does not change what clients get: its consumer is an extra consumer on its own transport (it
 * never sends RTCP back except the key-frame requests), and producers are announced to the room only
 * after the tap consumes them (see `Peer.produce`), so the tap has seen every frame any client can get.
 */
import type { types as ms } from 'mediasoup';
import { errorMessage, type Logger } from './Logger.ts';
import { parseRtp, StreamAssembler, tapCodecOf, type AssembledFrame, type TapCodec } from './rtp.ts';
import type { MediaKind } from './wire.ts';

const KEYFRAME_RETRIES = 15;

export interface MediaTapOptions {
  /** Frames kept per producer (ring, newest last). Default 500. */
  maxFrames?: number;
  /** First frames kept forever per RTP stream of a producer. Default 20. */
  firstFrames?: number;
  /** Producers remembered (closed ones are forgotten first, oldest first). Default 1000. */
  maxProducers?: number;
}

export interface TapProducerInfo {
  producerId: string;
  roomId: string;
  /** `appData.peerId` of the producer (null if it has none). */
  peerId: string | null;
  kind: MediaKind;
  /** `appData.source` of the producer: mic | camera | screen (null if it has none). */
  source: string | null;
  /** Media codec mime type, e.g. `video/VP8`, `audio/opus`. */
  codec: string;
  /** SSRCs at the tap, one per RTP stream (simulcast layer), in encoding order. */
  ssrcs: number[];
  /** Producer closed (frames stay available). */
  closed: boolean;
}

export interface TapFrame extends AssembledFrame {
  producerId: string;
  /** Index of the RTP stream (simulcast encoding: 0 = lowest) at the tap. */
  layer: number;
  /** 0, 1, 2… per producer in arrival order. */
  index: number;
}

export interface TapStats {
  packets: number;
  bytes: number;
  frames: number;
  incompleteFrames: number;
  /** Packets that were not RTP or whose payload descriptor did not parse. */
  malformed: number;
}

export interface TapFrameFilter {
  /** Only this RTP stream (tap SSRC). */
  ssrc?: number;
  /** Only this RTP stream (encoding index). */
  layer?: number;
  /** Also return frames with missing packets (default false: complete frames only). */
  includeIncomplete?: boolean;
}

interface TappedProducer {
  info: TapProducerInfo;
  codec: TapCodec;
  ring: TapFrame[];
  first: Map<number, TapFrame[]>;
  assemblers: Map<number, StreamAssembler>;
  stats: TapStats;
  nextIndex: number;
  ready: Promise<void>;
  consumer?: ms.Consumer;
  waiters: Set<() => void>;
}

/** The slice of a room the tap needs. */
export interface TapRoom {
  id: string;
  routers: readonly ms.Router[];
}

export class MediaTap {
  readonly #maxFrames: number;
  readonly #firstFrames: number;
  readonly #maxProducers: number;
  readonly #logger: Logger;
  readonly #producers = new Map<string, TappedProducer>();
  /** Router id → the tap's DirectTransport on it. */
  readonly #transports = new Map<string, ms.DirectTransport>();
  /** Routers tapped (or being tapped). */
  readonly #attached = new WeakSet<ms.Router>();
  #closed = false;

  constructor(opts: MediaTapOptions, logger: Logger) {
    this.#maxFrames = opts.maxFrames ?? 500;
    this.#firstFrames = opts.firstFrames ?? 20;
    this.#maxProducers = opts.maxProducers ?? 1000;
    this.#logger = logger.child('media-tap');
  }

  /**
   * Starts tapping a room: every router it has now (see attachRouter). Called by the Sfu before the room is
   * handed to its first joiner; the room attaches the routers it adds later itself.
   */
  async attachRoom(room: TapRoom): Promise<void> {
    await Promise.all(room.routers.map((router) => this.attachRouter(room.id, router)));
  }

  /**
   * Starts tapping one router of room `roomId` (once; again is a no-op): opens its DirectTransport and
   * consumes every producer created on it from now on.
   */
  async attachRouter(roomId: string, router: ms.Router): Promise<void> {
    if (this.#closed || this.#attached.has(router)) return;
    this.#attached.add(router);
    router.observer.on('newtransport', (transport: ms.Transport) => {
      if (transport.type === 'pipe') return;
      transport.observer.on('newproducer', (producer: ms.Producer) => this.#tap(roomId, router, producer));
    });
    const direct = await router.createDirectTransport({ maxSendMessageSize: 262144, appData: { tap: true } });
    this.#transports.set(router.id, direct);
    direct.observer.on('close', () => {
      if (this.#transports.get(router.id) === direct) this.#transports.delete(router.id);
    });
    this.#logger.debug('tapping room', { roomId });
  }

  /** Resolves once the tap consumes `producerId` (immediately for unknown producers). */
  ready(producerId: string): Promise<void> {
    return this.#producers.get(producerId)?.ready ?? Promise.resolve();
  }

  /** The tap's own mediasoup consumer of `producerId` (tests and diagnostics). */
  consumerOf(producerId: string): ms.Consumer | undefined {
    return this.#producers.get(producerId)?.consumer;
  }

  /** Every producer the tap has seen, oldest first. */
  producers(): TapProducerInfo[] {
    return [...this.#producers.values()].map((p) => ({ ...p.info, ssrcs: [...p.info.ssrcs] }));
  }

  /** The last `maxFrames` frames of a producer, oldest first. */
  frames(producerId: string, filter: TapFrameFilter = {}): TapFrame[] {
    const p = this.#producers.get(producerId);
    if (!p) return [];
    return p.ring.filter((f) => match(f, filter));
  }

  /** The first `firstFrames` frames of every RTP stream of a producer, in arrival order. */
  firstFrames(producerId: string, filter: TapFrameFilter = {}): TapFrame[] {
    const p = this.#producers.get(producerId);
    if (!p) return [];
    return [...p.first.values()]
      .flat()
      .filter((f) => match(f, filter))
      .sort((a, b) => a.index - b.index);
  }

  stats(producerId: string): TapStats | undefined {
    const p = this.#producers.get(producerId);
    return p ? { ...p.stats } : undefined;
  }

  /** Waits until `producerId` has at least `count` frames matching `filter` in its ring. */
  async waitForFrames(producerId: string, count = 1, timeoutMs = 10_000, filter: TapFrameFilter = {}): Promise<TapFrame[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const frames = this.frames(producerId, filter);
      if (frames.length >= count) return frames;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`tap: ${frames.length}/${count} frames of producer ${producerId} after ${timeoutMs} ms`);
      const p = this.#producers.get(producerId);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          p?.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(left, 100));
        p?.waiters.add(done);
      });
    }
  }

  /** Forgets every recorded frame and closed producer (live producers keep being tapped). */
  clear(): void {
    for (const [id, p] of this.#producers) {
      if (p.info.closed) {
        this.#producers.delete(id);
        continue;
      }
      p.ring.length = 0;
      p.first.clear();
      p.stats = { packets: 0, bytes: 0, frames: 0, incompleteFrames: 0, malformed: 0 };
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#transports.values()) t.close();
    this.#transports.clear();
  }

  #tap(roomId: string, router: ms.Router, producer: ms.Producer): void {
    if (this.#closed || this.#producers.has(producer.id)) return;
    const appData = (producer.appData ?? {}) as { peerId?: unknown; source?: unknown };
    const codecParams = producer.rtpParameters.codecs[0];
    const mimeType = codecParams?.mimeType ?? 'unknown';
    const entry: TappedProducer = {
      info: {
        producerId: producer.id,
        roomId,
        peerId: typeof appData.peerId === 'string' ? appData.peerId : null,
        kind: producer.kind,
        source: typeof appData.source === 'string' ? appData.source : null,
        codec: mimeType,
        ssrcs: [],
        closed: false,
      },
      codec: tapCodecOf(mimeType),
      ring: [],
      first: new Map(),
      assemblers: new Map(),
      stats: { packets: 0, bytes: 0, frames: 0, incompleteFrames: 0, malformed: 0 },
      nextIndex: 0,
      ready: Promise.resolve(),
      waiters: new Set(),
    };
    this.#producers.set(producer.id, entry);
    this.#evict();
    producer.observer.on('close', () => {
      entry.info.closed = true;
      for (const [ssrc, a] of entry.assemblers) a.flush(ssrc);
    });
    entry.ready = this.#consume(router, producer, entry).catch((error: unknown) => {
      if (!producer.closed) this.#logger.warn('tap could not consume a producer', { roomId, error: errorMessage(error) });
    });
  }

  async #consume(router: ms.Router, producer: ms.Producer, entry: TappedProducer): Promise<void> {
    const transport = this.#transports.get(router.id);
    if (!transport || transport.closed) throw new Error('router not tapped');
    const consumer = await transport.consume({
      producerId: producer.id,
      rtpCapabilities: router.rtpCapabilities,
      pipe: true,
      paused: false,
      appData: { tap: true },
    });
    entry.consumer = consumer;
    const ssrcs = consumer.rtpParameters.encodings?.map((e) => e.ssrc ?? 0) ?? [];
    entry.info.ssrcs = ssrcs;
    consumer.on('rtp', (packet: Buffer) => this.#onRtp(entry, packet, ssrcs));
    if (consumer.kind !== 'video') return;
    await consumer.requestKeyFrame();
    // mediasoup drops a key-frame request while the producer has no RTP stream yet (nothing arrived), and
    // the pipe consumer forwards nothing before a key frame: ask again every second until the first frame
    // arrives (at most KEYFRAME_RETRIES times).
    let tries = 0;
    const timer = setInterval(() => {
      if (entry.stats.frames > 0 || consumer.closed || this.#closed || ++tries > KEYFRAME_RETRIES) {
        clearInterval(timer);
        return;
      }
      consumer.requestKeyFrame().catch(() => undefined);
    }, 1000);
    timer.unref();
    consumer.observer.on('close', () => clearInterval(timer));
  }

  #onRtp(entry: TappedProducer, packet: Buffer, ssrcs: number[]): void {
    entry.stats.packets++;
    entry.stats.bytes += packet.length;
    const rtp = parseRtp(packet);
    if (!rtp) {
      entry.stats.malformed++;
      return;
    }
    let assembler = entry.assemblers.get(rtp.ssrc);
    if (!assembler) {
      const layer = Math.max(0, ssrcs.indexOf(rtp.ssrc));
      assembler = new StreamAssembler(entry.codec, (frame) => this.#onFrame(entry, frame, layer));
      entry.assemblers.set(rtp.ssrc, assembler);
    }
    const before = assembler.malformed;
    assembler.push(rtp);
    entry.stats.malformed += assembler.malformed - before;
  }

  #onFrame(entry: TappedProducer, frame: AssembledFrame, layer: number): void {
    const f: TapFrame = { ...frame, producerId: entry.info.producerId, layer, index: entry.nextIndex++ };
    entry.stats.frames++;
    if (!f.complete) entry.stats.incompleteFrames++;
    entry.ring.push(f);
    if (entry.ring.length > this.#maxFrames) entry.ring.splice(0, entry.ring.length - this.#maxFrames);
    let first = entry.first.get(f.ssrc);
    if (!first) {
      first = [];
      entry.first.set(f.ssrc, first);
    }
    if (first.length < this.#firstFrames) first.push(f);
    for (const w of [...entry.waiters]) w();
  }

  #evict(): void {
    if (this.#producers.size <= this.#maxProducers) return;
    for (const [id, p] of this.#producers) {
      if (this.#producers.size <= this.#maxProducers) return;
      if (p.info.closed) this.#producers.delete(id);
    }
    for (const id of this.#producers.keys()) {
      if (this.#producers.size <= this.#maxProducers) return;
      this.#producers.delete(id);
    }
  }
}

function match(f: TapFrame, filter: TapFrameFilter): boolean {
  if (!filter.includeIncomplete && !f.complete) return false;
  if (filter.ssrc !== undefined && f.ssrc !== filter.ssrc) return false;
  if (filter.layer !== undefined && f.layer !== filter.layer) return false;
  return true;
}
