/**
 * SFrame hot-path benchmark: µs per seal / open through the send key and the receive ring (what the transform worker does per frame)
 * next to one raw WebCrypto AES-GCM call on the same payload, for 100 B, 1 KB and 20 KB frames.
 *
 * Calls are awaited one after the other (per-frame latency, as in an encoded-transform stream). Node's WebCrypto runs
 * AES-GCM on the libuv thread pool, so both columns include one thread hop per call. The four measurements are
 * interleaved in rounds and the median round is reported, so background load hits them alike.
 */
import { loadavg } from 'node:os';
import { ReceiveKeyRing } from '../client/src/e2ee/receive-rings.ts';
import { ReplayWindow } from '../client/src/e2ee/replay-window.ts';
import { SendKey } from '../client/src/e2ee/send-key.ts';
import { makeKid, splitKid } from '../client/src/e2ee/kid.ts';
import type { OpenResult } from '../client/src/e2ee/receive-rings.ts';
import { DEFAULT_SUITE, decodeHeader, encodeHeader, sframeNonce, suiteParams } from '../client/src/e2ee/sframe.ts';

const subtle = globalThis.crypto.subtle;

interface Sample {
  /** wall-clock µs per op */
  wall: number;
  /** process CPU µs per op (user + system, all threads: includes the thread-pool AES work) */
  cpu: number;
}

async function batch(n: number, f: (i: number) => Promise<unknown>): Promise<Sample> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f(i);
  const wall = ((performance.now() - t0) * 1000) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / n };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function fmt(x: number, w = 8): string {
  return x.toFixed(1).padStart(w);
}

function assertOk<T>(r: OpenResult<T>): void {
  if (r.status !== 'ok') throw new Error(`bench: open failed (${r.status})`);
}

function ivFor(i: number): Uint8Array<ArrayBuffer> {
  const iv = new Uint8Array(12);
  iv[11] = i & 0xff;
  iv[10] = (i >>> 8) & 0xff;
  iv[9] = (i >>> 16) & 0xff;
  return iv;
}

export async function benchSframe(): Promise<string[]> {
  const lines: string[] = [];
  const suite = DEFAULT_SUITE;
  const rawKeyBytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  const rawKey = await subtle.importKey('raw', rawKeyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
  rawKeyBytes.fill(0);
  const base = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const metadata = new Uint8Array(0);
  const rounds = 9;

  lines.push(`SFrame ${suiteParams(suite).name} (0x000${suite}), sequential awaited calls, median of ${rounds} interleaved rounds`);
  lines.push(`  Node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  lines.push('  CPU µs per op (process CPU time: stable under background load; "per core" = 1e6 / CPU µs)');
  lines.push('    size | raw enc µs | seal µs | seal/raw | raw dec µs | open µs | open/raw || wall: raw enc | seal | raw dec | open');
  let oneKb = { seal: 0, open: 0 };

  for (const [size, n] of [[100, 400], [1024, 400], [20 * 1024, 200]] as const) {
    const pt = globalThis.crypto.getRandomValues(new Uint8Array(size));
    const kid = makeKid(1, 0);
    const tx = new SendKey({ kid }, base); // what the transform worker seals with
    const rx = new ReceiveKeyRing({ sender: 1 });
    await rx.addKey(kid, base, 0);
    const rawCts: ArrayBuffer[] = [];
    for (let i = 0; i < n; i++) rawCts.push(await subtle.encrypt({ name: 'AES-GCM', iv: ivFor(i) }, rawKey, pt));
    // warm-up (JIT, key import promise, thread pool)
    for (let i = 0; i < 300; i++) assertOk(await rx.open(await tx.seal(metadata, pt), metadata, 0));

    const m = { rawEnc: [] as Sample[], seal: [] as Sample[], rawDec: [] as Sample[], open: [] as Sample[] };
    for (let r = 0; r < rounds; r++) {
      const frames: Uint8Array[] = new Array(n);
      m.rawEnc.push(await batch(n, (i) => subtle.encrypt({ name: 'AES-GCM', iv: ivFor(i), tagLength: 128 }, rawKey, pt)));
      m.seal.push(await batch(n, async (i) => (frames[i] = await tx.seal(metadata, pt))));
      m.rawDec.push(await batch(n, (i) => subtle.decrypt({ name: 'AES-GCM', iv: ivFor(i), tagLength: 128 }, rawKey, rawCts[i] as ArrayBuffer)));
      m.open.push(await batch(n, async (i) => assertOk(await rx.open(frames[i] as Uint8Array, metadata, 0))));
    }
    const cpu = (xs: Sample[]): number => median(xs.map((x) => x.cpu));
    const wall = (xs: Sample[]): number => median(xs.map((x) => x.wall));
    const [rawEnc, seal, rawDec, open] = [cpu(m.rawEnc), cpu(m.seal), cpu(m.rawDec), cpu(m.open)];
    if (size === 1024) oneKb = { seal, open };
    lines.push(
      `  ${String(size).padStart(6)} | ${fmt(rawEnc, 10)} | ${fmt(seal, 7)} | ${(seal / rawEnc).toFixed(2).padStart(8)} | ${fmt(rawDec, 10)} | ${fmt(open, 7)} | ${(open / rawDec).toFixed(2).padStart(8)} ||` +
        `       ${fmt(wall(m.rawEnc), 7)} | ${fmt(wall(m.seal), 6)} | ${fmt(wall(m.rawDec), 7)} | ${fmt(wall(m.open), 6)}`,
    );
    tx.destroy();
    rx.destroy();
  }
  lines.push(`  1 KB seal+open: ${(1e6 / (oneKb.seal + oneKb.open)).toFixed(0)} frames/s per core (${(oneKb.seal + oneKb.open).toFixed(1)} CPU µs per frame)`);

  // The synchronous framing work around the AEAD call (header, nonce, AAD, output copy), without the AEAD itself.
  const salt = new Uint8Array(12).fill(7);
  const ct = new Uint8Array(1024 + 16);
  const iters = 200_000;
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const ctr = BigInt(i);
    const h = encodeHeader(0x1005n, ctr);
    const nonce = sframeNonce(salt, ctr);
    const aad = new Uint8Array(h.length);
    aad.set(h);
    const out = new Uint8Array(h.length + ct.length);
    out.set(h, 0);
    out.set(ct, h.length);
    sink += (out[0] as number) + (nonce[11] as number) + (aad[0] as number);
  }
  const framingUs = ((performance.now() - t0) * 1000) / iters;
  lines.push(`  framing work per 1 KB seal outside the AEAD call (header + nonce + AAD + output copy): ${framingUs.toFixed(2)} µs`);
  // ... and per open: header parse, KID split, replay check + commit, nonce, AAD.
  const headers = Array.from({ length: 4096 }, (_, i) => encodeHeader(0x1005n, BigInt(i)));
  const w = new ReplayWindow(1024);
  const t1 = performance.now();
  for (let i = 0; i < iters; i++) {
    const h = decodeHeader(headers[i & 4095] as Uint8Array);
    sink += splitKid(h.kid).sender;
    const ctr = BigInt(i);
    if (w.check(ctr)) w.commit(ctr);
    const nonce = sframeNonce(salt, ctr);
    const aad = new Uint8Array(h.length);
    aad.set((headers[i & 4095] as Uint8Array).subarray(0, h.length));
    sink += (nonce[0] as number) + (aad[0] as number);
  }
  const openFramingUs = ((performance.now() - t1) * 1000) / iters;
  lines.push(`  framing work per open outside the AEAD call (parse + KID + replay window + nonce + AAD): ${openFramingUs.toFixed(2)} µs${sink < 0 ? '' : ''}`);
  return lines;
}
