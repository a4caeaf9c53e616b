/** client/src/lib/signaling.ts retryRateLimited: a request the server refused as RATE_LIMITED (nothing sent) is tried again. */
import { describe, expect, it } from 'vitest';
import { RequestError, retryRateLimited } from '../../client/src/lib/signaling.ts';

describe('retryRateLimited', () => {
  it('tries again after RATE_LIMITED and resolves with the first success', async () => {
    let calls = 0;
    const r = await retryRateLimited(async () => {
      calls += 1;
      if (calls < 3) throw new RequestError('relay', 'RATE_LIMITED', 'room relay budget');
      return 'sent';
    }, 5, 1);
    expect([r, calls]).toEqual(['sent', 3]);
  });

  it('gives up after the last retry, and never retries another failure', async () => {
    let calls = 0;
    await expect(retryRateLimited(async () => {
      calls += 1;
      throw new RequestError('relay', 'RATE_LIMITED', 'x');
    }, 2, 1)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(calls).toBe(3);
    calls = 0;
    await expect(retryRateLimited(async () => {
      calls += 1;
      throw new RequestError('relay', 'NOT_FOUND', 'x');
    }, 5, 1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(calls).toBe(1);
  });
});
