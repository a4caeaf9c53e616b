/**
 * End-to-end harness: the real server in-process (`startServer` from signaling/src/main.ts: static client,
 * socket.io signaling, mediasoup SFU with a real worker) and Debian Chromium driven by playwright-core,
 * one persistent context (own profile dir, own HOME/XDG/TMPDIR) per participant, with fake camera/mic; Firefox
 * ESR participants through `h.firefox()` (firefox.ts: puppeteer-core over WebDriver BiDi).
 *
 * The server serves the TEST build of the client (`.cache/client-test/`, built by test/client-build.ts with
 * `--mode test-hooks` when its sources changed), the only bundle with the key export the E2EE tests use; never
 * client/dist, which has none. `E2E_CLIENT_DIR` serves another directory instead (it must hold a TEST build).
 *
 * Playback is judged by decoded frames (RTCStats framesDecoded via `window.__meet.stats`) and video
 * dimensions, never by `currentTime`.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { StartedServer, StartOptions } from '../../signaling/src/main.ts';
import type { ConfigInput } from '../../sfu/src/config.ts';
import type { DebugSnapshot, RtpSummary } from '../../client/src/lib/debug.ts';
import { ensureClientBuild } from '../client-build.ts';
import { launchFirefox, type FirefoxParticipant } from './firefox.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
export const RESULTS_DIR = path.join(REPO_ROOT, 'test-results');

export type TransformApi = 'script' | 'streams';

export function ensureChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run \`apt-get install -y chromium\` (infra/setup.sh --for-test does this)`);
  }
}

/** What the evaluate-only helpers need of a page: Playwright's (Chromium) and Puppeteer's (Firefox, firefox.ts) both fit. */
export interface EvaluatePage {
  evaluate<R>(fn: () => R | Promise<R>): Promise<R>;
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
}

/** A participant in any browser: what snapshot(), rtpStats(), expectMediaFlowing() etc. need. */
export interface AnyParticipant {
  name: string;
  page: EvaluatePage;
  dir: string;
  logs: string[];
  close(): Promise<void>;
}

/** A Chromium participant (Harness.participant): the Playwright page, for getByTestId and the like. */
export interface Participant extends AnyParticipant {
  context: BrowserContext;
  page: Page;
}

export class Harness {
  readonly server: StartedServer;
  readonly participants: Participant[] = [];
  /** Participants in other browsers (h.firefox), closed with the harness too. */
  readonly others: AnyParticipant[] = [];
  readonly serverLog: string[];

  private constructor(server: StartedServer, serverLog: string[]) {
    this.server = server;
    this.serverLog = serverLog;
  }

  get url(): string {
    return this.server.url;
  }

  /**
   * `serverOpts`: extra startServer options (e.g. `{ tap: true }` for the media tap); the log sink is always set.
   * `config`: server settings on top of the harness's (default: media over each worker's WebRtcServer on any free port; e.g. `{ hideVoiceActivity: true }`).
   * Media stays on loopback (`localLanMedia: false`, which Chromium pairs and the single-port tests count on) unless
   * `config` turns LOCAL_LAN_MEDIA on, as firefox.test.ts does: Firefox pairs no loopback candidates.
   */
  static async start(serverOpts: Omit<StartOptions, 'logSink'> = {}, config: ConfigInput = {}): Promise<Harness> {
    ensureChromium();
    // E2E_CLIENT_DIR: serve an already built TEST client from elsewhere; else the TEST build, (re)built if stale.
    const clientDir = process.env['E2E_CLIENT_DIR'] || ensureClientBuild('test');
    const log: string[] = [];
    // Imported lazily: only e2e runs that get this far start mediasoup workers.
    const { startServer } = await import('../../signaling/src/main.ts');
    const server = await startServer(
      { port: 0, host: 'localhost', workers: 1, rtcPort: 0, localLanMedia: false, logLevel: (process.env['E2E_LOG_LEVEL'] as 'info' | undefined) ?? 'warn', ...config, clientDir },
      { ...serverOpts, logSink: (line: string) => log.push(line) },
    );
    return new Harness(server, log);
  }

  /** A fresh Chromium profile (persistent context in a temp dir) with fake media devices (launchChromium), closed with the harness. */
  async participant(name: string, extraArgs: string[] = []): Promise<Participant> {
    const p = await launchChromium(name, extraArgs);
    this.participants.push(p);
    return p;
  }

  /** A Firefox participant (puppeteer-core over WebDriver BiDi, see firefox.ts); the server needs LOCAL_LAN_MEDIA on. */
  async firefox(name: string): Promise<FirefoxParticipant> {
    if (this.server.config.localLanIp === undefined) {
      throw new Error('Firefox pairs no loopback ICE candidates: start the harness with { localLanMedia: true } on a machine with a non-loopback IPv4');
    }
    const p = await launchFirefox(name);
    this.others.push(p);
    return p;
  }

  async close(): Promise<void> {
    await Promise.all([...this.participants, ...this.others].map((p) => p.close()));
    await this.server.close();
  }

  /** pid of the mediasoup worker hosting `roomId`. */
  roomWorkerPid(roomId: string): number {
    const room = this.server.sfu.getRoom(roomId);
    if (!room) throw new Error(`room ${roomId} not found on the server`);
    return room.workerPid;
  }
}

/**
 * A fresh Chromium profile (persistent context in a temp dir) with fake media devices. `Harness.participant` for the
 * harness's own server; on its own for a server started elsewhere (drain.test.ts runs the real CLI). Close it yourself.
 */
export async function launchChromium(name: string, extraArgs: string[] = []): Promise<Participant> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-e2e-'));
  const home = path.join(dir, 'home');
  const profile = path.join(dir, 'profile');
  for (const d of [home, profile, path.join(dir, 'tmp'), path.join(dir, 'cache'), path.join(dir, 'config'), path.join(dir, 'data')]) mkdirSync(d, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      // 15 fps fake camera: three encoders + six decoders share 2 cores in CI.
      '--use-fake-device-for-media-stream=fps=15',
      '--autoplay-policy=no-user-gesture-required',
      // getDisplayMedia without a picker: capture a fake screen.
      '--auto-select-desktop-capture-source=Entire screen',
      '--enable-usermedia-screen-capturing',
      ...extraArgs,
    ],
    env: {
      ...process.env,
      HOME: home,
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      XDG_CACHE_HOME: path.join(dir, 'cache'),
      XDG_DATA_HOME: path.join(dir, 'data'),
      XDG_RUNTIME_DIR: path.join(dir, 'tmp'),
      TMPDIR: path.join(dir, 'tmp'),
    },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  let closed = false;
  const p: Participant = {
    name,
    context,
    page,
    dir,
    logs,
    close: async () => {
      if (closed) return;
      closed = true;
      await context.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return p;
}

// -------------------------------------------------------------------------------------------------
// Page helpers
// -------------------------------------------------------------------------------------------------

/** Adds `?transform=<api>` to an invite link (before the fragment). */
export function withTransform(link: string, api: TransformApi | undefined): string {
  if (!api) return link;
  const u = new URL(link);
  u.searchParams.set('transform', api);
  return u.toString();
}

export function roomIdOf(link: string): string {
  const m = /\/m\/([A-Za-z0-9_-]{22})/.exec(link);
  if (!m?.[1]) throw new Error(`not an invite link: ${link}`);
  return m[1];
}

/** Home page → "New meeting" → returns the invite link shown (the creator stays on the home page). */
export async function createMeeting(p: Participant, baseUrl: string, api?: TransformApi): Promise<string> {
  await p.page.goto(withTransform(`${baseUrl}/`, api));
  await p.page.getByTestId('new-meeting').click();
  const link = await p.page.getByTestId('invite-link').inputValue();
  if (!/\/m\/[A-Za-z0-9_-]{22}#v1\./.test(link)) throw new Error(`unexpected invite link ${link}`);
  return link;
}

/** Fill the lobby and press Join; waits until the call is joined. */
export async function joinFromLobby(p: Participant): Promise<void> {
  const { page } = p;
  await page.getByTestId('lobby').waitFor({ timeout: 20_000 });
  await page.getByTestId('display-name').fill(p.name);
  const join = page.getByTestId('join');
  await waitUntil(() => join.isEnabled(), 20_000, 'join button enabled');
  await join.click();
  await waitUntil(async () => (await snapshot(p)).status === 'joined', 30_000, `${p.name} joined`);
}

/** Open an invite link in this participant's browser and join. */
export async function joinByLink(p: Participant, link: string, api?: TransformApi): Promise<void> {
  await p.page.goto(withTransform(link, api));
  await joinFromLobby(p);
}

export async function snapshot(p: AnyParticipant): Promise<DebugSnapshot> {
  return p.page.evaluate(() => window.__meet!.snapshot());
}

export async function refresh(p: AnyParticipant): Promise<DebugSnapshot> {
  return p.page.evaluate(() => window.__meet!.refresh());
}

export async function rtpStats(p: AnyParticipant, id: string): Promise<RtpSummary | null> {
  return p.page.evaluate((i) => window.__meet!.stats(i), id);
}

export interface FrameSample {
  id: string;
  kind: string;
  source: string;
  direction: 'send' | 'recv';
  workerFrames: number;
  workerBytes: number;
  /** framesEncoded (send) or framesDecoded (recv). */
  rtcFrames: number;
  /** framesReceived (recv only): frames assembled before decoding, i.e. what the receive transform sees. */
  rtcReceived: number;
}

/** Worker counts and RTCStats frame counters for every producer/consumer, taken together inside the page. */
export async function sampleFrames(p: AnyParticipant): Promise<Map<string, FrameSample>> {
  const list = await p.page.evaluate(async () => {
    const m = window.__meet!;
    // Worker counts and RTCStats are requested at the same moment so the two windows line up.
    const first = m.snapshot();
    const ids = [...first.producers.map((x) => x.id), ...first.consumers.map((x) => x.id)];
    const [snap, ...stats] = await Promise.all([m.refresh(), ...ids.map((id) => m.stats(id))]);
    const byId = new Map(ids.map((id, i) => [id, stats[i] ?? null]));
    const out: FrameSample[] = [];
    for (const x of snap.producers) {
      const st = byId.get(x.id);
      out.push({ id: x.id, kind: x.kind, source: x.source, direction: 'send', workerFrames: x.workerFrames, workerBytes: x.workerBytes, rtcFrames: st?.framesEncoded ?? 0, rtcReceived: 0 });
    }
    for (const x of snap.consumers) {
      const st = byId.get(x.id);
      out.push({ id: x.id, kind: x.kind, source: x.source, direction: 'recv', workerFrames: x.workerFrames, workerBytes: x.workerBytes, rtcFrames: st?.framesDecoded ?? 0, rtcReceived: st?.framesReceived ?? 0 });
    }
    return out;
  });
  return new Map(list.map((x) => [x.id, x]));
}

export async function waitUntil(fn: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (err) {
      lastErr = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ''}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RemoteVideoState {
  peerId: string;
  source: string;
  consumerId: string;
  videoWidth: number;
  videoHeight: number;
}

/** Remote video tiles as rendered in the DOM. */
export async function remoteVideos(p: AnyParticipant): Promise<RemoteVideoState[]> {
  return p.page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('[data-testid="tile"][data-local="false"]')].map((tile) => {
      const v = tile.querySelector('video');
      return {
        peerId: tile.dataset['peerId'] ?? '',
        source: tile.dataset['source'] ?? '',
        consumerId: tile.dataset['consumerId'] ?? '',
        videoWidth: v?.videoWidth ?? 0,
        videoHeight: v?.videoHeight ?? 0,
      };
    }),
  );
}

/** Sums of frames decoded / bytes received per consumer, sampled twice `ms` apart. */
export async function consumerProgress(p: AnyParticipant, ms = 1500): Promise<Map<string, { before: RtpSummary; after: RtpSummary }>> {
  const snap = await snapshot(p);
  const ids = snap.consumers.map((c) => c.id);
  const before = new Map<string, RtpSummary>();
  for (const id of ids) {
    const s = await rtpStats(p, id);
    if (s) before.set(id, s);
  }
  await sleep(ms);
  const out = new Map<string, { before: RtpSummary; after: RtpSummary }>();
  for (const id of ids) {
    const a = await rtpStats(p, id);
    const b = before.get(id);
    if (a && b) out.set(id, { before: b, after: a });
  }
  return out;
}

/**
 * Every remote peer in `expectedPeers` has a camera tile with real video (videoWidth > 0) whose decoder is
 * advancing, and an audio consumer whose bytes/packets are rising.
 */
export async function expectMediaFlowing(p: AnyParticipant, expectedPeers: string[], timeoutMs = 30_000): Promise<void> {
  let why = 'not checked yet';
  try {
    await waitUntil(
      async () => {
        const snap = await snapshot(p);
        const vids = await remoteVideos(p);
        for (const peer of expectedPeers) {
          const cam = vids.find((v) => v.peerId === peer && v.source === 'camera');
          if (!cam || cam.videoWidth === 0) {
            why = `${peer}: ${cam ? 'camera tile has videoWidth 0' : 'no camera tile'} (status ${snap.status}, peers ${snap.peers.join(',')}, consumers ${snap.consumers.map((c) => `${c.peerId}/${c.source}`).join(',')})`;
            return false;
          }
          if (!snap.consumers.some((c) => c.peerId === peer && c.kind === 'audio')) {
            why = `${peer}: no audio consumer`;
            return false;
          }
        }
        const progress = await consumerProgress(p, 1200);
        for (const peer of expectedPeers) {
          const video = snap.consumers.find((c) => c.peerId === peer && c.kind === 'video' && c.source === 'camera');
          const audio = snap.consumers.find((c) => c.peerId === peer && c.kind === 'audio');
          const pv = video && progress.get(video.id);
          const pa = audio && progress.get(audio.id);
          if (!pv || pv.after.framesDecoded <= pv.before.framesDecoded) {
            why = `${peer}: video framesDecoded not advancing (${pv?.before.framesDecoded} → ${pv?.after.framesDecoded})`;
            return false;
          }
          if (!pa || pa.after.bytesReceived <= pa.before.bytesReceived || pa.after.packetsReceived <= pa.before.packetsReceived) {
            why = `${peer}: audio not rising (${pa?.before.packetsReceived} → ${pa?.after.packetsReceived} packets)`;
            return false;
          }
        }
        return true;
      },
      timeoutMs,
      `${p.name} receives video+audio from ${expectedPeers.join(', ')}`,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last state: ${why}`);
  }
}

export function dumpLogs(h: Harness): string {
  return [
    ...[...h.participants, ...h.others].map((p) => `--- ${p.name} console ---\n${p.logs.slice(-60).join('\n')}`),
    `--- server ---\n${h.serverLog.slice(-60).join('\n')}`,
  ].join('\n');
}

export function resultsPath(name: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  return path.join(RESULTS_DIR, name);
}
