/** X-Wing known answer (draft-connolly-cfrg-xwing-kem-08 Appendix C) through both X-Wing implementations we use. */
import { describe, expect, it } from 'vitest';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { XWing } from '@hpke/hybridkem-x-wing';
import v from '../vectors/xwing-draft08.json' with { type: 'json' };
import { generateSessionKeyPair } from '../../client/src/e2ee/identity.ts';

const h = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, 'hex'));
const hex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');

describe('X-Wing draft-08 Appendix C vector', () => {
  it('noble ml_kem768_x25519 (our session keys): keygen from seed, deterministic encapsulation, decapsulation', () => {
    const kp = generateSessionKeyPair(h(v.sk));
    expect(hex(kp.publicKey)).toBe(v.pk);
    const { cipherText, sharedSecret } = ml_kem768_x25519.encapsulate(h(v.pk), h(v.eseed));
    expect(hex(cipherText)).toBe(v.ct);
    expect(hex(sharedSecret)).toBe(v.ss);
    expect(hex(ml_kem768_x25519.decapsulate(h(v.ct), h(v.sk)))).toBe(v.ss);
  });
  it('@hpke/hybridkem-x-wing (the HPKE KEM): same public key, decapsulates to the same secret', async () => {
    const xw = new XWing();
    const kp = await xw.generateKeyPairDerand(h(v.sk));
    expect(hex(await xw.serializePublicKey(kp.publicKey))).toBe(v.pk);
    expect(hex(await xw.decap({ enc: h(v.ct).buffer, recipientKey: kp.privateKey }))).toBe(v.ss);
  });
});
