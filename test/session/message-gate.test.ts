/** MessageGate (client/src/session/message-gate.ts): bounded holding and per-sender sequence numbers. */
import { describe, expect, it } from 'vitest';
import { CHAT_SEQ_WINDOW, MAX_HELD_PER_SENDER, MAX_HELD_SENDERS, MessageGate } from '../../client/src/session/message-gate.ts';

describe('MessageGate', () => {
  it('holds messages per sender in arrival order, within bounds, and releases them once', () => {
    const g = new MessageGate<number>();
    for (let i = 0; i < MAX_HELD_PER_SENDER + 2; i++) g.hold('a', i);
    expect(g.dropped).toBe(2);
    for (let i = 0; i < MAX_HELD_SENDERS + 1; i++) g.hold(`s${i}`, i);
    expect(g.waiting.length).toBe(MAX_HELD_SENDERS);
    expect(g.release('a')).toEqual([...Array(MAX_HELD_PER_SENDER).keys()]);
    expect(g.release('a')).toEqual([]);
  });

  it('a profile applies only if newer; a chat seq only once; a forgotten sender starts over', () => {
    const g = new MessageGate<never>();
    expect(g.newerProfile('a', 2)).toBe(true);
    expect(g.newerProfile('a', 2)).toBe(false);
    expect(g.newerProfile('a', 1)).toBe(false);
    expect(g.newerProfile('a', 5)).toBe(true);
    expect(g.firstChat('a', 3)).toBe(true);
    expect(g.firstChat('a', 1)).toBe(true);
    expect(g.firstChat('a', 3)).toBe(false);
    expect(g.firstChat('b', 3)).toBe(true);
    g.forget('a');
    expect(g.newerProfile('a', 1)).toBe(true);
    expect(g.firstChat('a', 3)).toBe(true);
  });

  it('past the window, old chat sequence numbers are refused rather than shown again', () => {
    const g = new MessageGate<never>();
    for (let i = 1; i <= CHAT_SEQ_WINDOW + 10; i++) expect(g.firstChat('a', i)).toBe(true);
    expect(g.firstChat('a', 5)).toBe(false);
    expect(g.firstChat('a', CHAT_SEQ_WINDOW + 11)).toBe(true);
  });
});
