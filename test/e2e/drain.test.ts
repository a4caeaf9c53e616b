/**
 * A graceful restart of the real CLI (`bash infra/node.sh --import tsx signaling/src/main.ts`, configured from the
 * environment as an operator would), with two Chromium participants in an encrypted call:
 *
 * SIGTERM mid-call → both clients show "Server restarting", media keeps flowing, /readyz is 503, a new join is refused
 * with DRAINING (a third person opening the link meanwhile is told, and her client keeps asking with backoff), and
 * the process exits 0 at DRAIN_TIMEOUT (the room does not empty: both stay) and not before. Then the server is started
 * again on the same port: both clients reconnect and rejoin by themselves (no reload), as new members with fresh keys,
 * media flows again, and the third person gets in. Neither process's log names the room or a member, and the two
 * processes' pseudonyms for the same room differ.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuild } from '../client-build.ts';
import { connect, freeConsecutivePorts, newRoomId, newToken, request } from '../server/helpers.ts';
import { createAndJoin, exportKeys, hooked, joinHooked } from './e2ee-helpers.ts';
import { ensureChromium, expectMediaFlowing, launchChromium, REPO_ROOT, roomIdOf, snapshot, waitUntil, type Participant } from './harness.ts';

const DRAIN_TIMEOUT_S = 12;
const RESTARTING = 'Server restarting — you will be reconnected automatically';

interface Cli {
  proc: ChildProcess;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function startCli(port: number, clientDir: string): Promise<Cli> {
  const proc = spawn('bash', ['infra/node.sh', '--import', 'tsx', 'signaling/src/main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: 'localhost',
      CLIENT_DIR: clientDir,
      RTC_PORT: '0',
      WORKERS: '1',
      DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_S),
      LOG_LEVEL: 'info',
      // Loopback media only, as the in-process harness has it (Chromium pairs loopback candidates).
      LOCAL_LAN_MEDIA: 'off',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [proc.stdout!, proc.stderr!]) {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      output.push(...parts);
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const cli = { proc, output, exited };
  return (async () => {
    let gone = false;
    void exited.then(() => (gone = true));
    await waitUntil(
      async () => {
        if (gone) throw new Error(`the CLI exited at start:\n${output.join('\n')}`);
        return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
      },
      60_000,
      'the CLI is ready',
    ).catch((err: unknown) => {
      proc.kill('SIGKILL');
      throw err;
    });
    return cli;
  })();
}

/** The JSON log lines of a CLI run. */
const logLines = (cli: Cli): Record<string, unknown>[] =>
  cli.output.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

async function bannerText(p: Participant): Promise<string | null> {
  const banner = p.page.getByTestId('call-banner');
  return (await banner.count()) === 0 ? null : banner.textContent();
}

describe('graceful restart of the real CLI (SIGTERM mid-call)', () => {
  let clientDir: string;
  let port: number;
  let first: Cli | undefined;
  let second: Cli | undefined;
  const people: Participant[] = [];

  beforeAll(async () => {
    ensureChromium();
    clientDir = process.env['E2E_CLIENT_DIR'] || ensureClientBuild('test');
    port = await freeConsecutivePorts(1);
  });
  afterAll(async () => {
    await Promise.all(people.map((p) => p.close()));
    for (const cli of [first, second]) if (cli && cli.proc.exitCode === null && cli.proc.signalCode === null) cli.proc.kill('SIGKILL');
  });

  it('drains with the call running, exits 0 at the deadline, and both clients rejoin the new process with fresh keys', async () => {
    const dump = (): string =>
      [
        ...people.map((p) => `--- ${p.name} console ---\n${p.logs.slice(-40).join('\n')}`),
        `--- first CLI ---\n${first?.output.slice(-40).join('\n')}`,
        `--- second CLI ---\n${second?.output.slice(-40).join('\n')}`,
      ].join('\n');
    try {
      first = await startCli(port, clientDir);
      const url = `http://localhost:${port}`;
      const [alice, bob, carol] = await Promise.all([launchChromium('Alice'), launchChromium('Bob'), launchChromium('Carol')]);
      people.push(alice!, bob!, carol!);
      const link = await createAndJoin(alice!, url, 'script');
      const roomId = roomIdOf(link);
      await joinHooked(bob!, link, 'script');
      const [a1, b1] = await Promise.all([snapshot(alice!), snapshot(bob!)]);
      await expectMediaFlowing(alice!, [b1.peerId!], 45_000);
      await expectMediaFlowing(bob!, [a1.peerId!], 45_000);
      const keysBefore = await Promise.all([exportKeys(alice!), exportKeys(bob!)]);

      // SIGTERM: the call goes on, everyone is told, the server is not ready, new joins are refused.
      const termAt = Date.now();
      first.proc.kill('SIGTERM');
      for (const p of [alice!, bob!]) await waitUntil(async () => (await bannerText(p)) === RESTARTING, 10_000, `${p.name} shows the restarting notice`);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect([ready.status, await ready.text()]).toEqual([503, '{"status":"draining"}']);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const third = await connect(`http://127.0.0.1:${port}`);
      const refused = await request(third, 'join', { roomId: newRoomId(), accessToken: newToken() });
      expect(refused.ok ? null : refused.error.code).toBe('DRAINING');
      third.disconnect();
      // Carol opens the link during the drain: refused, she is told why, and her client keeps asking.
      await carol!.page.goto(hooked(link, 'script'));
      await carol!.page.getByTestId('display-name').fill(carol!.name);
      await waitUntil(() => carol!.page.getByTestId('join').isEnabled(), 20_000, 'Carol can join');
      await carol!.page.getByTestId('join').click();
      await waitUntil(async () => (await bannerText(carol!)) === RESTARTING, 10_000, 'Carol shows the restarting notice');
      expect((await snapshot(carol!)).joinCount).toBe(0);
      await expectMediaFlowing(alice!, [b1.peerId!], 20_000);
      await expectMediaFlowing(bob!, [a1.peerId!], 20_000);
      expect((await snapshot(alice!)).status).toBe('joined');
      expect((await snapshot(bob!)).status).toBe('joined');

      const refusals = (): number => carol!.logs.filter((l) => l.includes('join: DRAINING')).length;
      await waitUntil(() => refusals() >= 2, 10_000, 'Carol asked again after a refusal');
      // Nobody leaves, so the process stops at the deadline (not before), with status 0.
      const exit = await first.exited;
      expect(exit).toMatchObject({ code: 0, signal: null });
      const drainedAfter = exit.at - termAt;
      expect(drainedAfter).toBeGreaterThanOrEqual(DRAIN_TIMEOUT_S * 1000 - 500);
      expect(drainedAfter).toBeLessThan(DRAIN_TIMEOUT_S * 1000 + 8000);
      expect(first.output.some((l) => l.includes('drain deadline reached'))).toBe(true);
      // While it is gone the clients keep saying why.
      for (const p of [alice!, bob!]) {
        await waitUntil(async () => (await snapshot(p)).status !== 'joined', 10_000, `${p.name} noticed the server is gone`);
        expect(await bannerText(p)).toBe(RESTARTING);
      }

      // The new process on the same port: both rejoin by themselves, as new members, and media flows again; Carol,
      // refused before, gets in too.
      second = await startCli(port, clientDir);
      await waitUntil(
        async () => {
          const [a, b, c] = await Promise.all([snapshot(alice!), snapshot(bob!), snapshot(carol!)]);
          return (
            [a, b, c].every((s) => s.status === 'joined') &&
            a.joinCount >= 2 &&
            b.joinCount >= 2 &&
            c.joinCount === 1 &&
            a.peers.includes(b.peerId!) &&
            b.peers.includes(a.peerId!) &&
            c.peers.includes(a.peerId!) &&
            c.peers.includes(b.peerId!)
          );
        },
        60_000,
        'all three in the call on the new process',
      );
      const [a2, b2] = await Promise.all([snapshot(alice!), snapshot(bob!)]);
      expect(a2.peerId).not.toBe(a1.peerId);
      expect(b2.peerId).not.toBe(b1.peerId);
      await expectMediaFlowing(alice!, [b2.peerId!], 45_000);
      await expectMediaFlowing(bob!, [a2.peerId!], 45_000);
      for (const p of [alice!, bob!, carol!]) expect(await bannerText(p)).toBeNull();
      // Fresh keys: a new send key unlike any used before the restart, and the other's new key received.
      const keysAfter = await Promise.all([exportKeys(alice!), exportKeys(bob!)]);
      for (const [i, after] of keysAfter.entries()) {
        const before = keysBefore[i]!;
        expect(after.send).not.toBeNull();
        expect(before.sendHistory.map((k) => k.key)).not.toContain(after.send!.key);
        expect(after.peerId).not.toBe(before.peerId);
      }
      expect(keysAfter[0]!.receive.some((r) => r.peerId === b2.peerId)).toBe(true);
      expect(keysAfter[1]!.receive.some((r) => r.peerId === a2.peerId)).toBe(true);

      // Logs: neither process names the room or a member; the same room has a different pseudonym in each.
      const ids = [roomId, a1.peerId!, b1.peerId!, a2.peerId!, b2.peerId!, (await snapshot(carol!)).peerId!];
      for (const cli of [first, second]) {
        const text = cli.output.join('\n');
        for (const id of ids) expect(text, `log contains ${id}`).not.toContain(id);
      }
      const roomOf = (cli: Cli): unknown[] => [...new Set(logLines(cli).filter((l) => l['msg'] === 'room created').map((l) => l['room']))];
      const [r1, r2] = [roomOf(first), roomOf(second)];
      expect(r1).toHaveLength(1);
      expect(r2).toHaveLength(1);
      expect(r1[0]).toMatch(/^r-[0-9a-f]{8}$/);
      expect(r2[0]).toMatch(/^r-[0-9a-f]{8}$/);
      expect(r2[0]).not.toBe(r1[0]);

      // Stop the second one the same way: the rooms are still in use, so SIGTERM then SIGINT exits at once.
      const t = Date.now();
      second.proc.kill('SIGTERM');
      await waitUntil(() => second!.output.some((l) => l.includes('draining for up to')), 10_000, 'second CLI draining');
      second.proc.kill('SIGINT');
      const exit2 = await second.exited;
      expect(Date.now() - t).toBeLessThan(DRAIN_TIMEOUT_S * 1000);
      expect(exit2.code).toBe(1);
      expect(second.output.some((l) => l.includes('SIGINT again, exiting now'))).toBe(true);
    } catch (err) {
      console.error(dump());
      throw err;
    }
  }, 240_000);
});
