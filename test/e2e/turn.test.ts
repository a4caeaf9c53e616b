/**
 * Calls through TURN only: the server with ICE_TRANSPORT_POLICY=relay, TURN_SECRET and TURN_URLS pointing at a real
 * coturn on loopback (test/infra/coturn.ts), over UDP, TCP and TLS (`turns:`) in turn. Two Chromium participants
 * join; each case checks that
 *   - both transports of both participants were created with this join's TURN credentials and policy `relay`,
 *   - the selected ICE candidate pair of each is local type `relay` over the expected TURN transport (getStats),
 *   - video and audio decode and every frame is sealed / opened by the E2EE worker (expectEncryptedFlow),
 *   - coturn's own traffic counters (usage reports in its log) show the media bytes relayed for those usernames;
 * and (UDP case) that the same browser gathers no relay candidate with a forged credential (coturn: 401).
 * Last, what credential expiry means for a call: two relay-only peer connections in one page keep talking through
 * allocations made before their credentials expired; an ICE restart after the expiry gathers no relay candidate
 * (coturn 401), and one with fresh credentials (as a rejoin gets) recovers.
 *
 * Chromium checks the turns: certificate: participants trust the test certificate's key alone
 * (`--ignore-certificate-errors-spki-list`, see Coturn.spkiSha256); without it gathering fails with error 701.
 * The RTCPeerConnection constructor is wrapped by an init script in the test browser only, to read getStats and
 * the configuration the client passed; nothing in the client changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { turnCredentials } from '../../signaling/src/turn.ts';
import { startCoturn, type Coturn } from '../infra/coturn.ts';
import { Harness, dumpLogs, expectMediaFlowing, launchChromium, snapshot, waitUntil, type Participant } from './harness.ts';
import { createAndJoin, expectEncryptedFlow, joinHooked } from './e2ee-helpers.ts';

const API = 'script' as const;

interface PcInfo {
  policy: string | undefined;
  servers: { urls: string | string[]; username?: string; credential?: string }[];
  pairs: { local: string; relayProtocol: string | undefined; remote: string; bytesSent: number; bytesReceived: number }[];
  state: string;
}

/** Runs in the test browser before the app: records every RTCPeerConnection with its ICE configuration. */
function recordPeerConnections(): void {
  const Native = window.RTCPeerConnection;
  const pcs: { pc: RTCPeerConnection; policy: string | undefined; servers: unknown }[] = [];
  class Recorded extends Native {
    constructor(config?: RTCConfiguration) {
      super(config);
      pcs.push({ pc: this, policy: config?.iceTransportPolicy, servers: JSON.parse(JSON.stringify(config?.iceServers ?? [])) });
    }
  }
  window.RTCPeerConnection = Recorded;
  Object.defineProperty(window, '__turnTestPcs', { value: pcs });
}

async function peerConnections(p: Participant): Promise<PcInfo[]> {
  return p.page.evaluate(async () => {
    const pcs = (window as unknown as { __turnTestPcs: { pc: RTCPeerConnection; policy: string | undefined; servers: PcInfo['servers'] }[] }).__turnTestPcs;
    return Promise.all(
      pcs
        .filter(({ pc }) => pc.connectionState !== 'closed')
        .map(async ({ pc, policy, servers }) => {
          const stats = await pc.getStats();
          const pairs: PcInfo['pairs'] = [];
          stats.forEach((r: { type: string; selectedCandidatePairId?: string }) => {
            if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
            const pair = stats.get(r.selectedCandidatePairId);
            const local = stats.get(pair.localCandidateId);
            const remote = stats.get(pair.remoteCandidateId);
            pairs.push({ local: local.candidateType, relayProtocol: local.relayProtocol, remote: remote.candidateType, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived });
          });
          return { policy, servers, pairs, state: pc.connectionState };
        }),
    );
  });
}

/** Relay candidates this page gathers for one TURN server (policy relay), and the candidate errors. */
async function gatherRelay(p: Participant, server: RTCIceServer): Promise<{ candidates: string[]; errors: string[] }> {
  return p.page.evaluate(async (iceServer) => {
    const pc = new RTCPeerConnection({ iceServers: [iceServer], iceTransportPolicy: 'relay' });
    pc.createDataChannel('probe');
    const candidates: string[] = [];
    const errors: string[] = [];
    pc.onicecandidate = (e) => void (e.candidate && candidates.push(e.candidate.candidate));
    pc.onicecandidateerror = (e) => void errors.push(`${e.errorCode} ${e.errorText}`);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 10_000);
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && (clearTimeout(t), resolve());
    });
    pc.close();
    return { candidates, errors };
  }, server);
}

let turn: Coturn;
beforeAll(async () => {
  turn = await startCoturn();
});
afterAll(async () => {
  await turn?.stop();
});

const CASES = [
  { transport: 'udp', url: () => turn.urls.udp },
  { transport: 'tcp', url: () => turn.urls.tcp },
  { transport: 'tls', url: () => turn.urls.tls },
] as const;

describe.each(CASES)('a call relayed through coturn over $transport', ({ transport, url }) => {
  it('relay candidates only, E2EE media flowing, bytes counted by coturn', async () => {
    const h = await Harness.start({}, { turnUrls: [url()], turnSecret: turn.secret, turnTtl: 600, iceTransportPolicy: 'relay' });
    const trust = [`--ignore-certificate-errors-spki-list=${turn.spkiSha256}`];
    let alice: Participant | undefined;
    let bob: Participant | undefined;
    try {
      alice = await h.participant('Alice', trust);
      bob = await h.participant('Bob', trust);
      for (const p of [alice, bob]) await p.context.addInitScript(recordPeerConnections);
      const link = await createAndJoin(alice, h.url, API);
      await joinHooked(bob, link, API);
      const ids = new Map<Participant, string>();
      for (const p of [alice, bob]) ids.set(p, (await snapshot(p)).peerId!);
      await expectMediaFlowing(alice, [ids.get(bob)!], 60_000);
      await expectMediaFlowing(bob, [ids.get(alice)!], 60_000);
      for (const p of [alice, bob]) await expectEncryptedFlow(p, 2);

      // Both transports of each participant: this join's credentials, policy relay, a relay pair over `transport`.
      const usernames = new Map<Participant, string>();
      for (const p of [alice, bob]) {
        const pcs = await peerConnections(p);
        expect(pcs.map((x) => x.state)).toEqual(['connected', 'connected']);
        for (const pc of pcs) {
          expect(pc.policy).toBe('relay');
          expect(pc.servers).toHaveLength(1);
          expect(pc.servers[0]!.urls).toEqual([url()]);
          expect(pc.servers[0]!.username).toMatch(/^\d{10}:[A-Za-z0-9_-]{16}$/);
          expect(pc.pairs).toHaveLength(1);
          expect(pc.pairs[0]).toMatchObject({ local: 'relay', relayProtocol: transport });
          expect(pc.pairs[0]!.bytesSent + pc.pairs[0]!.bytesReceived).toBeGreaterThan(10_000);
        }
        // One join, one set of credentials for both transports.
        expect(new Set(pcs.map((x) => x.servers[0]!.username)).size).toBe(1);
        usernames.set(p, pcs[0]!.servers[0]!.username!);
      }
      expect(usernames.get(alice)).not.toBe(usernames.get(bob));

      // coturn's counters: media bytes relayed to/from the SFU (peer side) under each participant's username.
      const relayed = (u: string): number =>
        turn
          .usage()
          .filter((x) => x.username === u && x.side === 'peer')
          .reduce((n, x) => n + x.rb + x.sb, 0);
      await waitUntil(() => [alice!, bob!].every((p) => relayed(usernames.get(p)!) > 100_000), 45_000, `coturn usage reports for both participants (${transport})`, 500);

      if (transport === 'udp') {
        // A forged credential (other secret): no relay candidate in the same browser, and coturn says 401.
        const forged = turnCredentials('not-the-secret-of-this-coturn', 600);
        const g = await gatherRelay(alice, { urls: url(), username: forged.username, credential: forged.credential });
        expect(g.candidates.filter((c) => c.includes(' typ relay '))).toEqual([]);
        expect(g.errors.some((e) => e.startsWith('401'))).toBe(true);
        expect(turn.log().some((l) => l.includes(`user <${forged.username}>`) && l.includes('error 401: Unauthorized'))).toBe(true);
        // The real ones gather a relay candidate.
        const real = await gatherRelay(alice, (await peerConnections(alice))[0]!.servers[0] as RTCIceServer);
        expect(real.candidates.some((c) => c.includes(' typ relay '))).toBe(true);
      }
    } catch (err) {
      console.error(dumpLogs(h));
      console.error(`--- coturn ---\n${turn.log().slice(-40).join('\n')}`);
      throw err;
    } finally {
      await h.close();
    }
  }, 180_000);
});

describe('credential expiry (coturn checks it only when allocating)', () => {
  it('allocations outlive their credentials; an ICE restart after expiry needs fresh ones', async () => {
    const p = await launchChromium('Expiry');
    try {
      const old = turnCredentials(turn.secret, 3);
      const fresh = turnCredentials(turn.secret, 600);
      const r = await p.page.evaluate(
        async ({ url, old, fresh }) => {
          const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
          const cfg = (c: { username: string; credential: string }): RTCConfiguration => ({ iceServers: [{ urls: url, username: c.username, credential: c.credential }], iceTransportPolicy: 'relay' });
          const a = new RTCPeerConnection(cfg(old));
          const b = new RTCPeerConnection(cfg(old));
          const aCandidates: string[] = [];
          a.onicecandidate = (e) => {
            if (!e.candidate) return;
            aCandidates.push(e.candidate.candidate);
            void b.addIceCandidate(e.candidate).catch(() => undefined);
          };
          b.onicecandidate = (e) => void (e.candidate && a.addIceCandidate(e.candidate).catch(() => undefined));
          const negotiate = async (iceRestart: boolean): Promise<void> => {
            await a.setLocalDescription(await a.createOffer({ iceRestart }));
            await b.setRemoteDescription(a.localDescription!);
            await b.setLocalDescription(await b.createAnswer());
            await a.setRemoteDescription(b.localDescription!);
          };
          const dc = a.createDataChannel('ping');
          let got = 0;
          b.ondatachannel = (e) => void (e.channel.onmessage = () => void got++);
          const received = async (ms: number): Promise<number> => {
            const from = got;
            await sleep(ms);
            return got - from;
          };
          const relays = (from: number): number => aCandidates.slice(from).filter((c) => c.includes(' typ relay ')).length;
          await negotiate(false);
          for (let i = 0; i < 100 && dc.readyState !== 'open'; i++) await sleep(100);
          const ping = setInterval(() => dc.readyState === 'open' && dc.send('x'), 100);
          const firstRelays = relays(0);
          while (Date.now() / 1000 < old.expiresAt + 1.5) await sleep(100);
          const afterExpiry = await received(1500);
          const n0 = aCandidates.length;
          await negotiate(true);
          await sleep(4000);
          const restartExpired = relays(n0);
          a.setConfiguration(cfg(fresh));
          b.setConfiguration(cfg(fresh));
          const n1 = aCandidates.length;
          await negotiate(true);
          await sleep(3000);
          const restartFresh = relays(n1);
          const afterFresh = await received(1500);
          clearInterval(ping);
          a.close();
          b.close();
          return { firstRelays, afterExpiry, restartExpired, restartFresh, afterFresh };
        },
        { url: turn.urls.udp, old, fresh },
      );
      expect(r.firstRelays).toBeGreaterThan(0);
      // ~15 pings in 1.5 s, past the expiry, through the allocations made before it.
      expect(r.afterExpiry).toBeGreaterThan(5);
      expect(r.restartExpired).toBe(0);
      expect(turn.log().some((l) => l.includes(`user <${old.username}>`) && l.includes('error 401: Unauthorized'))).toBe(true);
      expect(r.restartFresh).toBeGreaterThan(0);
      expect(r.afterFresh).toBeGreaterThan(5);
      expect(turn.log().some((l) => l.includes(`user <${fresh.username}>`) && l.includes('ALLOCATE processed, success'))).toBe(true);
    } finally {
      await p.close();
    }
  }, 60_000);
});
