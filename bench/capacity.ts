/**
 * Capacity bench: how many consumers one mediasoup worker core forwards, with SFrame-sized and plaintext-sized
 * payloads side by side, for a room on one worker and for a room spread over two workers through pipeToRouter().
 *
 * The load (bench/capacity-load.ts): `SENDERS` members each send VP8 (500 kbit/s, 30 fps, ~2 packets a frame) and
 * Opus (80-byte frames every 20 ms) into PlainTransports; R receivers each consume every producer over an SRTP
 * PlainTransport into UDP sinks in this process, so a room of 20 producers × R receivers = 20 R consumers. R steps
 * up (×STEP, then BISECTIONS geometric bisections) until the loss the SFU causes (sinks' own buffer drops not
 * counted) passes LOSS_PCT or a worker's CPU demand (CPU time for a trial ÷ its sending time) passes CPU_MAX of a
 * core; the last step under both is the capacity point, measured again as the median of TRIALS interleaved trials
 * per variant. "Consumers per core" = consumers ÷ the workers' CPU in cores at that point. With 1 s trials the
 * sockets' buffers hide a worker that is a little behind, so CPU demand, not loss, is what normally ends the ramp.
 *
 * Placements: one worker; pipe (producers on worker A, every consumer on worker B); split (producers on A,
 * consumers half on A, half on B). `--long` (or BENCH_LONG=1): longer trials, finer steps, more trials.
 */
import { loadavg } from 'node:os';
import { CapacityRoom, type Placement, type TrialResult } from './capacity-load.ts';
import { DEFAULT_PROFILE, makeFramePools, meanFrameBytes, VARIANTS, type Variant } from './capacity-media.ts';

const LONG = process.argv.includes('--long') || process.env.BENCH_LONG === '1';
const SENDERS = 10;
const PRODUCERS = 2 * SENDERS;
const TRIAL_MS = LONG ? 3000 : 1000;
const TRIALS = LONG ? 9 : 5;
const STEP = LONG ? 1.2 : 1.45;
const BISECTIONS = LONG ? 2 : 1;
const MAX_RECEIVERS = 400;
const LOSS_PCT = 1;
const CPU_MAX = 0.9;
/** Sinks that drop this much (their socket buffers full: Node, not the SFU, is the limit) end the ramp. */
const SINK_LOSS_PCT = 1;

const PLACEMENTS: Array<[Placement, string]> = [
  ['one', 'one worker'],
  ['pipe', 'pipe: producers on A, consumers on B'],
  ['split', 'split: producers on A, consumers on A and B'],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const pct = (x: number, w = 6): string => (100 * x).toFixed(1).padStart(w);
const num = (x: number, w: number, d = 0): string => x.toFixed(d).padStart(w);
const sum = (xs: number[]): number => xs.reduce((s, x) => s + x, 0);
const cpuCores = (r: TrialResult): number => sum(r.workerCpu);

type Verdict = 'ok' | 'sfu-loss' | 'cpu' | 'sink';

function verdict(r: TrialResult): Verdict {
  const sinkLossPct = (100 * r.sinkDrops) / Math.max(1, r.expected);
  if (r.sfuLossPct > LOSS_PCT) return 'sfu-loss';
  if (Math.max(...r.workerCpu) > CPU_MAX) return 'cpu';
  if (sinkLossPct > SINK_LOSS_PCT) return 'sink';
  return 'ok';
}

const VERDICT_TEXT: Record<Exclude<Verdict, 'ok'>, string> = {
  'sfu-loss': `SFU loss > ${LOSS_PCT} %`,
  cpu: `a worker > ${CPU_MAX * 100} % of a core`,
  sink: `the sinks in Node fell behind (> ${SINK_LOSS_PCT} % dropped at their sockets): generator-bound, the SFU figure is a lower bound`,
};

interface PlacementSummary {
  name: string;
  consumers: number;
  limit: string;
  perCore: Record<Variant, number>;
  per1000: Record<Variant, number>;
  cpu: Record<Variant, number[]>;
  loss: Record<Variant, number>;
}

function trialCells(r: TrialResult): string {
  return `${pct(cpuCores(r))} (${r.workerCpu.map((c) => pct(c, 0)).join('+')}) | ${r.sfuLossPct.toFixed(2).padStart(5)} | ${String(r.sinkDrops).padStart(6)}`;
}

async function resize(room: CapacityRoom, receivers: number): Promise<void> {
  if (receivers > room.receivers) await room.addReceivers(receivers - room.receivers);
  else room.removeReceivers(room.receivers - receivers);
}

/** Sets the room to `receivers`, warms it up and runs one trial per variant; the threshold crossed, if any. */
async function measureStep(room: CapacityRoom, receivers: number, step: number, lines: string[]): Promise<string | undefined> {
  await resize(room, receivers);
  try {
    await room.warm();
  } catch (error) {
    const why = (error as Error).message; // consumers that never got a packet: overloaded
    lines.push(`    ${num(room.consumers, 9)} | ${why}`);
    return why;
  }
  const order: Variant[] = step % 2 === 0 ? ['sframe', 'plain'] : ['plain', 'sframe'];
  const rs = new Map<Variant, TrialResult>();
  for (const v of order) rs.set(v, await room.trial(v, TRIAL_MS));
  const s = rs.get('sframe') as TrialResult;
  const p = rs.get('plain') as TrialResult;
  lines.push(`    ${num(room.consumers, 9)} | ${num((s.forwardedPps + p.forwardedPps) / 2, 9)} | ${trialCells(s)} || ${trialCells(p)}`);
  const bad = [verdict(s), verdict(p)].find((v) => v !== 'ok');
  return bad ? VERDICT_TEXT[bad] : undefined;
}

async function ramp(placement: Placement, name: string, startReceivers: number, lines: string[]): Promise<PlacementSummary> {
  const room = await CapacityRoom.create({ placement, senders: SENDERS });
  try {
    lines.push(`  ${name}`);
    lines.push('    consumers | pkt/s out | sframe: worker CPU % | SFU loss % | sink drops || plain: worker CPU % | SFU loss % | sink drops');
    let receivers = startReceivers;
    let last = 0;
    let limit = `not reached by ${MAX_RECEIVERS * PRODUCERS} consumers`;
    let step = 0;
    for (; receivers <= MAX_RECEIVERS; step++) {
      const bad = await measureStep(room, receivers, step, lines);
      if (bad) {
        limit = bad;
        break;
      }
      last = receivers;
      receivers = Math.max(receivers + 1, Math.round(receivers * STEP));
    }
    // Narrow the bracket [last, receivers) by bisection (geometric middle).
    for (let b = 0; b < BISECTIONS && last > 0 && receivers <= MAX_RECEIVERS; b++, step++) {
      const mid = Math.round(Math.sqrt(last * receivers));
      if (mid <= last || mid >= receivers) break;
      const bad = await measureStep(room, mid, step, lines);
      if (bad) {
        receivers = mid;
        limit = bad;
      } else last = mid;
    }
    if (last === 0) {
      lines.push(`    over the thresholds at the first step (${room.consumers} consumers): ${limit}`);
      last = room.receivers;
    }
    await resize(room, last);
    await room.warm();
    const results: Record<Variant, TrialResult[]> = { sframe: [], plain: [] };
    for (let i = 0; i < TRIALS; i++) for (const v of i % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) results[v].push(await room.trial(v, TRIAL_MS));
    const summary: PlacementSummary = {
      name,
      consumers: room.consumers,
      limit,
      perCore: { sframe: 0, plain: 0 },
      per1000: { sframe: 0, plain: 0 },
      cpu: { sframe: [], plain: [] },
      loss: { sframe: 0, plain: 0 },
    };
    for (const v of VARIANTS) {
      const rs = results[v];
      summary.perCore[v] = median(rs.map((r) => r.consumers / cpuCores(r)));
      summary.per1000[v] = median(rs.map((r) => r.cpuMsPer1000));
      summary.cpu[v] = rs[0]!.workerCpu.map((_, w) => median(rs.map((r) => r.workerCpu[w] as number)));
      summary.loss[v] = median(rs.map((r) => r.sfuLossPct));
    }
    const nodeCpu = median([...results.sframe, ...results.plain].map((r) => r.nodeCpu));
    lines.push(
      `    capacity point: ${summary.consumers} consumers (next step: ${limit}); median of ${TRIALS} interleaved trials per variant: ` +
        `SFU loss ${summary.loss.sframe.toFixed(2)} % sframe, ${summary.loss.plain.toFixed(2)} % plain; Node (generator + sinks) ${pct(nodeCpu, 0)} % of a core`,
    );
    return summary;
  } finally {
    await room.close();
  }
}

export async function benchCapacity(): Promise<string[]> {
  const lines: string[] = [];
  const pools = await makeFramePools(DEFAULT_PROFILE);
  const [pv, pa] = meanFrameBytes(pools.plain);
  const [sv, sa] = meanFrameBytes(pools.sframe);
  const prof = DEFAULT_PROFILE;
  lines.push(
    `Capacity: one room, ${SENDERS} senders × (VP8 ${prof.videoBitrate / 1000} kbit/s ${prof.fps} fps + Opus ${prof.audioBytes} B / 20 ms) = ${PRODUCERS} producers; ` +
      `each receiver consumes all ${PRODUCERS} over an SRTP (AEAD_AES_256_GCM) PlainTransport; trials of ${TRIAL_MS / 1000} s${LONG ? ' (--long)' : ''}`,
  );
  lines.push(`  Node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}; thresholds: SFU loss > ${LOSS_PCT} % or a worker > ${CPU_MAX * 100} % of a core`);
  lines.push(
    `  mean bytes per frame: VP8 ${pv.toFixed(0)} plain / ${sv.toFixed(0)} sframe (+${(sv - pv).toFixed(0)}), Opus ${pa.toFixed(0)} / ${sa.toFixed(0)} (+${(sa - pa).toFixed(0)})`,
  );
  const summaries: PlacementSummary[] = [];
  for (const [placement, name] of PLACEMENTS) {
    // The one-worker capacity point tells where the two-worker ramps are worth starting.
    const start = summaries[0] ? Math.max(5, Math.round(summaries[0].consumers / PRODUCERS / 2)) : 5;
    summaries.push(await ramp(placement, name, start, lines));
  }
  lines.push('  summary (capacity point of each placement, medians; "per core" = consumers ÷ worker CPU in cores)');
  lines.push('    placement                                   | consumers | worker CPU % (A+B)      | consumers per core: sframe | plain | s/p  || CPU ms / 1000 pkts: sframe | plain | s/p');
  for (const s of summaries) {
    const cpu = s.cpu.sframe.map((c) => pct(c, 0)).join('+');
    lines.push(
      `    ${s.name.padEnd(43)} | ${num(s.consumers, 9)} | ${cpu.padEnd(23)} | ${num(s.perCore.sframe, 26)} | ${num(s.perCore.plain, 5)} | ${(s.perCore.sframe / s.perCore.plain).toFixed(2).padStart(4)} ||` +
        ` ${num(s.per1000.sframe, 26, 3)} | ${num(s.per1000.plain, 5, 3)} | ${(s.per1000.sframe / s.per1000.plain).toFixed(2)}`,
    );
  }
  // Sizing from the least favourable placement (a room past one worker pays for its pipes).
  const perCore = Math.min(...summaries.map((s) => s.perCore.sframe));
  const room50 = 50 * 49 * 2;
  lines.push(
    `  sizing (least favourable placement, ${perCore.toFixed(0)} consumers per core): a 50-member room with camera + mic = ${room50} consumers ≈ ` +
      `${(room50 / perCore).toFixed(1)} worker cores at 100 % (${(room50 / perCore / CPU_MAX).toFixed(1)} at ${CPU_MAX * 100} %), at this bitrate`,
  );
  return lines;
}
