/**
 * Router media codecs and RTP capability filters.
 *
 * Only Opus, VP8 and VP9: the SFrame transform (client/src/transform) encrypts whole encoded frames,
 * which these codecs tolerate (their RTP packetization does not parse the payload in ways that break).
 * H.264 and AV1 are left out on purpose (see the E2EE docs for why they cannot be protected).
 */
import type { types as ms } from 'mediasoup';

export const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

export const MEDIA_CODECS: ms.RouterRtpCodecCapability[] = [
  {
    kind: 'audio',
    mimeType: 'audio/opus',
    clockRate: 48000,
    channels: 2,
    parameters: { useinbandfec: 1 },
  },
  {
    kind: 'video',
    mimeType: 'video/VP8',
    clockRate: 90000,
    parameters: { 'x-google-start-bitrate': 1000 },
  },
  {
    kind: 'video',
    mimeType: 'video/VP9',
    clockRate: 90000,
    parameters: { 'profile-id': 0, 'x-google-start-bitrate': 1000 },
  },
];

/** Router RTP capabilities as sent to clients; without the audio-level extension if it is switched off. */
export function clientRtpCapabilities(caps: ms.RtpCapabilities, audioLevelExt: boolean): ms.RtpCapabilities {
  const copy = structuredClone(caps);
  if (!audioLevelExt) {
    copy.headerExtensions = (copy.headerExtensions ?? []).filter((h) => h.uri !== AUDIO_LEVEL_URI);
  }
  return copy;
}

/** Drops the audio-level extension from client-supplied RTP capabilities (consume) when it is off. */
export function filterCapabilities(caps: ms.RtpCapabilities, audioLevelExt: boolean): ms.RtpCapabilities {
  if (audioLevelExt || !Array.isArray(caps.headerExtensions)) return caps;
  return { ...caps, headerExtensions: caps.headerExtensions.filter((h) => h?.uri !== AUDIO_LEVEL_URI) };
}

/** Drops the audio-level extension from client-supplied RTP parameters (produce) when it is off. */
export function filterParameters(params: ms.RtpParameters, audioLevelExt: boolean): ms.RtpParameters {
  if (audioLevelExt || !Array.isArray(params.headerExtensions)) return params;
  return { ...params, headerExtensions: params.headerExtensions.filter((h) => h?.uri !== AUDIO_LEVEL_URI) };
}

/**
 * HIDE_VOICE_ACTIVITY: the router capabilities handed to clients, with Opus told to run at a constant bitrate without
 * DTX (RFC 7587 §6.1 `cbr=1`, `usedtx=0`). mediasoup-client puts these parameters into the remote answer it builds
 * for the browser's send side, which is where the browser's Opus encoder takes them from: packet sizes and packet
 * presence then no longer follow speech. (mediasoup-client's own `codecOptions` has no CBR switch.) The router
 * itself is unchanged: Opus codecs match on mime type, clock rate and channels only.
 */
export function hideVoiceActivityCapabilities(caps: ms.RtpCapabilities): ms.RtpCapabilities {
  const copy = structuredClone(caps);
  for (const c of copy.codecs ?? []) {
    if (c.mimeType.toLowerCase() === 'audio/opus') c.parameters = { ...c.parameters, cbr: 1, usedtx: 0 };
  }
  copy.headerExtensions = (copy.headerExtensions ?? []).filter((h) => h.uri !== AUDIO_LEVEL_URI);
  return copy;
}
