/**
 * Strict JSON parsing for what the e2ee core reads back (exports in IndexedDB, decrypted payloads): JSON.parse, then a
 * zod/mini schema; anything else is E2eeError('malformed') and the input is never quoted in the message.
 *
 * @module
 */
import * as z from 'zod/mini';
import { E2eeError } from './errors.ts';

export function parseJson<S extends z.ZodMiniType>(schema: S, text: string, what: string): z.infer<S> {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new E2eeError('malformed', `${what} is not JSON`);
  }
  const r = schema.safeParse(o);
  if (!r.success) throw new E2eeError('malformed', `${what} does not have the expected fields`);
  return r.data;
}
