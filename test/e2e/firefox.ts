/**
 * Firefox participants for the e2e harness (`h.firefox(name)`): Debian's firefox-esr driven by puppeteer-core
 * over WebDriver BiDi, one fresh profile per participant in its own temp dir (HOME, XDG and TMPDIR inside it
 * too), fake camera/mic without a permission prompt, autoplay allowed.
 *
 * Each participant's Firefox runs with a window (not headless) on its own Xvfb X server (Debian `xvfb`; a free
 * display number picked by Xvfb itself through -displayfd, stopped with the participant): headless Firefox has
 * no screen, and its getDisplayMedia answers NotFoundError whatever the prefs (fake streams, permission
 * fake/disabled, screensharing enabled). On Xvfb, getDisplayMedia captures the virtual screen ("Primary
 * Monitor") without a picker, since `media.navigator.permission.disabled` skips the prompt, so the app's own
 * "Share screen" button works as a user's click does.
 *
 * No pref makes Firefox pair loopback ICE candidates (`media.peerconnection.ice.loopback` stays at its default,
 * false): the harness server has LOCAL_LAN_MEDIA on, and Firefox reaches the SFU on the machine's non-loopback
 * address as it would on a default `npm start`.
 *
 * The page helpers in harness.ts that only evaluate in the page (snapshot, rtpStats, expectMediaFlowing, …) take
 * these participants as they are (`page`: evaluation by value, see byValue); the DOM steps below replace the
 * Playwright-only ones (getByTestId) and drive the Puppeteer page (`tab`).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import type { AnyParticipant, EvaluatePage } from './harness.ts';

export const FIREFOX = process.env['FIREFOX_PATH'] ?? '/usr/bin/firefox-esr';
export const XVFB = process.env['XVFB_PATH'] ?? '/usr/bin/Xvfb';
/** The virtual screen Firefox's window and getDisplayMedia see. */
const SCREEN = { width: 1280, height: 720 } as const;

export interface FirefoxParticipant extends AnyParticipant {
  browser: Browser;
  /** The Puppeteer page, for DOM steps (locators, clicks). */
  tab: Page;
}

/**
 * `evaluate` that returns its result by value (a JSON copy), as Playwright's does. Puppeteer's own over BiDi
 * returns `undefined` for an object the result holds twice (BiDi sends the repeat as a reference), e.g. a
 * producer both in `snap.producers` and in a ledger entry. The function runs as WebDriver script, as with
 * Puppeteer's evaluate (not subject to the page's CSP).
 */
function byValue(tab: Page): EvaluatePage {
  const evaluate = async (fn: (arg?: unknown) => unknown, ...args: unknown[]): Promise<unknown> => {
    const call = `(${fn.toString()})(${args.length > 0 ? JSON.stringify(args[0]) : ''})`;
    const json = (await tab.evaluate(`(async () => JSON.stringify(await ${call}))()`)) as string | undefined;
    return json === undefined ? undefined : JSON.parse(json);
  };
  return { evaluate } as EvaluatePage;
}

export function ensureFirefox(): void {
  for (const [bin, pkg] of [[FIREFOX, 'firefox-esr'], [XVFB, 'xvfb']] as const) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`apt-get install -y ${pkg}\` (infra/setup.sh --for-test does this)`);
  }
}

interface XServer {
  /** The DISPLAY value, e.g. ":3". */
  display: string;
  stop(): Promise<void>;
}

/**
 * Starts an Xvfb on a free display number (Xvfb takes the first free one and writes it to fd 3: -displayfd),
 * local connections only (-nolisten tcp). Resolves once the server accepts connections.
 */
async function startXvfb(timeoutMs = 10_000): Promise<XServer> {
  const proc = spawn(XVFB, ['-displayfd', '3', '-screen', '0', `${SCREEN.width}x${SCREEN.height}x24`, '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  // 'error' alone (no 'exit') when it could not be spawned.
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => resolve());
    proc.once('error', () => resolve());
  });
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const display = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`Xvfb gave no display within ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
      proc.stdio[3]!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^(\d+)\n/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(`:${m[1]}`);
        }
      });
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`Xvfb exited (${proc.exitCode ?? proc.signalCode}): ${stderr.trim()}`));
      });
    });
    return { display, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Starts Firefox with a fresh profile on its own Xvfb screen (3–5 s here). */
export async function launchFirefox(name: string): Promise<FirefoxParticipant> {
  ensureFirefox();
  const x = await startXvfb();
  const dir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-ff-'));
  const sub = (d: string): string => {
    const p = path.join(dir, d);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const profile = sub('profile');
  const { WAYLAND_DISPLAY: _w, MOZ_HEADLESS: _h, ...env } = process.env;
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      protocol: 'webDriverBiDi',
      headless: false,
      userDataDir: profile,
      defaultViewport: SCREEN,
      extraPrefsFirefox: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        'media.autoplay.default': 0,
      },
      env: {
        ...env,
        DISPLAY: x.display,
        GDK_BACKEND: 'x11',
        HOME: sub('home'),
        XDG_CONFIG_HOME: sub('config'),
        XDG_CACHE_HOME: sub('cache'),
        XDG_DATA_HOME: sub('data'),
        XDG_RUNTIME_DIR: sub('tmp'),
        TMPDIR: path.join(dir, 'tmp'),
        MOZ_CRASHREPORTER_DISABLE: '1',
      },
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    await x.stop();
    throw err;
  }
  const tab = (await browser.pages())[0] ?? (await browser.newPage());
  const logs: string[] = [];
  tab.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  tab.on('pageerror', (e) => logs.push(`[pageerror] ${e instanceof Error ? e.message : String(e)}`));
  let closed = false;
  return {
    name,
    browser,
    tab,
    page: byValue(tab),
    dir,
    logs,
    close: async () => {
      if (closed) return;
      closed = true;
      await browser.close().catch(() => undefined);
      await x.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const byTestId = (id: string): string => `[data-testid="${id}"]`;

/** Clicks the element with `data-testid=id` (a trusted click: getDisplayMedia needs the user activation). */
export async function ffClick(p: FirefoxParticipant, id: string, timeoutMs = 20_000): Promise<void> {
  await p.tab.locator(byTestId(id)).setTimeout(timeoutMs).click();
}

/** Fill the lobby and press Join (once enabled); waits until the call is joined. */
export async function ffJoinFromLobby(p: FirefoxParticipant, timeoutMs = 30_000): Promise<void> {
  await p.tab.locator(byTestId('display-name')).setTimeout(20_000).fill(p.name);
  await p.tab.waitForSelector(`${byTestId('join')}:not([disabled])`, { timeout: 20_000 });
  await ffClick(p, 'join');
  await p.tab.waitForFunction(() => window.__meet?.snapshot().status === 'joined', { timeout: timeoutMs, polling: 250 });
}

/** Home page → "New meeting" → the invite link; then joins it as the creator. */
export async function ffCreateAndJoin(p: FirefoxParticipant, homeUrl: string): Promise<string> {
  await p.tab.goto(homeUrl);
  await ffClick(p, 'new-meeting');
  const input = await p.tab.waitForSelector(byTestId('invite-link'), { timeout: 20_000 });
  const link = await input!.evaluate((el) => (el as HTMLInputElement).value);
  if (!/\/m\/[A-Za-z0-9_-]{22}#v1\./.test(link)) throw new Error(`unexpected invite link ${link}`);
  await ffClick(p, 'join-created');
  await ffJoinFromLobby(p);
  return link;
}

/** Opens an invite link and joins. */
export async function ffJoinByLink(p: FirefoxParticipant, link: string): Promise<void> {
  await p.tab.goto(link);
  await ffJoinFromLobby(p);
}

/** The room code's digits as the call UI shows them (data-digits; '' while it is being drawn). */
export async function ffRoomCode(p: FirefoxParticipant): Promise<string> {
  return p.tab.$eval(byTestId('room-code'), (el) => (el as HTMLElement).dataset['digits'] ?? '');
}
