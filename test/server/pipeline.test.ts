/**
 * The generic request pipeline (signaling/src/pipeline.ts) on its own: a real socket.io server and
 * client, a trivial handler table, no mediasoup. Rate limit, one payload, size, schema, the per-socket
 * serial queue, the exactly-once ack, unknown events and how handler errors reach the wire.
 */
import { describe, expect, test } from 'vitest';
import { z } from 'zod';
import { Logger } from '../../sfu/src/Logger.ts';
import { SfuError } from '../../sfu/src/SfuError.ts';
import { servePipeline, type PipelineOptions, type SocketPipeline } from '../../signaling/src/pipeline.ts';
import type { AckResult } from '../../signaling/src/protocol.ts';
import { code, connect, rawRequest, sleep, startSocketServer, waitFor, type TestSocket } from './helpers.ts';

const schemas = {
  echo: z.strictObject({ text: z.string().max(4000) }),
  slow: z.strictObject({ ms: z.number().int().min(0).max(2000), tag: z.string() }),
  failTyped: z.strictObject({}),
  failUnknown: z.strictObject({}),
};

interface PipelineServer {
  client: TestSocket;
  /** Handler calls, in the order they happened. */
  calls: string[];
  /** Log lines of the pipeline. */
  logs: string[];
  /** The server-side pipeline of `client`. */
  pipeline: SocketPipeline;
  /** Every ACK packet the client received (socket.io-parser packet type 3), by ack id. */
  ackIds: number[];
}

async function startPipelineServer(opts: Partial<PipelineOptions>, onCleanup: (fn: () => Promise<void>) => void): Promise<PipelineServer> {
  const calls: string[] = [];
  const logs: string[] = [];
  const pipelines: SocketPipeline[] = [];
  const server = await startSocketServer();
  server.io.on('connection', (socket) => {
    pipelines.push(
      servePipeline(
        socket,
        schemas,
        {
          echo: async ({ text }) => {
            calls.push(`echo ${text}`);
            return { text };
          },
          slow: async ({ ms, tag }) => {
            calls.push(`start ${tag}`);
            await sleep(ms);
            calls.push(`end ${tag}`);
            return { tag };
          },
          failTyped: async () => {
            calls.push('failTyped');
            throw new SfuError('NOT_FOUND', 'no such thing');
          },
          failUnknown: async () => {
            calls.push('failUnknown');
            throw new Error('boom\n    at somewhere (file.ts:1:1)');
          },
        },
        { maxPayloadBytes: 1024, rateLimit: { perSec: 10_000, burst: 10_000 }, logger: new Logger('debug', (l) => logs.push(l)), ...opts },
      ),
    );
  });
  const client = await connect(server.url);
  onCleanup(async () => {
    client.disconnect();
    await server.close();
  });
  const ackIds: number[] = [];
  client.io.on('packet', (p: { type: number; id?: number }) => {
    if (p.type === 3 && p.id !== undefined) ackIds.push(p.id);
  });
  await waitFor(() => pipelines.length === 1, 5000, 'server-side connection');
  return { client, calls, logs, pipeline: pipelines[0]!, ackIds };
}

/** `serve(opts)`: a pipeline server with one connected client, closed after the test. */
const it = test.extend('serve', async ({}, { onCleanup }) => (opts: Partial<PipelineOptions> = {}) => startPipelineServer(opts, onCleanup));

describe('request pipeline', () => {
  it('a valid request reaches its handler with the parsed payload and is answered { ok, data }', async ({ serve }) => {
    const s = await serve();
    expect(await rawRequest(s.client, 'echo', [{ text: 'hi' }])).toEqual({ ok: true, data: { text: 'hi' } });
    expect(s.calls).toEqual(['echo hi']);
  });

  it('a bad payload is BAD_REQUEST with the zod message and never reaches the handler', async ({ serve }) => {
    const s = await serve();
    const wrongType = await rawRequest(s.client, 'echo', [{ text: 5 }]);
    expect(wrongType.ok).toBe(false);
    expect(wrongType.ok ? null : wrongType.error).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^text: /) as unknown });
    const extraKey = await rawRequest(s.client, 'echo', [{ text: 'x', sneaky: 1 }]);
    expect(extraKey.ok ? '' : extraKey.error.message).toMatch(/sneaky/);
    expect(code(extraKey)).toBe('BAD_REQUEST');
    for (const args of [[], [{ text: 'a' }, { text: 'b' }], [null], ['text'], [[{ text: 'a' }]]]) {
      expect(code(await rawRequest(s.client, 'echo', args)), JSON.stringify(args)).toBe('BAD_REQUEST');
    }
    expect(s.calls).toEqual([]);
  });

  it('a payload over maxPayloadBytes is TOO_LARGE (even when its schema would accept it)', async ({ serve }) => {
    const s = await serve({ maxPayloadBytes: 256 });
    const res = await rawRequest(s.client, 'echo', [{ text: 'x'.repeat(300) }]);
    expect(res).toEqual({ ok: false, error: { code: 'TOO_LARGE', message: 'payload over 256 bytes' } });
    expect(await rawRequest(s.client, 'echo', [{ text: 'x'.repeat(200) }])).toMatchObject({ ok: true });
    expect(s.calls).toEqual([`echo ${'x'.repeat(200)}`]);
  });

  it('over the token bucket: RATE_LIMITED, unknown events included, before any other check', async ({ serve }) => {
    const s = await serve({ rateLimit: { perSec: 0.001, burst: 5 } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => rawRequest(s.client, 'echo', [{ text: String(i) }])));
    expect(results.map(code)).toEqual([null, null, null, null, null, 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(code(await rawRequest(s.client, 'noSuchEvent', [{}]))).toBe('RATE_LIMITED');
    expect(code(await rawRequest(s.client, 'echo', [{ text: 5 }]))).toBe('RATE_LIMITED');
    expect(s.calls).toEqual(['echo 0', 'echo 1', 'echo 2', 'echo 3', 'echo 4']);
  });

  it('handlers of one socket run one at a time, in arrival order; acks come back in that order', async ({ serve }) => {
    const s = await serve();
    const acked: string[] = [];
    const track = (p: Promise<AckResult<unknown>>, tag: string) => p.then((r) => (acked.push(tag), r));
    const results = await Promise.all([
      track(rawRequest(s.client, 'slow', [{ ms: 150, tag: 'a' }]), 'a'),
      track(rawRequest(s.client, 'failUnknown', [{}]), 'fail'),
      track(rawRequest(s.client, 'slow', [{ ms: 0, tag: 'b' }]), 'b'),
      track(rawRequest(s.client, 'echo', [{ text: 'c' }]), 'c'),
    ]);
    expect(s.calls).toEqual(['start a', 'end a', 'failUnknown', 'start b', 'end b', 'echo c']);
    expect(acked).toEqual(['a', 'fail', 'b', 'c']);
    expect(results.map(code)).toEqual([null, 'SFU_ERROR', null, null]);
  });

  it('a refused request is answered at once, without waiting for the queue', async ({ serve }) => {
    const s = await serve();
    const acked: string[] = [];
    const slow = rawRequest(s.client, 'slow', [{ ms: 300, tag: 'a' }]).then(() => acked.push('slow'));
    await waitFor(() => s.calls.includes('start a'), 5000, 'slow handler started');
    const bad = rawRequest(s.client, 'slow', [{ ms: 'x', tag: 'b' }]).then((r) => acked.push(`bad ${code(r)}`));
    await Promise.all([slow, bad]);
    expect(acked).toEqual(['bad BAD_REQUEST', 'slow']);
  });

  it('enqueue() runs a server task after every handler queued before it', async ({ serve }) => {
    const s = await serve();
    const slow = rawRequest(s.client, 'slow', [{ ms: 100, tag: 'a' }]);
    await waitFor(() => s.calls.includes('start a'), 5000, 'slow handler started');
    await s.pipeline.enqueue(async () => void s.calls.push('task'));
    expect(s.calls).toEqual(['start a', 'end a', 'task']);
    expect(await slow).toEqual({ ok: true, data: { tag: 'a' } });
  });

  it('every request with an ack is answered exactly once; one without an ack is still handled', async ({ serve }) => {
    const s = await serve({ maxPayloadBytes: 256 });
    const requests: [string, unknown[]][] = [
      ['echo', [{ text: 'ok' }]],
      ['echo', [{ text: 1 }]],
      ['echo', [{ text: 'x'.repeat(300) }]],
      ['echo', []],
      ['failTyped', [{}]],
      ['failUnknown', [{}]],
      ['noSuchEvent', [{}]],
      ['slow', [{ ms: 20, tag: 'z' }]],
    ];
    const results = await Promise.all(requests.map(([event, args]) => rawRequest(s.client, event, args)));
    expect(results.map(code)).toEqual([null, 'BAD_REQUEST', 'TOO_LARGE', 'BAD_REQUEST', 'NOT_FOUND', 'SFU_ERROR', 'BAD_REQUEST', null]);
    (s.client.emit as (ev: string, ...a: unknown[]) => void)('echo', { text: 'no ack' });
    (s.client.emit as (ev: string, ...a: unknown[]) => void)('noSuchEvent', { x: 1 });
    await waitFor(() => s.calls.includes('echo no ack'), 5000, 'ack-less echo handled');
    expect(await rawRequest(s.client, 'echo', [{ text: 'after' }])).toEqual({ ok: true, data: { text: 'after' } });
    await sleep(50);
    expect(s.ackIds).toHaveLength(requests.length + 1);
    expect(new Set(s.ackIds).size).toBe(s.ackIds.length);
  });

  it('a typed SfuError keeps its code and message; anything else is SFU_ERROR with the first line only', async ({ serve }) => {
    const s = await serve();
    expect(await rawRequest(s.client, 'failTyped', [{}])).toEqual({ ok: false, error: { code: 'NOT_FOUND', message: 'no such thing' } });
    expect(await rawRequest(s.client, 'failUnknown', [{}])).toEqual({ ok: false, error: { code: 'SFU_ERROR', message: 'boom' } });
    // The failures are logged with event and code; SFU_ERROR as a warning.
    const failed = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request failed');
    expect(failed.map((l) => [l.level, l.event, l.code])).toEqual([
      ['debug', 'failTyped', 'NOT_FOUND'],
      ['warn', 'failUnknown', 'SFU_ERROR'],
    ]);
  });

  it('mapError has the last word on handler failures (not on the pipeline’s own refusals)', async ({ serve }) => {
    const s = await serve({ mapError: (e) => (e.code === 'SFU_ERROR' ? { ...e, code: 'UNAVAILABLE' } : e) });
    expect(code(await rawRequest(s.client, 'failUnknown', [{}]))).toBe('UNAVAILABLE');
    expect(code(await rawRequest(s.client, 'failTyped', [{}]))).toBe('NOT_FOUND');
    expect(code(await rawRequest(s.client, 'echo', [{ text: 1 }]))).toBe('BAD_REQUEST');
  });

  it('unknown events are BAD_REQUEST and dispatched nowhere; payloads never reach the log', async ({ serve }) => {
    const s = await serve();
    expect(await rawRequest(s.client, 'toString', [{}])).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: 'unknown event' } });
    expect(code(await rawRequest(s.client, '__proto__', [{}]))).toBe('BAD_REQUEST');
    expect(code(await rawRequest(s.client, 'echo', [{ text: 'SECRET-PAYLOAD', extra: 'SECRET-EXTRA' }]))).toBe('BAD_REQUEST');
    expect(code(await rawRequest(s.client, 'echo', [{ text: 'SECRET-OK' }]))).toBe(null);
    expect(s.calls).toEqual(['echo SECRET-OK']);
    expect(s.logs.join('\n')).not.toContain('SECRET');
  });
});
