/**
 * Media decisions as pure functions and small state machines (unit-tested in Node): which simulcast layer a tile
 * needs, when a silent receive transport gets an ICE restart or a rejoin, and the encodings we send.
 *
 * @module
 */
import type { TrackSource } from '../lib/signaling.ts';

/** Simulcast spatial layer (0 = ¼ resolution, 1 = ½, 2 = full) for a tile of width × height CSS pixels. */
export function layerFor(width: number, height: number, devicePixelRatio = 1): number {
  const needed = Math.max(height, (width * 9) / 16) * (devicePixelRatio || 1);
  return needed <= 200 ? 0 : needed <= 420 ? 1 : 2;
}

export type StallVerdict = 'ok' | 'restart-ice' | 'rejoin';

/** Checks with no new inbound packet before an ICE restart, and before a rejoin. */
export const STALL_RESTART_CHECKS = 2;
export const STALL_REJOIN_CHECKS = 4;

/**
 * Receive watchdog: a receive transport can say "connected" while no RTP reaches it (seen on a starved machine).
 * Fed with the inbound packet total at each check (null when no consumer is live, which resets it).
 */
export class StallWatchdog {
  #checks = 0;
  #lastPackets = -1;

  observe(packets: number | null): StallVerdict {
    if (packets === null) {
      this.#checks = 0;
      return 'ok';
    }
    if (packets > this.#lastPackets) {
      this.#lastPackets = packets;
      this.#checks = 0;
      return 'ok';
    }
    this.#checks += 1;
    if (this.#checks === STALL_RESTART_CHECKS) return 'restart-ice';
    if (this.#checks >= STALL_REJOIN_CHECKS) return 'rejoin';
    return 'ok';
  }
}

export interface SendEncodingPlan {
  encodings?: RTCRtpEncodingParameters[];
  codecOptions?: Record<string, unknown>;
}

/**
 * HIDE_VOICE_ACTIVITY (join answer `hideVoiceActivity`): the mic runs without DTX at this constant bitrate, so an
 * Opus packet is 80 bytes every 20 ms whether anyone speaks or not (the server's capabilities add `cbr=1`;
 * frame-codec.ts pads each frame to AUDIO_PADDING_BLOCK inside SFrame on top of that).
 */
export const HIDDEN_VOICE_BITRATE = 32_000;

export interface SendPolicy {
  hideVoiceActivity: boolean;
}

/**
 * Encodings per source: camera simulcast ×3, screen one layer, mic Opus with FEC and DTX — or, when the room hides
 * voice activity, without DTX at HIDDEN_VOICE_BITRATE.
 */
export function sendPlan(source: TrackSource, policy: SendPolicy = { hideVoiceActivity: false }): SendEncodingPlan {
  switch (source) {
    case 'camera':
      return {
        encodings: [
          { rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
          { rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
          { rid: 'r2', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
        ],
        codecOptions: { videoGoogleStartBitrate: 1000 },
      };
    case 'screen':
      return { encodings: [{ maxBitrate: 1_500_000 }] };
    case 'mic':
      return policy.hideVoiceActivity
        ? { codecOptions: { opusStereo: false, opusDtx: false, opusFec: true, opusMaxAverageBitrate: HIDDEN_VOICE_BITRATE } }
        : { codecOptions: { opusStereo: false, opusDtx: true, opusFec: true } };
    default: {
      const never: never = source;
      return never;
    }
  }
}
