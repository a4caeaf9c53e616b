/**
 * Property: media is attributed to the sender whose key opened it (issue 13 §1). A receive pipeline is bound to
 * the member the server's consume answer names; frames under any other sender's KID are dropped as `wrong-sender`
 * (transform/attribution.ts, run by the worker before the key rings), and the call flags the pipeline
 * (session/trust-monitor.ts `attribution`). Real SFrame frames sealed with the production SendKey.
 */
import { describe, expect, it } from 'vitest';
import { protectFrame } from '../../client/src/e2ee/frame-codec.ts';
import { makeKid } from '../../client/src/e2ee/kid.ts';
import { SendKey } from '../../client/src/e2ee/send-key.ts';
import { attribution } from '../../client/src/session/trust-monitor.ts';
import { admitFrame, frameSender } from '../../client/src/transform/attribution.ts';
import { vp8Frame } from './relay-sim.ts';

const sealedBy = async (sender: number, codec: 'vp8' | 'opus' = 'vp8'): Promise<Uint8Array> => {
  const key = new SendKey({ kid: makeKid(sender, 3, 1) }, new Uint8Array(16).fill(sender & 0xff));
  return protectFrame(key, codec, codec === 'vp8' ? vp8Frame(true) : new Uint8Array([0x78, 1, 2, 3, 4, 5]));
};

describe('admitFrame: a pipeline opens only the frames of the member it carries', () => {
  it('the KID’s sender index is read from the SFrame header behind the clear prefix', async () => {
    expect(frameSender('vp8', await sealedBy(513))).toBe(513);
    expect(frameSender('opus', await sealedBy(7, 'opus'))).toBe(7);
  });

  it('a frame of the bound sender opens; another member’s is wrong-sender; an unbound pipeline opens nothing', async () => {
    const alice = await sealedBy(100);
    const mallory = await sealedBy(200);
    expect(admitFrame(100, 'vp8', alice)).toBe('open');
    expect(admitFrame(100, 'vp8', mallory)).toBe('wrong-sender');
    expect(admitFrame(200, 'vp8', alice)).toBe('wrong-sender');
    expect(admitFrame(null, 'vp8', alice)).toBe('unbound');
  });

  it('sender indices other than the bound one are refused (a sweep over the 16-bit space)', async () => {
    // The header is what names the sender: rewrite the KID sender of one real frame to every other index.
    const frame = await sealedBy(0x1234);
    let refused = 0;
    for (let s = 0; s < 1 << 16; s += 97) if (s !== 0x1234) refused += admitFrame(0x1234, 'vp8', await sealedBy(s)) === 'wrong-sender' ? 1 : 0;
    expect(refused).toBe(Math.ceil((1 << 16) / 97) - (0x1234 % 97 === 0 ? 1 : 0));
    expect(admitFrame(0x1234, 'vp8', frame)).toBe('open');
  });

  it('a broken header goes on to the rings (counted there as malformed), never opens as another sender', () => {
    expect(admitFrame(5, 'vp8', new Uint8Array([0x10, 0, 0, 0x9d, 0x01, 0x2a, 0, 0, 0, 0]))).toBe('open');
    expect(frameSender('vp8', new Uint8Array(0))).toBeNull();
  });
});

describe('attribution(): the call flags a pipeline that gets only another member’s frames', () => {
  const recv = (key: string, opened: number, wrong: number) => ({ key, direction: 'recv' as const, opened, dropped: { 'wrong-sender': wrong } });

  it('wrong-sender drops rising with nothing opening flag it once; frames opening again clear it', () => {
    let st = attribution(new Map(), [recv('c1', 0, 0)]);
    expect(st.flagged).toEqual([]);
    st = attribution(st.next, [recv('c1', 0, 30)]);
    expect(st.flagged).toEqual(['c1']);
    expect(st.next.get('c1')!.misattributed).toBe(true);
    st = attribution(st.next, [recv('c1', 0, 60)]);
    expect(st.flagged).toEqual([]);
    expect(st.next.get('c1')!.misattributed).toBe(true);
    st = attribution(st.next, [recv('c1', 10, 60)]);
    expect(st.next.get('c1')!.misattributed).toBe(false);
  });

  it('an honest pipeline that opens frames is never flagged; send pipelines are ignored', () => {
    let st = attribution(new Map(), [recv('c1', 10, 0), { key: 's', direction: 'send', opened: 0, dropped: { 'wrong-sender': 9 } }]);
    for (let i = 2; i < 10; i++) {
      st = attribution(st.next, [recv('c1', 10 * i, 0)]);
      expect(st.flagged).toEqual([]);
    }
    expect(st.next.has('s')).toBe(false);
  });
});
