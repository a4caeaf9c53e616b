/**
 * The mediasoup worker built by infra/build-mediasoup.sh: mediasoup 3.27.x from the npm tarball, linked
 * against Debian's OpenSSL 3, libsrtp2 and libuv (nothing bundled), and actually working as a 3.27
 * worker (real processes, no mocks): its own log says which version and libraries it runs, it answers
 * over the FlatBuffers channel, and it opens a WebRtcServer (3.27 API) on one UDP and one TCP port.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import { DEFAULT_WORKER_BIN, MEDIASOUP_VERSION, resolveWorkerBin } from '../../sfu/src/workerBin.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  dependencies: Record<string, string>;
};
const workers: ms.Worker[] = [];

afterAll(() => {
  mediasoup.setLogEventListeners();
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

async function newWorker(settings: ms.WorkerSettings = {}): Promise<ms.Worker> {
  const w = await mediasoup.createWorker({ logLevel: 'warn', workerBin: resolveWorkerBin(), ...settings });
  workers.push(w);
  return w;
}

const mediaCodecs: ms.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: {} },
];

describe('mediasoup worker binary (infra/build-mediasoup.sh)', () => {
  it('is mediasoup 3.27.x, the pinned version, built into .cache/mediasoup-worker/<version>/', () => {
    expect(mediasoup.version).toMatch(/^3\.27\.\d+$/);
    expect(pkg.dependencies['mediasoup']).toBe(mediasoup.version);
    expect(MEDIASOUP_VERSION).toBe(mediasoup.version);
    const bin = resolveWorkerBin();
    expect(bin).toBe(DEFAULT_WORKER_BIN);
    expect(path.basename(path.dirname(bin))).toBe(mediasoup.version);
    // The build script writes its input hash next to the binary only after every link check passed.
    expect(readFileSync(path.join(path.dirname(bin), 'build.stamp'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
  });

  it("links Debian's OpenSSL 3, libsrtp2 and libuv dynamically; nothing bundled", () => {
    const bin = resolveWorkerBin();
    const ldd = execFileSync('ldd', [bin], { encoding: 'utf8' });
    expect(ldd).toMatch(/libssl\.so\.3 => \/\S+/);
    expect(ldd).toMatch(/libcrypto\.so\.3 => \/\S+/);
    expect(ldd).toMatch(/libsrtp2\.so\.1 => \/\S+/);
    expect(ldd).toMatch(/libuv\.so\.1 => \/\S+/);
    expect(ldd).not.toMatch(/lib(ssl|crypto)\.so\.1/);
    expect(ldd).not.toContain('not found');
    const image = readFileSync(bin);
    // Statically linked copies would carry their version banners.
    expect(image.includes('OpenSSL 1.1.1')).toBe(false);
    expect(image.includes('OpenSSL 3.0.8')).toBe(false); // the wrapdb OpenSSL mediasoup would download
    expect(image.includes('libsrtp3')).toBe(false);
    // Debian's libsrtp2 package is what the dynamic linker resolves.
    const srtp = /libsrtp2\.so\.1 => (\S+)/.exec(ldd)?.[1] ?? '';
    expect(existsSync(srtp)).toBe(true);
    expect(execFileSync('dpkg', ['-S', srtp.replace(/^\/lib\//, '/usr/lib/')], { encoding: 'utf8' })).toMatch(/^libsrtp2-1:/);
  });

  it('reports its version and libraries in its own log (3.27.x, OpenSSL 3, libsrtp2)', async () => {
    const lines: string[] = [];
    mediasoup.setLogEventListeners({ ondebug: (_ns, log) => lines.push(log) });
    const worker = await newWorker({ logLevel: 'debug', logTags: ['info'] });
    const seen = (re: RegExp): boolean => lines.some((l) => l.includes(`[pid:${worker.pid}]`) && re.test(l));
    expect(await waitFor(() => seen(/libsrtp version/), 5000)).toBe(true);
    mediasoup.setLogEventListeners();
    expect(seen(new RegExp(`starting mediasoup-worker process \\[version:${mediasoup.version.replace(/\./g, '\\.')}\\]`))).toBe(true);
    expect(seen(/openssl version: "OpenSSL 3\.\d+\.\d+/)).toBe(true);
    expect(seen(/libsrtp version: "libsrtp2 2\.\d+\.\d+"/)).toBe(true);
    worker.close();
  });

  it('runs a worker whose router offers Opus + VP8; close() does not emit "died"', async () => {
    const worker = await newWorker();
    let died = false;
    worker.on('died', () => {
      died = true;
    });
    const pid = worker.pid;
    expect(pid).toBeGreaterThan(0);

    // The running process really has Debian's OpenSSL 3 and libsrtp2 mapped.
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    expect(maps).toContain('libssl.so.3');
    expect(maps).toContain('libcrypto.so.3');
    expect(maps).toContain('libsrtp2.so.1');

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
      (c) => c.mimeType === 'video/rtx' && c.parameters?.['apt'] === vp8?.preferredPayloadType,
    );
    expect(rtx).toBeDefined();

    // The worker answers over its FlatBuffers channel.
    const dump = await worker.dump();
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

  it('opens a WebRtcServer on one UDP and one TCP port and hands it WebRTC transports', async () => {
    const worker = await newWorker();
    const server = await worker.createWebRtcServer({
      listenInfos: [
        { protocol: 'udp', ip: '127.0.0.1', portRange: { min: 40000, max: 49999 } },
        { protocol: 'tcp', ip: '127.0.0.1', portRange: { min: 40000, max: 49999 } },
      ],
    });
    const serverDump = await server.dump();
    expect(serverDump.udpSockets).toHaveLength(1);
    expect(serverDump.tcpServers).toHaveLength(1);
    const udpPort = serverDump.udpSockets[0]!.port;
    const tcpPort = serverDump.tcpServers[0]!.port;
    expect((await worker.dump()).webRtcServerIds).toEqual([server.id]);

    const router = await worker.createRouter({ mediaCodecs });
    const transports = await Promise.all(
      [1, 2, 3].map(() => router.createWebRtcTransport({ webRtcServer: server, enableUdp: true, enableTcp: true })),
    );
    for (const t of transports) {
      expect(t.iceCandidates.map((c) => `${c.protocol}:${c.port}`).sort()).toEqual([`tcp:${tcpPort}`, `udp:${udpPort}`]);
    }
    expect((await server.dump()).webRtcTransportIds.sort()).toEqual(transports.map((t) => t.id).sort());
    worker.close();
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
