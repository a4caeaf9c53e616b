/**
 * The one error class of the server layer (sfu/ and signaling/): an error raised on purpose, with a
 * code from the wire's closed set, which the signaling pipeline forwards to the client as is. Anything
 * else thrown (mediasoup errors) is answered SFU_ERROR. The pipeline's own refusal TOO_LARGE and SFU_ERROR
 * itself are never thrown; RATE_LIMITED is, by handlers for quotas the pipeline cannot see (relay fan-out
 * per room, rooms per client address: signaling/src/limits.ts), besides the pipeline's per-socket limit.
 */
import type { ErrorCode } from './wire.ts';

export type SfuErrorCode = Exclude<ErrorCode, 'TOO_LARGE' | 'SFU_ERROR'>;

export class SfuError extends Error {
  readonly code: SfuErrorCode;

  constructor(code: SfuErrorCode, message: string) {
    super(message);
    this.name = 'SfuError';
    this.code = code;
  }
}
