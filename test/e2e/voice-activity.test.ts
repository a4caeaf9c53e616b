/**
 * HIDE_VOICE_ACTIVITY=on (issue 13 §8), real server with the media tap and two Chromium participants:
 * - the join answer turns it on, and both hear each other (frames open after the padding is stripped, none dropped);
 * - what the SFU forwards for a mic is constant-size: every Opus frame at the tap is TOC + SFrame header + 128 + tag
 *   bytes (A §2.1), for Alice, whose microphone is silent, as for Bob, whose fake microphone beeps;
 * - inside, with the keys exported from the TEST build: valid padding around an Opus packet of one constant length
 *   (the encoder runs at a constant bitrate), and a silent microphone keeps sending at the 20 ms frame rate (no DTX:
 *   with DTX, as in a default room, the same silent input sends ~5 packets a second);
 * - the frame ledger holds (every frame sealed / opened, the packetizer sent what the worker sealed).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIO_PADDING_BLOCK, splitProtected, unpadAudioPlaintext } from '../../client/src/e2ee/frame-codec.ts';
import { DEFAULT_SUITE, decodeHeader } from '../../client/src/e2ee/sframe.ts';
import { open as sframeOpen } from '../e2ee/sframe-oneshot.ts';
import { Harness, dumpLogs, expectMediaFlowing, refresh, roomIdOf, rtpStats, sleep, snapshot, type Participant } from './harness.ts';
import { createAndJoin, expectEncryptedFlow, exportKeys, fromHex, isPlausibleOpus, joinHooked, parseProtected } from './e2ee-helpers.ts';

const API = 'script' as const;

/** `seconds` of silence as a 48 kHz mono 16-bit WAV (Chromium's --use-file-for-fake-audio-capture loops it). */
function silentWav(file: string, seconds: number): void {
  const rate = 48_000;
  const data = Buffer.alloc(rate * seconds * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16); // fmt chunk size
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28); // byte rate
  h.writeUInt16LE(2, 32); // block align
  h.writeUInt16LE(16, 34); // bits per sample
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([h, data]));
}

describe('hide voice activity (HIDE_VOICE_ACTIVITY=on, tap on)', () => {
  let h: Harness;
  let alice: Participant;
  let bob: Participant;
  let link = '';
  const dir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-silence-'));
  const silence = path.join(dir, 'silence.wav');

  beforeAll(async () => {
    silentWav(silence, 10);
    h = await Harness.start({ tap: true }, { hideVoiceActivity: true });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('constant-size mic frames at the SFU, padded inside SFrame around constant-bitrate Opus, no DTX; both hear each other', async () => {
    try {
      alice = await h.participant('Alice', [`--use-file-for-fake-audio-capture=${silence}`]);
      bob = await h.participant('Bob');
      link = await createAndJoin(alice, h.url, API);
      await joinHooked(bob, link, API);
      const ids = await Promise.all([alice, bob].map(async (p) => (await snapshot(p)).peerId!));
      await expectMediaFlowing(alice, [ids[1]!], 150_000);
      await expectMediaFlowing(bob, [ids[0]!], 150_000);
      for (const p of [alice, bob]) await expectEncryptedFlow(p, 2);
      // Padding stripped on receive: audio opens and nothing is dropped as malformed (a few frames that arrived before
      // the sender was admitted are `unbound`: attribution, not padding).
      for (const p of [alice, bob]) {
        const mic = (await refresh(p)).consumers.find((c) => c.kind === 'audio')!;
        expect(mic.opened, `${p.name} opened audio`).toBeGreaterThan(50);
        expect(mic.dropped['malformed'] ?? 0, `${p.name} audio dropped as malformed`).toBe(0);
      }

      const tap = h.server.tap!;
      const mics = tap.producers().filter((x) => x.roomId === roomIdOf(link) && x.kind === 'audio');
      expect(mics.length).toBe(2);
      const keys = new Map<bigint, Uint8Array>();
      for (const p of [alice, bob]) for (const k of (await exportKeys(p)).sendHistory) keys.set(BigInt(k.kid), fromHex(k.key));
      for (const mic of mics) {
        const frames = tap.frames(mic.producerId);
        expect(frames.length, 'mic frames at the tap').toBeGreaterThan(100);
        const sealedSizes = new Set<number>();
        const opusSizes = new Set<number>();
        for (const f of frames) {
          const data = new Uint8Array(f.data);
          const { kid, headerLength } = parseProtected('opus', data);
          // What the SFU can measure, minus the header whose CTR field grows by a byte at 256, 65536, …
          sealedSizes.add(data.length - headerLength);
          const { prefix, sframe } = splitProtected('opus', data);
          const padded = await sframeOpen(DEFAULT_SUITE, keys.get(kid)!, prefix, sframe);
          expect(padded.length).toBe(AUDIO_PADDING_BLOCK);
          const opus = Uint8Array.from([...prefix, ...unpadAudioPlaintext(padded)]);
          expect(isPlausibleOpus(opus)).toBe(true);
          opusSizes.add(opus.length);
          expect(decodeHeader(sframe).kid).toBe(kid);
        }
        expect([...sealedSizes], `${mic.source}: sizes at the SFU`).toEqual([1 + AUDIO_PADDING_BLOCK + 16]);
        // Constant bitrate: every Opus packet the encoder made has one length (80 bytes at 32 kbit/s, 20 ms).
        expect([...opusSizes], `${mic.source}: Opus packet sizes inside`).toEqual([80]);
      }

      // No DTX: Alice's silent microphone keeps sending 50 packets a second.
      const mic = (await snapshot(alice)).producers.find((x) => x.kind === 'audio')!;
      const before = (await rtpStats(alice, mic.id))!.packetsSent;
      await sleep(4000);
      const after = (await rtpStats(alice, mic.id))!.packetsSent;
      expect(after - before, 'mic packets in 4 s').toBeGreaterThanOrEqual(180);
    } catch (err) {
      console.error(dumpLogs(h));
      for (const p of [alice, bob]) if (p) console.error(`--- ${p.name} ---\n${JSON.stringify(await snapshot(p).catch(() => null))}`);
      throw err;
    }
  }, 300_000);
});
