/**
 * Errors the SFU layer raises on purpose, with a code from the closed set the signaling layer
 * forwards to clients. Anything else thrown inside the SFU (mediasoup errors) is an SFU_ERROR.
 */
export type SfuErrorCode = 'UNAUTHORIZED' | 'ROOM_FULL' | 'NOT_FOUND' | 'CANNOT_CONSUME' | 'UNAVAILABLE' | 'BAD_REQUEST';

export class SfuError extends Error {
  readonly code: SfuErrorCode;

  constructor(code: SfuErrorCode, message: string) {
    super(message);
    this.name = 'SfuError';
    this.code = code;
  }
}
