/**
 * Adversary/robustness: a send-key switch that fails stops sending (issue 13 §5). Whatever makes the switch fail —
 * the schedule running out of KID generations (`ctr-exhausted` after 4096 fresh keys), the worker refusing the key,
 * a hook throwing — the effect chain never goes on to distribute a send key (the old one least of all: a member that
 * just left would keep reading), the worker is left without a send key (frames are dropped, never sealed under the
 * old key), the session is asked to rejoin, and the alert says what happened.
 *
 * Real KeyAgents, real SendKeySlots (the worker's send-key path) and real key rings over the scriptable relay
 * (relay-sim.ts), and a real KeyBridge over a recording FramePort.
 */
import { describe, expect, it } from 'vitest';
import { decodeKeyBatch } from '../../client/src/e2ee/envelope.ts';
import { decodeRelay } from '../../client/src/e2ee/relay-framing.ts';
import { KeyBridge, type BridgeEvent } from '../../client/src/session/key-bridge.ts';
import { keyAlert } from '../../client/src/session/trust-monitor.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import { ManualClock, RecordingFrames } from '../session/session-sim.ts';
import { INVITE_KEYS, ROOM, Sim, vp8Frame, type Packet, type SimMember } from './relay-sim.ts';

/** Key batches `from` handed the relay in `tap`, and who they were sealed to. */
function batchesFrom(tap: readonly Packet[], from: string): string[] {
  return tap.filter((p) => p.from === from && p.kind === 'key-batch').flatMap((p) => decodeKeyBatch(decodeRelay(p.bytes).body).entries.map((e) => e.recipientMemberId));
}

/** Fresh keys for a member alone in the room until its schedule has used `generations` generations. */
async function rekeyAlone(sim: Sim, m: SimMember, generations: number): Promise<void> {
  for (let i = 0; i < generations; i++) {
    sim.advance(1);
    await m.agent.tick(sim.now);
  }
  await sim.pump();
}

describe('property: a send-key switch that fails distributes no key and stops sealing', () => {
  it('the 4097th generation (ctr-exhausted) on a leave: no batch with the old key, no send key, an alert that says so', async () => {
    const sim = new Sim({ rotationMs: 1 });
    const alice = await sim.join('alice');
    await rekeyAlone(sim, alice, 4095); // generations 0..4095 used: the next fresh key would repeat generation 0's KID
    expect(alice.sendKeys.at(-1)).toBeDefined();
    expect(alice.sendFailures).toEqual([]);
    const bob = await sim.join('bob');
    await sim.join('carol');
    // bob reads alice (he holds her current key, and keeps it when he leaves)
    const f = vp8Frame();
    expect(await sim.reads('bob', await sim.sendFrame('alice', f), f)).toBe(true);
    const keysBefore = alice.sendKeys.length;
    const tapBefore = sim.tap.length;

    // Bob leaves: alice must switch to a fresh key for carol only, and cannot.
    await sim.leave('bob');
    expect(alice.sendFailures).toEqual([{ mode: 'fresh', epoch: alice.agent.state.sendEpoch, reason: 'ctr-exhausted' }]);
    expect(alice.alerts.filter((a) => a.reason === 'send-key-failed').map((a) => a.detail)).toEqual([`fresh key for epoch ${alice.agent.state.sendEpoch}: ctr-exhausted`]);
    // Nothing went out under the old key (the old chain sealed it to carol again), and nothing under any other.
    expect(batchesFrom(sim.tap.slice(tapBefore), 'alice')).toEqual([]);
    expect(alice.sendKeys.length).toBe(keysBefore);
    // The worker holds no send key: alice's frames are dropped, so bob (who still holds her old key) reads nothing.
    expect(alice.send.key).toBeNull();
    await expect(sim.sendFrame('alice', vp8Frame())).rejects.toThrow(/no send key/);
    void bob;

    // From now on the agent distributes nothing: not on the rotation timer, not to a joiner, not on a channel reset.
    sim.advance(10);
    await sim.tickAll();
    await sim.join('dave');
    expect(batchesFrom(sim.tap.slice(tapBefore), 'alice')).toEqual([]);
    expect(alice.sendKeys.length).toBe(keysBefore);
    expect(alice.sendFailures.length).toBe(1);
    // Receiving still works until the rejoin: carol's and dave's keys reach alice.
    const fc = vp8Frame();
    expect(await sim.reads('alice', await sim.sendFrame('carol', fc), fc)).toBe(true);
    const fd = vp8Frame();
    expect(await sim.reads('alice', await sim.sendFrame('dave', fd), fd)).toBe(true);
  }, 60_000);

  it('the worker refusing the key (a CTR restart under a used (generation, step)) stops the chain the same way', async () => {
    const sim = new Sim();
    const alice = await sim.join('alice');
    // The worker's slot has seen a newer (generation, step) for alice's index than the agent's next key: it refuses
    // that key (client/src/transform/send-key-slot.ts) and is left with no key.
    const last = alice.sendKeys.at(-1)!;
    alice.send.install({ senderIndex: last.senderIndex, generation: 0, step: 15, kid: last.kid | 15n, baseKey: last.baseKey });
    const tapBefore = sim.tap.length;
    await sim.join('bob'); // alice ratchets to step 1 for bob: not newer than step 15 for the worker
    expect(alice.sendFailures).toEqual([{ mode: 'ratchet', epoch: 2, reason: 'state' }]);
    expect(batchesFrom(sim.tap.slice(tapBefore), 'alice')).toEqual([]); // bob gets no key from alice at all
    expect(alice.send.key).toBeNull();
    expect(sim.member('bob').installed.filter((k) => k.from === 'alice')).toEqual([]);
    // bob's own key still reaches alice
    const f = vp8Frame();
    expect(await sim.reads('alice', await sim.sendFrame('bob', f), f)).toBe(true);
  });

  it('a send-key hook that throws: reason "hook", nothing distributed afterwards', async () => {
    const sim = new Sim({ rotationMs: 60_000 });
    const alice = await sim.join('alice');
    await sim.join('bob');
    alice.send.install = () => {
      throw new Error('worker gone');
    };
    const tapBefore = sim.tap.length;
    sim.advance(60_000);
    await sim.tickAll(); // alice's fresh rotation key fails; bob's goes through
    expect(alice.sendFailures).toEqual([{ mode: 'fresh', epoch: alice.agent.state.sendEpoch, reason: 'hook' }]);
    expect(batchesFrom(sim.tap.slice(tapBefore), 'alice')).toEqual([]);
    expect(batchesFrom(sim.tap.slice(tapBefore), 'bob')).toEqual(['alice']);
    expect(alice.agent.sendFailed).toBe(true);
  });
});

describe('key bridge: a failed switch clears the worker send key and asks the session to rejoin', () => {
  it('clear-send-key right after the failure, no chat key, not sending, a send-key-failed event and an alert that says what happened', async () => {
    const frames = new RecordingFrames();
    const events: BridgeEvent[] = [];
    frames.setSendKey = () => {
      throw new Error('worker gone');
    };
    const bridge = await KeyBridge.create(
      { roomId: ROOM, memberId: 'alice', inviteKeys: INVITE_KEYS, identity: await createIdentity() },
      { frames, sendMembership: () => undefined, clock: new ManualClock(), emit: (e) => events.push(e) },
    );
    await bridge.start([]);
    expect(frames.calls.map((c) => c.kind)).toContain('clear-send-key');
    expect(frames.sendKeys).toEqual([]);
    expect(bridge.sending).toBe(false);
    await expect(bridge.sealChat('hello')).rejects.toThrow(/not in the call/);
    expect(events).toContainEqual({ kind: 'send-key-failed', failure: { mode: 'initial', epoch: 1, reason: 'hook' } });
    const alert = events.find((e): e is Extract<BridgeEvent, { kind: 'alert' }> => e.kind === 'alert' && e.reason === 'send-key-failed');
    expect(alert).toBeDefined();
    const shown = keyAlert(alert!.reason, 'You', alert!.detail)!;
    expect(shown.message).toMatch(/could not be switched \(initial key for epoch 1: hook\)/);
    expect(shown.message).toMatch(/Nothing more is sent under the old key/);
    expect(shown.message).not.toMatch(/repairs/);
    bridge.destroy();
  });
});
