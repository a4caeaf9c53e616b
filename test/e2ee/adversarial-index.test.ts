/**
 * Sender-index eviction: member ids are chosen by the (untrusted) server, and a member's 16-bit KID sender index
 * comes from a hash of its id (membership.ts `assignSenderIndices`, linear probing). The server can therefore pick a
 * later joiner's id so that it takes an existing member's index, moving that member to another index.
 *
 * The core handles it (the evicted member rekeys under its new index; receivers get `sender-index-changed`), but
 * the app's KeyAgent hook MUST wipe the receive ring of the old index on `sender-index-changed` (as it does on
 * `forget-member`): otherwise the evicted member's in-flight frames, still opened by its retired keys for
 * `graceMs`, come out of the ring whose KID sender index now belongs to the evictor (misattributed media).
 * key-agent.ts `KeyAgentHooks.onEffect` does not say so; no client code consumes KeyAgent yet.
 */
import { describe, expect, it } from 'vitest';
import { assignSenderIndices } from '../../client/src/e2ee/sender-index.ts';
import { splitKid } from '../../client/src/e2ee/kid.ts';
import { decodeHeader } from '../../client/src/e2ee/sframe.ts';
import { Sim, vp8Frame } from './relay-sim.ts';

/** An id that sorts before `victim` and hashes to the victim's index (found by brute force, ~65536 SHA-256). */
function evictor(victim: string, others: string[]): string {
  const target = assignSenderIndices([victim, ...others]).get(victim)!;
  for (let i = 0; ; i++) {
    const id = `a${i}`;
    if (id < victim && assignSenderIndices([id]).get(id) === target) return id;
  }
}

async function evict(onIndexChange: 'remove' | 'ignore') {
  const sim = new Sim({ onIndexChange });
  for (const id of ['alice', 'bob', 'carol']) await sim.join(id);
  const n = evictor('bob', ['alice', 'carol']);
  const oldIdx = sim.member('alice').agent.state.senderIndices.get('bob')!;
  // alice is receiving bob's video (she holds bob's current key) ...
  const f0 = vp8Frame(false);
  expect(await sim.reads('alice', await sim.sendFrame('bob', f0), f0)).toBe(true);
  // ... and bob seals frames under its old index that are still in flight when the evictor joins
  const inflight = [];
  for (let i = 0; i < 3; i++) inflight.push(await sim.sendFrame('bob', vp8Frame(false)));
  sim.advance(10);
  await sim.join(n);
  return { sim, n, oldIdx, inflight };
}

describe('adversarial server: sender-index eviction by chosen member ids', () => {
  it('the evicted member moves to a new index with a fresh key; everyone still reads everyone', async () => {
    const { sim, n, oldIdx } = await evict('remove');
    const alice = sim.member('alice');
    expect(alice.agent.state.senderIndices.get(n)).toBe(oldIdx);
    expect(alice.agent.state.senderIndices.get('bob')).not.toBe(oldIdx);
    expect(alice.effects).toContainEqual(expect.objectContaining({ kind: 'sender-index-changed', memberId: 'bob', from: oldIdx }));
    for (const s of ['alice', 'bob', 'carol', n])
      for (const r of ['alice', 'bob', 'carol', n]) {
        if (s === r) continue;
        const f = vp8Frame(false);
        expect(await sim.reads(r, await sim.sendFrame(s, f), f), `${s} -> ${r}`).toBe(true);
      }
  });

  it('with the app wiping the old index ring on sender-index-changed, in-flight frames of the evicted member are never attributed to the evictor', async () => {
    const { sim, oldIdx, inflight } = await evict('remove');
    for (const d of inflight) {
      const r = await sim.receiveFrame('alice', d);
      if (r.status === 'ok') expect(splitKid(r.kid).sender).not.toBe(oldIdx);
    }
  });

  it('contract check: an app that ignores sender-index-changed would show the evicted member\'s frames under the evictor\'s index', async () => {
    const { sim, oldIdx, inflight } = await evict('ignore');
    let misattributed = 0;
    for (const d of inflight) {
      const r = await sim.receiveFrame('alice', d);
      if (r.status === 'ok' && splitKid(decodeHeader(d.subarray(3)).kid).sender === oldIdx) misattributed++;
    }
    // The ring of oldIdx now belongs to the evictor; bob's retired keys there still open in-flight frames for graceMs.
    expect(misattributed).toBe(3);
  });
});
