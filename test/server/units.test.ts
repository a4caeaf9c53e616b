/** Small units of the server: token bucket, JSON logger, typed emitter. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { errorMessage, Logger, pseudonym } from '../../sfu/src/Logger.ts';
import { TypedEmitter } from '../../sfu/src/TypedEmitter.ts';
import { TokenBucket } from '../../signaling/src/RateLimiter.ts';

describe('TokenBucket', () => {
  it('allows a burst, then refills at the given rate', () => {
    let now = 0;
    const b = new TokenBucket(50, 100, () => now);
    let allowed = 0;
    for (let i = 0; i < 150; i++) if (b.take()) allowed++;
    expect(allowed).toBe(100);
    expect(b.take()).toBe(false);
    now += 100; // 5 tokens
    allowed = 0;
    for (let i = 0; i < 10; i++) if (b.take()) allowed++;
    expect(allowed).toBe(5);
    now += 60_000; // capped at the burst
    allowed = 0;
    for (let i = 0; i < 150; i++) if (b.take()) allowed++;
    expect(allowed).toBe(100);
  });
});

describe('Logger', () => {
  it('writes JSON lines at or above its level', () => {
    const lines: string[] = [];
    const log = new Logger('warn', (l) => lines.push(l));
    log.debug('d');
    log.info('i');
    log.warn('w', { roomId: 'r1', peerId: 'p1', code: 'NOT_FOUND' });
    log.error('e');
    expect(lines).toHaveLength(2);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toMatchObject({ level: 'warn', msg: 'w', room: pseudonym('roomId', 'r1'), peer: pseudonym('peerId', 'p1'), code: 'NOT_FOUND' });
    expect(typeof first.t).toBe('string');
  });

  it('writes room and peer ids only as per-process keyed pseudonyms (r-/p- + 8 hex)', () => {
    const lines: string[] = [];
    const log = new Logger('debug', (l) => lines.push(l));
    const roomId = 'Room_Id_In_The_Link_0001';
    log.info('a', { roomId, peerId: 'peer-A' });
    log.child('other').info('b', { roomId, peerId: 'peer-B' });
    log.info('c', { roomId: null, peerId: null });
    const [a, b, c] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a!.room).toMatch(/^r-[0-9a-f]{8}$/);
    expect(a!.peer).toMatch(/^p-[0-9a-f]{8}$/);
    // Same room, same pseudonym in every logger of the process; different peers, different pseudonyms.
    expect(b!.room).toBe(a!.room);
    expect(b!.peer).not.toBe(a!.peer);
    expect(c).toMatchObject({ room: null, peer: null });
    for (const line of lines) {
      expect(line).not.toContain(roomId);
      expect(line).not.toContain('peer-A');
      expect(line).not.toContain('"roomId"');
      expect(line).not.toContain('"peerId"');
    }
    // Keyed: not a plain hash of the id that anyone holding the link could compute.
    const plain = createHash('sha256').update(roomId).digest('hex');
    expect(plain).not.toContain((a!.room as string).slice(2));
    expect(createHash('sha256').update(`roomId\0${roomId}`).digest('hex').slice(0, 8)).not.toBe((a!.room as string).slice(2));
  });

  it('silent logs nothing; long values are truncated; the sink may throw', () => {
    const lines: string[] = [];
    new Logger('silent', (l) => lines.push(l)).error('x');
    expect(lines).toEqual([]);
    new Logger('debug', (l) => lines.push(l)).info('x', { error: 'y'.repeat(1000) });
    expect((JSON.parse(lines[0]!) as { error: string }).error.length).toBeLessThan(210);
    expect(() =>
      new Logger('debug', () => {
        throw new Error('sink down');
      }).info('x'),
    ).not.toThrow();
  });

  it('errorMessage keeps only the first line, never a stack', () => {
    const e = new Error('boom\n    at somewhere (file.ts:1:1)');
    expect(errorMessage(e)).toBe('boom');
    expect(errorMessage(42)).toBe('unknown error');
  });
});

describe('TypedEmitter', () => {
  class E extends TypedEmitter<{ a: [n: number]; b: [] }> {
    fire(n: number): boolean {
      return this.emit('a', n);
    }
    protected override onListenerError(): void {
      // swallowed in this test
    }
  }
  it('delivers, isolates throwing listeners, supports once/off', () => {
    const e = new E();
    const got: number[] = [];
    e.on('a', () => {
      throw new Error('bad listener');
    });
    e.on('a', (n) => got.push(n));
    const once = (n: number): void => void got.push(n * 10);
    e.once('a', once);
    expect(e.fire(1)).toBe(true);
    e.fire(2);
    expect(got).toEqual([1, 10, 2]);
    e.removeAllListeners('a');
    expect(e.fire(3)).toBe(false);
    expect(e.listenerCount('a')).toBe(0);
  });
});
