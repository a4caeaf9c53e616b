/**
 * Where WebRTC media is received (RTC_MODE), against real workers through the signaling server:
 * - `server` (default): one WebRtcServer per worker carries every transport of every room on that worker
 *   on one UDP and one TCP port; worker i listens on RTC_PORT + i, and a replacement for a dead worker
 *   takes over its ports.
 * - `range`: each transport gets its own port from RTC_MIN_PORT–RTC_MAX_PORT.
 * - LOCAL_LAN_MEDIA (default on a local HOST): a second UDP + TCP pair bound to the machine's first
 *   non-loopback IPv4 itself and announced as it, since Firefox pairs no loopback candidates.
 * (test/e2e/webrtc-server.test.ts runs a browser call over the one port, test/e2e/firefox.test.ts a
 * Firefox call over the LAN address.)
 */
import { createSocket } from 'node:dgram';
import { createServer as createTcpServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { firstExternalIPv4 } from '../../sfu/src/config.ts';
import {
  freeConsecutivePorts,
  joinWithTransports,
  newRoomId,
  newToken,
  ok,
  startTestServer,
  waitFor,
  type JoinedClient,
  type TestServer,
} from './helpers.ts';

let servers: TestServer[] = [];
let clients: JoinedClient[] = [];
afterEach(async () => {
  for (const c of clients) c.socket.disconnect();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  clients = [];
});

async function start(overrides: Parameters<typeof startTestServer>[0]): Promise<TestServer> {
  const s = await startTestServer(overrides);
  servers.push(s);
  return s;
}

async function join(server: TestServer, roomId: string, token: string): Promise<JoinedClient> {
  const c = await joinWithTransports(server.url, roomId, token);
  clients.push(c);
  return c;
}

type Candidate = { protocol: string; port: number; ip: string };
/** Opens one more (recv) transport for the client and returns the ICE candidates it was given. */
async function candidatesOf(c: JoinedClient): Promise<Candidate[][]> {
  const extra = await ok(c.socket, 'createTransport', { direction: 'recv' });
  return [extra.iceCandidates as Candidate[]];
}

/** This machine's first non-loopback IPv4 (the LOCAL_LAN_MEDIA default); these tests need one. */
function lanIp(): string {
  const ip = firstExternalIPv4();
  if (ip === undefined) throw new Error('this machine has no non-loopback IPv4 address; LOCAL_LAN_MEDIA has nothing to bind');
  return ip;
}

/** The error binding `ip:port` gives right now (UDP or TCP), or null when it could be bound. */
async function bindError(protocol: 'udp' | 'tcp', ip: string, port: number): Promise<string | null> {
  if (protocol === 'udp') {
    const sock = createSocket('udp4');
    const err = await new Promise<string | null>((resolve) => {
      sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      sock.bind(port, ip, () => resolve(null));
    });
    sock.close();
    return err;
  }
  const srv = createTcpServer();
  const err = await new Promise<string | null>((resolve) => {
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    srv.listen(port, ip, () => resolve(null));
  });
  if (err === null) await new Promise<void>((resolve) => srv.close(() => resolve()));
  return err;
}

describe('media ports', () => {
  it('LOCAL_LAN_MEDIA=off: every transport of every room on a worker uses its WebRtcServer’s one UDP + one TCP port on 127.0.0.1', async () => {
    const server = await start({ workers: 1, rtcMode: 'server', rtcPort: 0, localLanMedia: false });
    const [webRtcServer] = server.sfu.pool.webRtcServers;
    expect(server.sfu.pool.webRtcServers).toHaveLength(1);
    const dump = await webRtcServer!.dump();
    expect(dump.udpSockets).toHaveLength(1);
    expect(dump.tcpServers).toHaveLength(1);
    const udp = dump.udpSockets[0]!.port;
    const tcp = dump.tcpServers[0]!.port;
    expect(udp).toBeGreaterThanOrEqual(40000);
    expect(udp).toBeLessThanOrEqual(49999);

    const tokenA = newToken();
    const roomA = newRoomId();
    const roomB = newRoomId();
    const a1 = await join(server, roomA, tokenA);
    const a2 = await join(server, roomA, tokenA);
    const b1 = await join(server, roomB, newToken());
    const all = [...(await candidatesOf(a1)), ...(await candidatesOf(a2)), ...(await candidatesOf(b1))];
    for (const candidates of all) {
      expect(candidates.map((c) => `${c.protocol}:${c.ip}:${c.port}`).sort()).toEqual([`tcp:127.0.0.1:${tcp}`, `udp:127.0.0.1:${udp}`]);
    }
    // 3 clients × (send + recv + one more recv) transports, all handled by the one server.
    const handled = (await webRtcServer!.dump()).webRtcTransportIds;
    expect(handled).toHaveLength(9);
    for (const c of [a1, a2, b1]) {
      expect(handled).toContain(c.sendTransportId);
      expect(handled).toContain(c.recvTransportId);
    }
  });

  it('server mode, local default: a second UDP + TCP pair bound to the LAN address itself, announced after loopback', async () => {
    const lan = lanIp();
    const server = await start({ workers: 1, rtcMode: 'server', rtcPort: 0 });
    expect(server.config).toMatchObject({ localLanMedia: true, localLanIp: lan, listenIp: '127.0.0.1', announcedIp: '127.0.0.1' });
    const dump = await server.sfu.pool.webRtcServers[0]!.dump();
    // Bound to the addresses themselves: no wildcard socket that would put media on every interface.
    const socks = [...dump.udpSockets.map((s) => ({ p: 'udp' as const, ...s })), ...dump.tcpServers.map((s) => ({ p: 'tcp' as const, ...s }))];
    expect(socks.map((s) => `${s.p}:${s.ip}`).sort()).toEqual([`tcp:127.0.0.1`, `tcp:${lan}`, `udp:127.0.0.1`, `udp:${lan}`]);
    const port = (p: 'udp' | 'tcp', ip: string): number => socks.find((s) => s.p === p && s.ip === ip)!.port;

    const token = newToken();
    const roomId = newRoomId();
    const c1 = await join(server, roomId, token);
    const c2 = await join(server, roomId, token);
    for (const candidates of [...(await candidatesOf(c1)), ...(await candidatesOf(c2))]) {
      expect(candidates.map((c) => `${c.protocol}:${c.ip}:${c.port}`).sort()).toEqual(
        [`tcp:127.0.0.1:${port('tcp', '127.0.0.1')}`, `tcp:${lan}:${port('tcp', lan)}`, `udp:127.0.0.1:${port('udp', '127.0.0.1')}`, `udp:${lan}:${port('udp', lan)}`].sort(),
      );
      // Loopback first (Chromium keeps pairing it); the LAN pair for Firefox.
      expect(candidates[0]!.ip).toBe('127.0.0.1');
    }
    // The worker really holds those ports on the LAN address: binding them there fails.
    expect(await bindError('udp', lan, port('udp', lan))).toBe('EADDRINUSE');
    expect(await bindError('tcp', lan, port('tcp', lan))).toBe('EADDRINUSE');
  });

  it('server mode with RTC_PORT: worker i listens on RTC_PORT + i; a replacement worker takes the dead one’s ports', async () => {
    const base = await freeConsecutivePorts(2);
    const server = await start({ workers: 2, rtcMode: 'server', rtcPort: base });
    const portsOf = async (): Promise<Map<number, number[]>> => {
      const out = new Map<number, number[]>();
      for (const w of server.sfu.pool.workers) {
        const ids = (await w.dump()).webRtcServerIds;
        const servers = server.sfu.pool.webRtcServers.filter((s) => ids.includes(s.id));
        const dumps = await Promise.all(servers.map((s) => s.dump()));
        out.set(w.pid, dumps.flatMap((d) => [...d.udpSockets, ...d.tcpServers].map((s) => s.port)));
      }
      return out;
    };
    const before = await portsOf();
    expect([...before.values()].map((p) => [...new Set(p)]).sort()).toEqual([[base], [base + 1]]);

    const [victimPid, victimPorts] = [...before.entries()].find(([, p]) => p[0] === base + 1)!;
    process.kill(victimPid, 'SIGKILL');
    await waitFor(() => server.sfu.pool.size === 2 && !server.sfu.pool.workers.some((w) => w.pid === victimPid), 15_000, 'replacement worker');
    const after = await portsOf();
    const replacement = [...after.entries()].find(([pid]) => !before.has(pid));
    expect(replacement?.[1]).toEqual(victimPorts);

    // And it serves transports on those ports.
    const c = await join(server, newRoomId(), newToken());
    const ports = new Set((await candidatesOf(c)).flat().map((x) => x.port));
    expect(ports.size).toBe(1);
    expect([base, base + 1]).toContain([...ports][0]);
  });

  it('range mode: each transport gets its own port from RTC_MIN_PORT–RTC_MAX_PORT; no WebRtcServer', async () => {
    const server = await start({ workers: 1, rtcMode: 'range', rtcMinPort: 43000, rtcMaxPort: 43999 });
    expect(server.sfu.pool.webRtcServers).toEqual([]);
    expect((await server.sfu.pool.workers[0]!.dump()).webRtcServerIds).toEqual([]);
    const token = newToken();
    const roomId = newRoomId();
    const c1 = await join(server, roomId, token);
    const c2 = await join(server, roomId, token);
    const udpPorts = [...(await candidatesOf(c1)), ...(await candidatesOf(c2))].map((cands) => {
      for (const cand of cands) {
        expect(cand.port).toBeGreaterThanOrEqual(43000);
        expect(cand.port).toBeLessThanOrEqual(43999);
      }
      return cands.find((x) => x.protocol === 'udp')!.port;
    });
    expect(new Set(udpPorts).size).toBe(udpPorts.length);
  });

  it('range mode, local default: each transport also gets its own UDP + TCP port on the LAN address', async () => {
    const lan = lanIp();
    const server = await start({ workers: 1, rtcMode: 'range', rtcMinPort: 43000, rtcMaxPort: 43999 });
    const c = await join(server, newRoomId(), newToken());
    const [cands] = await candidatesOf(c);
    expect(cands!.map((x) => `${x.protocol}:${x.ip}`).sort()).toEqual([`tcp:127.0.0.1`, `tcp:${lan}`, `udp:127.0.0.1`, `udp:${lan}`]);
    for (const x of cands!) {
      expect(x.port).toBeGreaterThanOrEqual(43000);
      expect(x.port).toBeLessThanOrEqual(43999);
    }
    const lanUdp = cands!.find((x) => x.protocol === 'udp' && x.ip === lan)!;
    expect(await bindError('udp', lan, lanUdp.port)).toBe('EADDRINUSE');
  });
});
