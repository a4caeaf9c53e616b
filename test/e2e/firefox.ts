/**
 * Firefox participants for the e2e harness (`h.firefox(name)`): Debian's firefox-esr driven by puppeteer-core
 * over WebDriver BiDi, headless, one fresh profile per participant in its own temp dir (HOME, XDG and TMPDIR
 * inside it too), fake camera/mic without a permission prompt, autoplay allowed.
 *
 * No pref makes Firefox pair loopback ICE candidates (`media.peerconnection.ice.loopback` stays at its default,
 * false): the harness server has LOCAL_LAN_MEDIA on, and Firefox reaches the SFU on the machine's non-loopback
 * address as it would on a default `npm start`.
 *
 * The page helpers in harness.ts that only evaluate in the page (snapshot, rtpStats, expectMediaFlowing, …) take
 * these participants as they are (`page`: evaluation by value, see byValue); the DOM steps below replace the
 * Playwright-only ones (getByTestId) and drive the Puppeteer page (`tab`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import type { AnyParticipant, EvaluatePage } from './harness.ts';

export const FIREFOX = process.env['FIREFOX_PATH'] ?? '/usr/bin/firefox-esr';

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
  if (!existsSync(FIREFOX)) {
    throw new Error(`${FIREFOX} is missing: run \`apt-get install -y firefox-esr\` (infra/setup.sh --for-test does this)`);
  }
}

/** Starts headless Firefox with a fresh profile (3–5 s here). */
export async function launchFirefox(name: string): Promise<FirefoxParticipant> {
  ensureFirefox();
  const dir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-ff-'));
  const sub = (d: string): string => {
    const p = path.join(dir, d);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const profile = sub('profile');
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      protocol: 'webDriverBiDi',
      headless: true,
      userDataDir: profile,
      defaultViewport: { width: 1280, height: 720 },
      extraPrefsFirefox: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        'media.autoplay.default': 0,
      },
      env: {
        ...process.env,
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
