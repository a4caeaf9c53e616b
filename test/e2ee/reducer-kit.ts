/**
 * Test support for driving the membership reducer (client/src/e2ee/membership.ts) by hand: people with real
 * identities and sessions, their real announcements, announce-backs and liveness proofs, and the state of a member
 * that joined. Nothing here replaces the reducer; it only builds the messages a member would send.
 *
 * Test helper only: never imported by product code.
 */
import { expect } from 'vitest';
import { concat } from '../../client/src/e2ee/bytes.ts';
import { newSession, type Identity, type Session } from '../../client/src/e2ee/identity.ts';
import { createIdentity } from '../../client/src/e2ee/identity-key.ts';
import type { InviteKeys } from '../../client/src/e2ee/invite.ts';
import { encodeSignedAnnouncement, proveLiveness } from '../../client/src/e2ee/membership-messages.ts';
import { initialMembershipState, reduce, type MembershipConfig, type MembershipState, type ReduceResult } from '../../client/src/e2ee/membership.ts';
import { encodeRelay } from '../../client/src/e2ee/relay-framing.ts';

export interface Person {
  memberId: string;
  identity: Identity;
  session: Session;
}

export function reducerKit(roomId: string, keys: InviteKeys) {
  const config: MembershipConfig = { roomId, membershipMacKey: keys.membershipMacKey };
  const person = async (memberId: string, room = roomId): Promise<Person> => {
    const identity = await createIdentity();
    return { memberId, identity, session: await newSession(identity, room, memberId) };
  };
  /** The state of `p` right after its local join (`existing`: the members the server listed). */
  const joined = (p: Person, existing: string[] = [], now = 0): MembershipState => localJoin(p, existing, now).state;
  const localJoin = (p: Person, existing: string[] = [], now = 0): ReduceResult =>
    reduce(config, initialMembershipState(), {
      type: 'local-join',
      now,
      existingMemberIds: existing,
      self: { memberId: p.memberId, identityPublicKey: p.identity.publicKey, sessionPublicKey: p.session.keyPair.publicKey, joinNonce: p.session.announcement.joinNonce },
    });
  /** `p`'s announcement as a relay message (0x41). */
  const annBytes = (p: Person, macKey = keys.membershipMacKey): Uint8Array => encodeRelay('announcement', encodeSignedAnnouncement(p.session, macKey));
  /** `signer`'s liveness proof, claimed for `responder`'s session (default: the signer's own), for `challenger`'s session and nonce. */
  const proofOf = (signer: Person, challenger: Person, responder: Person = signer): Promise<Uint8Array> =>
    proveLiveness(signer.identity, {
      roomId,
      challenger: { memberId: challenger.memberId, sessionPublicKey: challenger.session.keyPair.publicKey, joinNonce: challenger.session.announcement.joinNonce },
      responder: { memberId: responder.memberId, sessionPublicKey: responder.session.keyPair.publicKey },
    });
  /** `p`'s answer to `to`'s announcement (0x42): its announcement and its proof for `to`. */
  const backBytes = async (p: Person, to: Person, proof?: Uint8Array): Promise<Uint8Array> =>
    encodeRelay('announce-back', concat(encodeSignedAnnouncement(p.session, keys.membershipMacKey), proof ?? (await proofOf(p, to))));
  /** `p`'s liveness proof for `to` alone (0x50). */
  const proofBytes = async (p: Person, to: Person, proof?: Uint8Array): Promise<Uint8Array> => encodeRelay('liveness-proof', proof ?? (await proofOf(p, to)));
  const relay = (s: MembershipState, from: string, bytes: Uint8Array, now = 1): ReduceResult => reduce(config, s, { type: 'relay', now, from, bytes });
  /** `p` announces to `self` (whose state is `s`), is answered, and proves liveness: the result of the proof. */
  const admitted = async (s: MembershipState, self: Person, p: Person, now = 1): Promise<ReduceResult> => {
    const answered = relay(s, p.memberId, annBytes(p), now);
    expect(answered.effects).toContainEqual(expect.objectContaining({ kind: 'announce-back', to: p.memberId }));
    return relay(answered.state, p.memberId, await proofBytes(p, self), now);
  };
  return { config, person, joined, localJoin, annBytes, proofOf, backBytes, proofBytes, relay, admitted };
}
