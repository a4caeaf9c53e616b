/**
 * A browser call over the default media mode: the room's worker receives and sends every participant's
 * media (DTLS-SRTP over ICE) on its WebRtcServer's one UDP port, RTC_PORT. Checked from three sides: the
 * WebRtcServer handles every transport of the room, every transport's selected ICE tuple is UDP on that
 * port, and the worker process holds no UDP socket on any other port.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { freeConsecutivePorts } from '../server/helpers.ts';
import { Harness, createMeeting, dumpLogs, expectMediaFlowing, joinByLink, joinFromLobby, roomIdOf, snapshot, type Participant } from './harness.ts';

/** Local ports of the UDP sockets process `pid` holds (from /proc: its socket inodes in /proc/net/udp{,6}). */
function udpPortsOf(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // fd closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && inodes.has(cols[9]!)) ports.push(parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

describe('call over the WebRtcServer (one UDP port per worker)', () => {
  let h: Harness;
  let port: number;
  let alice: Participant;
  let bob: Participant;

  /** Every WebRTC transport created on any room's router, as mediasoup objects. */
  const transports: ms.WebRtcTransport[] = [];

  beforeAll(async () => {
    port = await freeConsecutivePorts(1);
    h = await Harness.start({}, { rtcMode: 'server', rtcPort: port });
    h.server.sfu.on('roomCreated', (room) => {
      room.router.observer.on('newtransport', (t) => {
        if (t.type === 'webrtc') transports.push(t as ms.WebRtcTransport);
      });
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('two participants see and hear each other; all media on RTC_PORT', async () => {
    try {
      alice = await h.participant('Alice');
      bob = await h.participant('Bob');
      const link = await createMeeting(alice, h.url);
      const roomId = roomIdOf(link);
      await alice.page.getByTestId('join-created').click();
      await joinFromLobby(alice);
      await joinByLink(bob, link);
      const [a, b] = await Promise.all([snapshot(alice), snapshot(bob)]);
      await expectMediaFlowing(alice, [b.peerId!], 120_000);
      await expectMediaFlowing(bob, [a.peerId!], 120_000);

      const [webRtcServer] = h.server.sfu.pool.webRtcServers;
      const serverDump = await webRtcServer!.dump();
      expect(serverDump.udpSockets.map((s) => s.port)).toEqual([port]);
      expect(serverDump.tcpServers.map((s) => s.port)).toEqual([port]);

      const live = transports.filter((t) => !t.closed);
      expect(live.length).toBeGreaterThanOrEqual(4); // a send and a recv transport per participant
      for (const t of live) {
        expect(serverDump.webRtcTransportIds).toContain(t.id);
        expect(t.iceCandidates.every((c) => c.port === port)).toBe(true);
        expect(t.iceState).toMatch(/^(connected|completed)$/);
        expect(t.dtlsState).toBe('connected');
        expect(t.iceSelectedTuple).toMatchObject({ protocol: 'udp', localPort: port });
        const [stats] = await t.getStats();
        expect(stats?.bytesReceived).toBeGreaterThan(0);
        expect(stats?.bytesSent).toBeGreaterThan(0);
      }
      // The worker process itself: no UDP socket on any other port.
      expect([...new Set(udpPortsOf(h.roomWorkerPid(roomId)))]).toEqual([port]);
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  });
});
