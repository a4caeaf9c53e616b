/**
 * The ONE place that decides which encoded-transform API this browser gets.
 *
 * - `script`: `RTCRtpScriptTransform` (WebRTC Encoded Transform, standard; Firefox, Safari, current Chromium).
 * - `streams`: `RTCRtpSender.prototype.createEncodedStreams` (Chromium's older Insertable Streams). Peer
 *   connections must then be created with `encodedInsertableStreams: true`.
 * - neither: the lobby refuses to join. There is no plaintext fallback.
 *
 * Tests may force one API with `?transform=script|streams`; the query is read once, at startup.
 */
export type TransformApi = 'script' | 'streams';

export type TransformSupport =
  | { ok: true; api: TransformApi; forced: boolean }
  | { ok: false; reason: string };

export const UNSUPPORTED_MESSAGE =
  'This browser cannot encrypt media end to end; use a current Chromium/Chrome/Edge, Firefox or Safari.';

function hasScriptTransform(): boolean {
  return typeof globalThis.RTCRtpScriptTransform === 'function';
}

function hasEncodedStreams(): boolean {
  const sender = globalThis.RTCRtpSender?.prototype as unknown as Record<string, unknown> | undefined;
  const receiver = globalThis.RTCRtpReceiver?.prototype as unknown as Record<string, unknown> | undefined;
  return typeof sender?.['createEncodedStreams'] === 'function' && typeof receiver?.['createEncodedStreams'] === 'function';
}

function detect(search: string): TransformSupport {
  const forced = new URLSearchParams(search).get('transform');
  const script = hasScriptTransform();
  const streams = hasEncodedStreams();
  if (forced === 'script' || forced === 'streams') {
    const available = forced === 'script' ? script : streams;
    if (!available) {
      return { ok: false, reason: `${UNSUPPORTED_MESSAGE} (the forced transform API "${forced}" is not available here)` };
    }
    return { ok: true, api: forced, forced: true };
  }
  if (script) return { ok: true, api: 'script', forced: false };
  if (streams) return { ok: true, api: 'streams', forced: false };
  return { ok: false, reason: UNSUPPORTED_MESSAGE };
}

/** Decided once per page load. */
export const transformSupport: TransformSupport = detect(typeof location === 'undefined' ? '' : location.search);

/** Extra RTCPeerConnection settings a transport needs for the chosen API. */
export function peerConnectionSettings(api: TransformApi): Partial<RTCConfiguration> {
  return api === 'streams' ? ({ encodedInsertableStreams: true } as Partial<RTCConfiguration>) : {};
}
