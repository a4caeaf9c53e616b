/**
 * ICE recovery (client/src/session/ice-recovery.ts) over a manual clock: fresh TURN credentials set before every
 * restart, restarts repeated every ICE_RETRY_MS while down, one rejoin ICE_RECHECK_MS after the outage's first
 * restart (later state events do not extend it), none once connected, and a rejoin at once when the server says the
 * transport or the member is gone. The browser end is in e2e/ice-restart.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { RequestError, type Responses } from '../../client/src/lib/signaling.ts';
import { ICE_RECHECK_MS, ICE_RETRY_MS, IceRecovery, type IceTransport } from '../../client/src/session/ice-recovery.ts';
import { Timers } from '../../client/src/session/ports.ts';
import { ManualClock } from './session-sim.ts';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(answer: (n: number) => Promise<Responses['restartIce']> = (n) => Promise.resolve({ iceParameters: { usernameFragment: `u${n}` }, iceServers: [{ urls: 'turn:t.example:3478', username: `user${n}`, credential: 'c' }] })) {
  const clock = new ManualClock();
  const calls: string[] = [];
  const rejoins: string[] = [];
  const downs: (readonly string[])[] = [];
  let state: IceTransport['connectionState'] = 'connected';
  let closed = false;
  let requests = 0;
  const transport = {
    id: 't1',
    get closed() {
      return false;
    },
    get connectionState() {
      return state;
    },
    async updateIceServers({ iceServers }: { iceServers: RTCIceServer[] }) {
      calls.push(`servers ${iceServers[0]?.username}`);
    },
    async restartIce({ iceParameters }: { iceParameters: { usernameFragment: string } }) {
      calls.push(`restart ${iceParameters.usernameFragment}`);
    },
  } as unknown as IceTransport;
  const ice = new IceRecovery({
    restartIce: (id) => {
      calls.push(`request ${id}`);
      return answer(++requests);
    },
    timers: new Timers(clock),
    closed: () => closed,
    rejoin: (why) => rejoins.push(why),
    downChanged: (d) => downs.push(d),
  });
  const set = (s: IceTransport['connectionState']): void => {
    state = s;
    ice.stateChanged(transport, s);
  };
  return { clock, calls, rejoins, downs, set, close: () => (closed = true), ice, transport };
}

describe('IceRecovery', () => {
  it('a drop: fresh TURN credentials are set before each restart, which repeats every ICE_RETRY_MS while down', async () => {
    const s = setup();
    s.set('disconnected');
    await flush();
    expect(s.downs).toEqual([['t1']]);
    expect(s.calls).toEqual(['request t1', 'servers user1', 'restart u1']);
    s.clock.advance(ICE_RETRY_MS);
    await flush();
    expect(s.calls.slice(3)).toEqual(['request t1', 'servers user2', 'restart u2']);
    expect(s.rejoins).toEqual([]);
  });

  it('still down ICE_RECHECK_MS after the first restart: one rejoin, not postponed by later state events', async () => {
    const s = setup();
    s.set('disconnected');
    await flush();
    for (let t = 0; t < ICE_RECHECK_MS - 1000; t += 1000) {
      s.clock.advance(1000);
      await flush();
      if (t === 3000) s.set('failed'); // a later event: must not move the deadline
      await flush();
    }
    expect(s.rejoins).toEqual([]);
    s.clock.advance(1000);
    await flush();
    expect(s.rejoins).toEqual(['ICE did not recover']);
  });

  it('connected again in time: no rejoin, no more restarts, nothing down', async () => {
    const s = setup();
    s.set('failed');
    await flush();
    s.clock.advance(ICE_RETRY_MS / 2);
    s.set('connected');
    const requests = s.calls.filter((c) => c.startsWith('request')).length;
    s.clock.advance(ICE_RECHECK_MS * 2);
    await flush();
    expect(s.rejoins).toEqual([]);
    expect(s.calls.filter((c) => c.startsWith('request')).length).toBe(requests);
    expect(s.downs.at(-1)).toEqual([]);
  });

  it('the server says the transport or the member is gone: rejoin at once; another error: keep trying', async () => {
    for (const code of ['NOT_FOUND', 'NOT_JOINED', 'UNAVAILABLE'] as const) {
      const s = setup(() => Promise.reject(new RequestError('restartIce', code, 'gone')));
      s.set('disconnected');
      await flush();
      expect(s.rejoins).toEqual([`restartIce: ${code}`]);
    }
    const s = setup((n) => (n === 1 ? Promise.reject(new RequestError('restartIce', 'RATE_LIMITED', 'slow down')) : Promise.resolve({ iceParameters: { usernameFragment: 'u' }, iceServers: [] })));
    s.set('disconnected');
    await flush();
    expect(s.rejoins).toEqual([]);
    s.clock.advance(ICE_RETRY_MS);
    await flush();
    expect(s.calls.filter((c) => c.startsWith('restart ')).length).toBe(1);
  });

  it('a closed join does nothing', async () => {
    const s = setup();
    s.close();
    s.set('failed');
    await flush();
    s.clock.advance(ICE_RECHECK_MS * 2);
    await flush();
    expect([s.calls, s.rejoins, s.downs]).toEqual([[], [], []]);
  });
});
