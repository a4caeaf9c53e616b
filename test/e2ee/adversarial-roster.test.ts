/**
 * Adversary: the server lies about who is in the room (issue 13 §2). The people list shows the cryptographic
 * roster — everyone we seal keys to — and any difference with the server's list raises a warning within seconds.
 * Real E2eeSessions (relay channel, key bridge, KeyAgent, reducer) over the scriptable in-memory relay.
 */
import { describe, expect, it } from 'vitest';
import { ROSTER_GRACE_MS, UNLISTED_GRACE_MS } from '../../client/src/session/trust-monitor.ts';
import { eventsOf, SessionRoom, type Browser } from '../session/session-sim.ts';

const rosterAlerts = (b: Browser) => eventsOf(b, 'alert').filter((e) => e.alert.kind === 'roster');
const presenceOf = (b: Browser, id: string) => b.session.members.find((m) => m.peerId === id)?.presence;

describe('property: nobody holds our keys without being shown (roster = key roster)', () => {
  it('a member the server never lists, but who announces over the relay, is shown with a warning', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice');
    const bob = room.add('bob');
    const eve = room.add('eve'); // holds the invite, colludes with the server to listen silently
    await room.join('alice');
    await room.join('bob');
    // Eve joins, but the server tells nobody (no peerJoined, absent from join answers): only her relay traffic flows.
    room.roster.push('eve');
    await eve.session.join('eve', ['alice', 'bob']);
    await room.settle();
    // She got keys — membership, not a bug — so she must be visible, at once.
    expect(eve.frames.receiveKeys.length).toBeGreaterThan(0);
    for (const b of [alice, bob]) {
      expect(presenceOf(b, 'eve')).toBe('keys-only');
      expect(b.session.members.map((m) => m.peerId)).toContain('eve');
    }
    // The warning follows within the grace period, and not before it.
    expect(rosterAlerts(alice)).toEqual([]);
    room.clock.advance(UNLISTED_GRACE_MS + 1);
    for (const b of [alice, bob]) b.session.refresh([]);
    for (const b of [alice, bob]) {
      expect(rosterAlerts(b).map((e) => e.alert.message).join()).toMatch(/holds the meeting keys, but the server does not show them/);
    }
  });

  it('a member the server lists but who never joins the key exchange is shown as having no keys, with a warning', async () => {
    const room = new SessionRoom();
    const alice = room.add('alice');
    await room.join('alice');
    alice.session.listed('ghost');
    expect(presenceOf(alice, 'ghost')).toBe('server-only');
    room.clock.advance(ROSTER_GRACE_MS + 1);
    alice.session.refresh([]);
    expect(rosterAlerts(alice).map((e) => e.alert.message).join()).toMatch(/has not joined the key exchange/);
  });

  it('an honest server: everyone is in both lists and no roster warning is raised', async () => {
    const room = new SessionRoom();
    const a = room.add('alice');
    const b = room.add('bob');
    await room.join('alice');
    await room.join('bob');
    room.clock.advance(ROSTER_GRACE_MS * 2);
    for (const x of [a, b]) {
      x.session.refresh([]);
      expect(x.session.members.map((m) => m.presence)).toEqual(['both']);
      expect(rosterAlerts(x)).toEqual([]);
    }
  });
});
