/**
 * The mediasoup worker built by infra/build-mediasoup.sh: links Debian's OpenSSL 3 (not the bundled
 * 1.1.1k), and actually works as a mediasoup 3.8.4 worker (real processes, no mocks).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { ensureWorkerBinEnv, resolveWorkerBin } from '../../sfu/src/workerBin.ts';

type MediasoupApi = typeof import('mediasoup');
let mediasoup: MediasoupApi;
const workers: ms.Worker[] = [];

beforeAll(async () => {
  // mediasoup reads MEDIASOUP_WORKER_BIN when it is first loaded: set it, then import dynamically.
  ensureWorkerBinEnv();
  const mod = (await import('mediasoup')) as MediasoupApi & { default?: MediasoupApi };
  mediasoup = typeof mod.createWorker === 'function' ? mod : (mod.default as MediasoupApi);
});

afterAll(() => {
  for (const w of workers) if (!w.closed) w.close();
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(25);
  }
  return cond();
}

async function newWorker(): Promise<ms.Worker> {
  const w = await mediasoup.createWorker({ logLevel: 'warn', rtcMinPort: 40000, rtcMaxPort: 40999 });
  workers.push(w);
  return w;
}

const mediaCodecs: ms.RtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: {} },
];

describe('mediasoup worker binary (infra/build-mediasoup.sh)', () => {
  it('resolves to the built binary', () => {
    const bin = resolveWorkerBin();
    expect(bin).toMatch(/mediasoup-worker$/);
    expect(process.env.MEDIASOUP_WORKER_BIN).toBe(bin);
  });

  it("links Debian's OpenSSL 3 dynamically, not the bundled OpenSSL 1.1.1", () => {
    const bin = resolveWorkerBin();
    const ldd = execFileSync('ldd', [bin], { encoding: 'utf8' });
    expect(ldd).toMatch(/libssl\.so\.3 => \/\S+/);
    expect(ldd).toMatch(/libcrypto\.so\.3 => \/\S+/);
    expect(ldd).not.toMatch(/lib(ssl|crypto)\.so\.1/);
    expect(ldd).not.toContain('not found');
    // A statically linked bundled OpenSSL would carry its version banner.
    expect(readFileSync(bin).includes('OpenSSL 1.1.1')).toBe(false);
  });

  it('runs a worker whose router offers Opus + VP8; close() does not emit "died"', async () => {
    const worker = await newWorker();
    let died = false;
    worker.on('died', () => {
      died = true;
    });
    const pid = worker.pid;
    expect(pid).toBeGreaterThan(0);

    // The running process really has OpenSSL 3 mapped.
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    expect(maps).toContain('libssl.so.3');
    expect(maps).toContain('libcrypto.so.3');

    const router = await worker.createRouter({ mediaCodecs });
    const mimeTypes = router.rtpCapabilities.codecs?.map((c) => c.mimeType) ?? [];
    expect(mimeTypes).toContain('audio/opus');
    expect(mimeTypes).toContain('video/VP8');
    const opus = router.rtpCapabilities.codecs?.find((c) => c.mimeType === 'audio/opus');
    expect(opus).toMatchObject({ kind: 'audio', clockRate: 48000, channels: 2 });
    expect(typeof opus?.preferredPayloadType).toBe('number');
    // mediasoup pairs VP8 with an RTX codec whose apt points at it.
    const vp8 = router.rtpCapabilities.codecs?.find((c) => c.mimeType === 'video/VP8');
    const rtx = router.rtpCapabilities.codecs?.find(
      (c) => c.mimeType === 'video/rtx' && c.parameters?.apt === vp8?.preferredPayloadType,
    );
    expect(rtx).toBeDefined();

    // The worker answers over its IPC channel.
    const dump = (await worker.dump()) as { pid: number; routerIds: string[] };
    expect(dump.pid).toBe(pid);
    expect(dump.routerIds).toEqual([router.id]);

    router.close();
    expect(router.closed).toBe(true);
    worker.close();
    expect(worker.closed).toBe(true);
    expect(await waitFor(() => processGone(pid), 5000)).toBe(true);
    await sleep(200); // give a stray 'died' a chance to show up
    expect(died).toBe(false);
  });

  it('emits "died" when the worker process is SIGKILLed', async () => {
    const worker = await newWorker();
    const pid = worker.pid;
    const diedError = new Promise<Error>((resolve) => worker.once('died', resolve));
    process.kill(pid, 'SIGKILL');
    const err = await Promise.race([
      diedError,
      sleep(10_000).then(() => {
        throw new Error('"died" was not emitted within 10 s of SIGKILL');
      }),
    ]);
    expect(err).toBeInstanceOf(Error);
    expect(String(err.message)).toMatch(/SIGKILL|died/i);
    expect(worker.closed).toBe(true);
    expect(processGone(pid)).toBe(true);
  });
});
