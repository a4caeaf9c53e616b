/**
 * Browser-free load generator for the capacity bench (bench/capacity.ts) and its test (test/bench/capacity.test.ts).
 *
 * Real mediasoup workers (the project's WorkerPool, worker binary and MEDIA_CODECS) carry one room:
 *
 *   Node (dgram) --RTP--> sender PlainTransport (comedia, rtcpMux; 1 per sender: a VP8 + an Opus producer)
 *        [router A] --pipeToRouter--> [router B]            (placements 'pipe' and 'split')
 *   receiver PlainTransport (1 per receiver: consumes every producer) --(S)RTP--> sink UDP socket in Node
 *
 * Placements: 'one' = everything on one worker; 'pipe' = producers on worker A, all receivers on worker B; 'split' =
 * producers on A, receivers alternately on A and B. Receivers' transports send SRTP (AEAD_AES_256_GCM, what
 * mediasoup and current browsers settle on over DTLS-SRTP) unless `srtp: false`: the per-packet, per-consumer
 * encryption is the worker's main cost in a real call. Sinks count packets per consumer SSRC (the header is clear
 * in SRTP); with `verify` (needs `srtp: false`) they also check that every payload is byte for byte one that the
 * consumer's producer sent. Senders answer PLI/FIR with a key frame, as a browser does.
 *
 * A trial: quiet (no sending, in-flight packets drained), counters zeroed, send for `ms`, stop, drain, read the
 * counters, the workers' CPU time (getResourceUsage ru_utime + ru_stime) and the kernel's drop counters of the sink
 * sockets (/proc/net/udp: packets that reached a sink socket whose buffer was full, i.e. the sink, not the SFU, fell
 * behind).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import type { types as ms } from 'mediasoup';
import { MEDIA_CODECS } from '../sfu/src/codecs.ts';
import { Logger } from '../sfu/src/Logger.ts';
import { parseRtp } from '../sfu/src/rtp.ts';
import { WorkerPool } from '../sfu/src/WorkerPool.ts';
import {
  DEFAULT_PROFILE, isRtcp, keyFrameRequests, makeFramePools, OPUS_FRAME_MS, OPUS_PT, RtpStream, VP8_CLOCK, VP8_PT,
  type FramePool, type MediaProfile, type Variant,
} from './capacity-media.ts';

export type Placement = 'one' | 'pipe' | 'split';

export interface LoadOptions {
  placement: Placement;
  /** Members sending camera + mic (2 producers each). */
  senders: number;
  profile?: MediaProfile;
  /** SRTP on the receivers' transports (default true). */
  srtp?: boolean;
  /** Check every forwarded payload against what was sent (needs srtp: false; costs a hash per packet). */
  verify?: boolean;
  /** Sink sockets the receivers' transports send to (default 4). */
  sinks?: number;
}

export interface TrialResult {
  variant: Variant;
  consumers: number;
  /** Packets sent into the producers. */
  sent: number;
  /** Σ over consumers of the packets their producer sent: what the sinks should get. */
  expected: number;
  received: number;
  /** 100 × (1 − received / expected), whole room; and the worst consumer. */
  lossPct: number;
  worstConsumerLossPct: number;
  /** Of the missing packets, those the kernel dropped at a full sink socket (the sink fell behind, not the SFU). */
  sinkDrops: number;
  /** Packets the kernel dropped at the workers' own full sockets (the SFU fell behind its input; before fan-out). */
  sfuDrops: number;
  /** Loss not explained by sink drops: what the SFU lost, in % of `expected`. */
  sfuLossPct: number;
  /**
   * Per worker: CPU time spent on the trial (from its start until the sinks went quiet) ÷ its sending time, 1 = one
   * core. A worker that falls behind catches up after the sending stopped, so this passes 1 under overload.
   */
  workerCpu: number[];
  /** This Node process (generator + sinks), same unit. */
  nodeCpu: number;
  /** Worker CPU ms (all workers) per 1000 packets received at the sinks. */
  cpuMsPer1000: number;
  /** Packets per second out of the SFU (received at the sinks). */
  forwardedPps: number;
  /** verify: forwarded payloads equal to one their producer sent, and those that matched none. */
  matched: number;
  mismatched: number;
}

const LOOPBACK = '127.0.0.1';
const SRTP_SUITE: ms.SrtpCryptoSuite = 'AEAD_AES_256_GCM';
const SRTP_KEY_BYTES = 44; // AES-256 master key 32 + salt 12 (RFC 7714 §12)
const DRAIN_MS = 250;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hash = (b: Uint8Array): string => createHash('sha1').update(b).digest('base64');

async function bindUdp(recvBuffer?: number): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, LOOPBACK, () => {
      s.off('error', reject);
      resolve();
    });
  });
  if (recvBuffer) s.setRecvBufferSize(recvBuffer);
  return s;
}

/** Kernel drop counters of our sockets: /proc/net/udp `drops` column (the last) by local port. */
function socketDrops(ports: Set<number>): number {
  let text: string;
  try {
    text = readFileSync('/proc/net/udp', 'utf8');
  } catch {
    return 0;
  }
  let drops = 0;
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1]?.split(':')[1];
    if (local !== undefined && ports.has(parseInt(local, 16))) drops += Number(cols[cols.length - 1]) || 0;
  }
  return drops;
}

/** A member's send side: one comedia PlainTransport, a VP8 and an Opus producer, one socket. */
interface Sender {
  socket: Socket;
  port: number;
  video: RtpStream;
  audio: RtpStream;
  producers: ms.Producer[];
  keyPending: boolean;
  sent: Map<number, number>;
  /** verify: payload hashes each SSRC sent */
  payloads: Map<number, Set<string>>;
}

interface Counter {
  /** SSRC of the producer this consumer forwards. */
  source: number;
  received: number;
  matched: number;
  mismatched: number;
}

export class CapacityRoom {
  readonly #opts: Required<LoadOptions>;
  readonly #pool: WorkerPool;
  readonly #routers: ms.Router[];
  /** The worker of each router: [A] or [A, B]. */
  readonly #workers: ms.Worker[] = [];
  readonly #pools: Record<Variant, FramePool>;
  readonly #senders: Sender[] = [];
  readonly #sinks: Socket[] = [];
  readonly #sinkPorts = new Set<number>();
  readonly #receivers: Array<{ transport: ms.PlainTransport; ssrcs: number[] }> = [];
  /** Local ports of the workers' transports: kernel drops there = the SFU fell behind its input. */
  readonly #sfuPorts = new Set<number>();
  /** Per consumer SSRC. */
  readonly #counters = new Map<number, Counter>();
  /** Every mediasoup object created (pipe transports and their producers/consumers included). */
  readonly #objects: Array<{ readonly closed: boolean }> = [];
  #variant: Variant = 'sframe';
  #sending = false;
  #timer: NodeJS.Timeout | undefined;
  #frame = 0;
  /** RTP packets the sinks have read, ever. */
  #sinkRtp = 0;
  /** Quiesced, and nothing sent since. */
  #quiet = false;
  #closed = false;

  private constructor(opts: Required<LoadOptions>, pool: WorkerPool, routers: ms.Router[], pools: Record<Variant, FramePool>) {
    this.#opts = opts;
    this.#pool = pool;
    this.#routers = routers;
    this.#pools = pools;
  }

  static async create(options: LoadOptions): Promise<CapacityRoom> {
    const opts: Required<LoadOptions> = { profile: DEFAULT_PROFILE, srtp: true, verify: false, sinks: 4, ...options };
    if (opts.verify && opts.srtp) throw new Error('capacity: verify needs srtp: false (sinks cannot read SRTP payloads)');
    const workers = opts.placement === 'one' ? 1 : 2;
    const pool = await WorkerPool.create({
      size: workers,
      listen: { mode: 'range', ip: LOOPBACK, minPort: 20000, maxPort: 59999 },
      logger: new Logger('warn'),
    });
    const room = new CapacityRoom(opts, pool, [], await makeFramePools(opts.profile));
    try {
      for (const w of pool.workers) room.#track(w);
      // The pool puts each new router on the worker with the fewest: router i on worker i.
      for (let i = 0; i < workers; i++) {
        const { router, worker } = await pool.createRouter('capacity-bench', MEDIA_CODECS);
        room.#routers.push(router);
        room.#workers.push(worker);
      }
      if (new Set(room.#workers).size !== workers) throw new Error('capacity: the pool put both routers on one worker');
      for (let i = 0; i < opts.sinks; i++) {
        const s = await bindUdp(4 * 1024 * 1024);
        s.on('message', (msg) => room.#onSink(msg));
        room.#sinks.push(s);
        room.#sinkPorts.add(s.address().port);
      }
      for (let i = 0; i < opts.senders; i++) await room.#addSender();
      return room;
    } catch (error) {
      await room.close();
      throw error;
    }
  }

  get consumers(): number {
    return this.#counters.size;
  }

  /** [A] or [A, B]: A has the producers. */
  get routers(): readonly ms.Router[] {
    return this.#routers;
  }

  /** The routers' workers, same order. */
  get workers(): readonly ms.Worker[] {
    return this.#workers;
  }

  /** Every mediasoup object this room created (for the test: all closed after close()). */
  get objects(): ReadonlyArray<{ readonly closed: boolean }> {
    return this.#objects;
  }

  /** Adds `n` receivers, each consuming every producer (placed by `placement`). */
  async addReceivers(n: number): Promise<void> {
    const [a, b] = this.#routers as [ms.Router, ms.Router | undefined];
    for (let i = 0; i < n; i++) {
      const index = this.#receivers.length;
      const router = this.#opts.placement === 'one' || !b ? a : this.#opts.placement === 'pipe' ? b : index % 2 === 0 ? a : b;
      const transport = await router.createPlainTransport({
        listenInfo: { protocol: 'udp', ip: LOOPBACK },
        rtcpMux: true,
        comedia: false,
        enableSctp: false,
        enableSrtp: this.#opts.srtp,
        srtpCryptoSuite: SRTP_SUITE,
      });
      const receiver = { transport, ssrcs: [] as number[] };
      this.#receivers.push(receiver);
      const sink = this.#sinks[index % this.#sinks.length] as Socket;
      await transport.connect({
        ip: LOOPBACK,
        port: sink.address().port,
        ...(this.#opts.srtp ? { srtpParameters: { cryptoSuite: SRTP_SUITE, keyBase64: randomBytes(SRTP_KEY_BYTES).toString('base64') } } : {}),
      });
      // No transport-wide-cc: a sink sends no feedback, and send-side BWE would act on its absence.
      const caps: ms.RtpCapabilities = {
        ...router.rtpCapabilities,
        headerExtensions: (router.rtpCapabilities.headerExtensions ?? []).filter((h) => !h.uri.includes('transport-wide-cc')),
      };
      const producers = this.#senders.flatMap((s) => s.producers);
      const consumers = await Promise.all(producers.map((p) => transport.consume({ producerId: p.id, rtpCapabilities: caps })));
      consumers.forEach((consumer, k) => {
        const ssrc = consumer.rtpParameters.encodings?.[0]?.ssrc;
        if (ssrc === undefined || this.#counters.has(ssrc)) throw new Error('capacity: consumer without a unique SSRC');
        const source = producers[k]?.rtpParameters.encodings?.[0]?.ssrc as number;
        this.#counters.set(ssrc, { source, received: 0, matched: 0, mismatched: 0 });
        receiver.ssrcs.push(ssrc);
      });
    }
  }

  /** Closes the last `n` receivers' transports (and so their consumers). */
  removeReceivers(n: number): void {
    for (const { transport, ssrcs } of this.#receivers.splice(Math.max(0, this.#receivers.length - n))) {
      transport.close();
      for (const ssrc of ssrcs) this.#counters.delete(ssrc);
    }
  }

  get receivers(): number {
    return this.#receivers.length;
  }

  /** Sends until every consumer has had a packet (video: after a key frame asked for by PLI), at most `timeoutMs`. */
  async warm(timeoutMs = 5000): Promise<void> {
    this.#zero();
    this.#start();
    const deadline = Date.now() + timeoutMs;
    while ([...this.#counters.values()].some((c) => c.received === 0)) {
      if (Date.now() > deadline) {
        this.#stop();
        const silent = [...this.#counters.values()].filter((c) => c.received === 0).length;
        throw new Error(`capacity: ${silent} of ${this.#counters.size} consumers got no packet within ${timeoutMs} ms`);
      }
      await sleep(20);
    }
    await sleep(200);
    this.#stop();
    await this.#quiesce();
  }

  /** One measurement: `ms` of sending `variant` frames into every producer. */
  async trial(variant: Variant, ms: number): Promise<TrialResult> {
    if (this.#closed) throw new Error('capacity: room closed');
    this.#variant = variant;
    await this.#quiesce();
    this.#zero();
    const drops0 = [socketDrops(this.#sinkPorts), socketDrops(this.#sfuPorts)];
    const ru0 = await Promise.all(this.workers.map((w) => w.getResourceUsage()));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    this.#start();
    await sleep(ms);
    this.#stop();
    const wall = performance.now() - t0;
    const nodeCpu = process.cpuUsage(cpu0);
    await this.#quiesce();
    const ru1 = await Promise.all(this.workers.map((w) => w.getResourceUsage()));
    const sinkDrops = socketDrops(this.#sinkPorts) - (drops0[0] as number);
    const sfuDrops = socketDrops(this.#sfuPorts) - (drops0[1] as number);
    const workerCpu = ru1.map((r, i) => {
      const r0 = ru0[i] as ms.WorkerResourceUsage;
      return (r.ru_utime + r.ru_stime - r0.ru_utime - r0.ru_stime) / wall;
    });
    const sentBy = new Map<number, number>();
    for (const s of this.#senders) for (const [ssrc, n] of s.sent) sentBy.set(ssrc, n);
    let expected = 0;
    let received = 0;
    let worst = 0;
    let matched = 0;
    let mismatched = 0;
    for (const c of this.#counters.values()) {
      const e = sentBy.get(c.source) ?? 0;
      expected += e;
      received += c.received;
      matched += c.matched;
      mismatched += c.mismatched;
      if (e > 0) worst = Math.max(worst, 1 - c.received / e);
    }
    const cpuMs = workerCpu.reduce((s, x) => s + x, 0) * wall;
    return {
      variant,
      consumers: this.#counters.size,
      sent: [...sentBy.values()].reduce((s, x) => s + x, 0),
      expected,
      received,
      lossPct: expected > 0 ? 100 * (1 - received / expected) : 0,
      worstConsumerLossPct: 100 * worst,
      sinkDrops,
      sfuDrops,
      sfuLossPct: expected > 0 ? (100 * Math.max(0, expected - received - sinkDrops)) / expected : 0,
      workerCpu,
      nodeCpu: (nodeCpu.user + nodeCpu.system) / 1000 / wall,
      cpuMsPer1000: received > 0 ? (1000 * cpuMs) / received : Infinity,
      forwardedPps: (1000 * received) / wall,
      matched,
      mismatched,
    };
  }

  /** Stops sending and closes every socket, transport, router and worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop();
    for (const { transport } of this.#receivers) transport.close();
    for (const r of this.#routers) r.close();
    this.#pool.close();
    await Promise.all([...this.#sinks, ...this.#senders.map((s) => s.socket)].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Records a worker's routers, their transports and those transports' producers and consumers as they appear. */
  #track(worker: ms.Worker): void {
    this.#objects.push(worker);
    worker.observer.on('newrouter', (router) => {
      this.#objects.push(router);
      router.observer.on('newtransport', (t) => {
        this.#objects.push(t);
        if (t.type === 'plain' || t.type === 'pipe') this.#sfuPorts.add((t as ms.PlainTransport | ms.PipeTransport).tuple.localPort);
        t.observer.on('newproducer', (p) => this.#objects.push(p));
        t.observer.on('newconsumer', (c) => this.#objects.push(c));
      });
    });
  }

  async #addSender(): Promise<void> {
    const router = this.#routers[0] as ms.Router;
    const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: LOOPBACK }, rtcpMux: true, comedia: true, enableSctp: false });
    const video = new RtpStream('video', this.#opts.profile);
    const audio = new RtpStream('audio', this.#opts.profile);
    const fb = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }];
    const producers = [
      await transport.produce({
        kind: 'video',
        rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: VP8_PT, clockRate: VP8_CLOCK, rtcpFeedback: fb }], encodings: [{ ssrc: video.ssrc }] },
      }),
      await transport.produce({
        kind: 'audio',
        rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PT, clockRate: 48_000, channels: 2 }], encodings: [{ ssrc: audio.ssrc }] },
      }),
    ];
    const [a, b] = this.#routers;
    if (b && a) {
      for (const p of producers) await a.pipeToRouter({ producerId: p.id, router: b, enableSctp: false });
    }
    const socket = await bindUdp();
    const sender: Sender = {
      socket,
      port: transport.tuple.localPort,
      video,
      audio,
      producers,
      keyPending: true,
      sent: new Map([[video.ssrc, 0], [audio.ssrc, 0]]),
      payloads: new Map([[video.ssrc, new Set()], [audio.ssrc, new Set()]]),
    };
    socket.on('message', (msg) => {
      if (isRtcp(msg) && keyFrameRequests(msg).includes(video.ssrc)) sender.keyPending = true;
    });
    this.#senders.push(sender);
  }

  /** Waits until the sinks have had no RTP for DRAIN_MS (nothing left in flight or in their socket buffers), ≤ 3 s. */
  async #quiesce(): Promise<void> {
    if (this.#quiet) return;
    const deadline = performance.now() + 3000;
    let seen = -1;
    while (seen !== this.#sinkRtp && performance.now() < deadline) {
      seen = this.#sinkRtp;
      await sleep(DRAIN_MS);
    }
    this.#quiet = !this.#sending;
  }

  #onSink(msg: Buffer): void {
    if (msg.length < 12 || isRtcp(msg)) return;
    this.#sinkRtp++;
    const c = this.#counters.get(msg.readUInt32BE(8));
    if (!c) return;
    c.received++;
    if (this.#opts.verify) {
      const rtp = parseRtp(msg);
      const sent = this.#senders.find((s) => s.payloads.has(c.source))?.payloads.get(c.source);
      if (rtp && sent?.has(hash(rtp.payload))) c.matched++;
      else c.mismatched++;
    }
  }

  #zero(): void {
    for (const c of this.#counters.values()) {
      c.received = 0;
      c.matched = 0;
      c.mismatched = 0;
    }
    for (const s of this.#senders) for (const k of s.sent.keys()) s.sent.set(k, 0);
  }

  #send(s: Sender, stream: RtpStream, frame: Uint8Array): void {
    for (const pkt of stream.packetize(frame)) {
      s.socket.send(pkt, s.port, LOOPBACK);
      s.sent.set(stream.ssrc, (s.sent.get(stream.ssrc) ?? 0) + 1);
      if (this.#opts.verify) s.payloads.get(stream.ssrc)?.add(hash(pkt.subarray(12)));
    }
  }

  /**
   * Paced sending: every sender's video frame every 1000/fps ms and audio frame every 20 ms, senders spread
   * evenly over the frame interval (members' clocks are not aligned); late ticks catch up, so the rate holds.
   */
  #start(): void {
    if (this.#sending) return;
    this.#sending = true;
    this.#quiet = false;
    const { fps } = this.#opts.profile;
    const t0 = performance.now();
    const n = this.#senders.length;
    const next = this.#senders.map((_, i) => ({ video: t0 + (i * 1000) / fps / n, audio: t0 + (i * OPUS_FRAME_MS) / n }));
    const tick = (): void => {
      if (!this.#sending) return;
      const now = performance.now();
      const pool = this.#pools[this.#variant];
      this.#senders.forEach((s, i) => {
        const due = next[i] as { video: number; audio: number };
        while (due.video <= now) {
          const key = s.keyPending;
          s.keyPending = false;
          const frames = key ? pool.key : pool.delta;
          this.#send(s, s.video, frames[this.#frame++ % frames.length] as Uint8Array);
          due.video += 1000 / fps;
        }
        while (due.audio <= now) {
          this.#send(s, s.audio, pool.audio[this.#frame++ % pool.audio.length] as Uint8Array);
          due.audio += OPUS_FRAME_MS;
        }
      });
      this.#timer = setTimeout(tick, 2);
    };
    tick();
  }

  #stop(): void {
    this.#sending = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
