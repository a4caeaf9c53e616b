/**
 * App-level state: the route, the invite held in memory, the lobby's local media and the call session.
 *
 * The invite fragment is read ONCE at startup, kept only in memory, and removed from the address bar
 * with `history.replaceState`; it is never sent anywhere.
 */
import { createContext } from 'svelte';
import { checkRoomId, deriveInviteKeys, generateInvite, parseInviteFragment, ROOM_ID_RE, wipeInviteKeys, type InviteKeys } from '../e2ee/invite.ts';
import { transformSupport } from '../transform/support.ts';
import { fingerprint } from '../e2ee/identity.ts';
import { loadIdentity, resetIdentity } from './identity-store.ts';
import { CallSession } from './call.svelte.ts';
import { LocalMedia } from './media.svelte.ts';

export type Route =
  | { name: 'home' }
  | { name: 'meeting'; roomId: string }
  | { name: 'bad-link'; message: string }
  | { name: 'not-found' };

export type MeetingPhase = 'lobby' | 'call' | 'ended';

const NAME_KEY = 'sealed-meet.displayName';

function loadName(): string {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

export interface NewMeeting {
  roomId: string;
  link: string;
  secret: Uint8Array;
}

export class AppState {
  route = $state<Route>({ name: 'home' });
  phase = $state<MeetingPhase>('lobby');
  displayName = $state(loadName());
  /** Meeting created on the home page (its link is shown there). */
  created = $state.raw<NewMeeting | null>(null);
  media = $state.raw<LocalMedia | null>(null);
  session = $state.raw<CallSession | null>(null);
  keys = $state.raw<InviteKeys | null>(null);
  keyError = $state<string | null>(null);
  readonly support = transformSupport;

  /** Invite secrets by room id, in memory only. */
  readonly #secrets = new Map<string, Uint8Array>();
  /** Creator fingerprints from invite links, by room id. */
  readonly #creators = new Map<string, Uint8Array>();
  /**
   * TEST BUILD only, `?e2ee-test-hooks=1`: key export for e2e tests (this browser's keys only). Outside the TEST build
   * `__SEALED_MEET_TEST_HOOKS__` is the literal false, so the parameter is never even read.
   */
  readonly testHooks = __SEALED_MEET_TEST_HOOKS__ && new URLSearchParams(location.search).get('e2ee-test-hooks') === '1';
  /** Our identity fingerprint (loaded from IndexedDB at startup), put into the invite links we create. */
  #myFingerprint: Uint8Array | undefined;
  /** Set after `resetIdentity()` succeeded, for the home page to confirm it. */
  identityReset = $state(false);

  /**
   * Throw away this browser profile's identity key (verification records of others stay): the next meeting uses a new
   * identity, which others who verified the old one will see as "identity changed" until they verify again.
   */
  async resetIdentity(): Promise<void> {
    await resetIdentity();
    const id = await loadIdentity();
    this.#myFingerprint = fingerprint(id.publicKey);
    this.identityReset = true;
  }

  constructor() {
    loadIdentity().then(
      (id) => {
        this.#myFingerprint = fingerprint(id.publicKey);
      },
      () => undefined,
    );
    const fragment = location.hash.length > 1 ? location.hash.slice(1) : '';
    if (location.hash) history.replaceState(history.state, '', location.pathname + location.search);
    this.route = this.#resolve(location.pathname, fragment);
    addEventListener('popstate', () => {
      this.#leaveMeeting();
      this.route = this.#resolve(location.pathname, '');
    });
    // A link pasted into the address bar that differs only after '#' does not reload the page.
    addEventListener('hashchange', () => {
      const f = location.hash.length > 1 ? location.hash.slice(1) : '';
      if (!f) return;
      history.replaceState(history.state, '', location.pathname + location.search);
      this.#leaveMeeting();
      this.created = null;
      this.route = this.#resolve(location.pathname, f);
    });
  }

  #resolve(pathname: string, fragment: string): Route {
    if (pathname === '/' || pathname === '') return { name: 'home' };
    const m = /^\/m\/([^/]+)\/?$/.exec(pathname);
    if (!m) return { name: 'not-found' };
    const roomId = m[1]!;
    if (!ROOM_ID_RE.test(roomId)) return { name: 'bad-link', message: 'This meeting link is malformed: the room id is not valid.' };
    if (fragment) {
      try {
        const parsed = parseInviteFragment(fragment);
        checkRoomId(parsed.secret, roomId);
        this.#secrets.set(roomId, parsed.secret);
        if (parsed.creatorFingerprint) this.#creators.set(roomId, parsed.creatorFingerprint);
        else this.#creators.delete(roomId);
      } catch (err) {
        const why = err instanceof Error ? err.message.replace(/^\w[\w-]*: /, '') : String(err);
        return { name: 'bad-link', message: `This invite link is broken: ${why}. Ask the person who invited you for the full link again.` };
      }
    }
    if (!this.#secrets.has(roomId)) {
      return {
        name: 'bad-link',
        message: 'This link has no meeting key. The key lives only in the part after "#" of the invite link, and it is dropped from the address bar once read: open the full invite link again.',
      };
    }
    this.phase = 'lobby';
    return { name: 'meeting', roomId };
  }

  createMeeting(): NewMeeting {
    // The link carries our identity fingerprint (when loaded): joiners then verify us, the creator, automatically.
    const { secret, roomId, fragment } = generateInvite(this.#myFingerprint);
    this.#secrets.set(roomId, secret);
    const created = { roomId, secret, link: `${location.origin}/m/${roomId}#${fragment}` };
    this.created = created;
    return created;
  }

  /** Go to a meeting whose secret is already in memory (no fragment in the URL). */
  openMeeting(roomId: string): void {
    history.pushState(null, '', `/m/${roomId}${location.search}`);
    this.route = this.#resolve(`/m/${roomId}`, '');
  }

  goHome(): void {
    this.#leaveMeeting();
    history.pushState(null, '', `/${location.search}`);
    this.route = { name: 'home' };
  }

  /** Lobby entered: start preview and derive keys. */
  async enterLobby(roomId: string): Promise<void> {
    this.phase = 'lobby';
    if (!this.media) this.media = new LocalMedia();
    const secret = this.#secrets.get(roomId);
    this.keyError = null;
    if (secret && !this.keys) {
      try {
        this.keys = await deriveInviteKeys(secret, roomId);
      } catch (err) {
        this.keyError = err instanceof Error ? err.message : String(err);
      }
    }
    if (this.support.ok) await this.media.start();
  }

  setDisplayName(name: string): void {
    this.displayName = name.slice(0, 64);
    try {
      localStorage.setItem(NAME_KEY, this.displayName.trim());
    } catch {
      /* ignore */
    }
    void this.session?.setDisplayName(this.displayName);
  }

  join(roomId: string): void {
    if (!this.support.ok || !this.keys || !this.media || this.session) return;
    const session = new CallSession({
      serverUrl: location.origin,
      roomId,
      inviteKeys: this.keys,
      creatorFingerprint: this.#creators.get(roomId),
      testHooks: this.testHooks,
      displayName: this.displayName.trim() || 'Participant',
      media: this.media,
      transformApi: this.support.api,
    });
    this.session = session;
    this.phase = 'call';
    session.start();
  }

  async leave(): Promise<void> {
    const s = this.session;
    if (!s) return;
    await s.leave();
    this.phase = 'ended';
  }

  /** Back to the lobby after leaving or a fatal error (same room, same keys). */
  backToLobby(): void {
    this.session?.dispose();
    this.session = null;
    this.phase = 'lobby';
  }

  #leaveMeeting(): void {
    this.session?.dispose();
    this.session = null;
    this.media?.stopAll();
    this.media = null;
    // The meeting is over in this tab: its invite-derived keys are wiped (a later visit derives them again).
    if (this.keys) wipeInviteKeys(this.keys);
    this.keys = null;
    this.phase = 'lobby';
  }
}

export const [getApp, setApp] = createContext<AppState>();
