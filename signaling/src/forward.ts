/**
 * Which room and peer events reach a member's socket, and in what form, as tables: each entry names an
 * SFU event, which goes out as the socket event of the same name with exactly the wire fields listed
 * (the type checks the list is the whole wire payload, no more, no less), and `othersOnly` skips the
 * events about the member itself (its own join, producers). `forward()` subscribes a member to a
 * table and returns the unsubscribe, built from the same entries.
 */
import type { PeerEvents } from '../../sfu/src/Peer.ts';
import type { RoomEvents } from '../../sfu/src/Room.ts';
import type { EventMap, TypedEmitter } from '../../sfu/src/TypedEmitter.ts';
import type { ServerToClientEvents } from './protocol.ts';

type SocketEvent = keyof ServerToClientEvents;
type WirePayload<K extends SocketEvent> = Parameters<ServerToClientEvents[K]>[0];

interface Forward<K extends SocketEvent> {
  /** Every field of the wire payload (copied from the SFU event's payload, nothing else is). */
  fields: { [F in keyof WirePayload<K>]-?: true };
  /** Not sent when the event's `peerId` is the member's own. */
  othersOnly?: true;
}

/** SFU events whose payload carries at least the wire fields of the socket event of the same name. */
export type ForwardTable<E extends EventMap> = {
  [K in keyof E & SocketEvent]?: E[K] extends [infer P] ? (P extends WirePayload<K> ? Forward<K> : never) : never;
};

const PRODUCER_STATE = { fields: { peerId: true, producerId: true }, othersOnly: true } as const;
const CONSUMER_STATE = { fields: { consumerId: true } } as const;

export const ROOM_EVENTS: ForwardTable<RoomEvents> = {
  peerJoined: { fields: { peerId: true }, othersOnly: true },
  peerLeft: { fields: { peerId: true }, othersOnly: true },
  newProducer: { fields: { peerId: true, producerId: true, kind: true, source: true, paused: true }, othersOnly: true },
  producerClosed: PRODUCER_STATE,
  producerPaused: PRODUCER_STATE,
  producerResumed: PRODUCER_STATE,
  activeSpeaker: { fields: { peerId: true } },
};

/** Events about the member's own consumers. */
export const PEER_EVENTS: ForwardTable<PeerEvents> = {
  consumerClosed: CONSUMER_STATE,
  consumerPaused: CONSUMER_STATE,
  consumerResumed: CONSUMER_STATE,
};

type LooseEmitter = { on(event: string, fn: (info: Record<string, unknown>) => void): unknown; off: LooseEmitter['on'] };

/** Subscribes member `memberId` to `table` on `emitter`, sending through `send`; returns the unsubscribe. */
export function forward<E extends EventMap>(
  emitter: TypedEmitter<E>,
  table: ForwardTable<E>,
  memberId: string,
  send: (event: SocketEvent, payload: Record<string, unknown>) => void,
): () => void {
  const loose = emitter as unknown as LooseEmitter;
  const offs = Object.entries(table).map(([event, rule]: [string, { fields: object; othersOnly?: true }]) => {
    const fields = Object.keys(rule.fields);
    const listener = (info: Record<string, unknown>): void => {
      if (rule.othersOnly && info['peerId'] === memberId) return;
      send(event as SocketEvent, Object.fromEntries(fields.map((f) => [f, info[f]])));
    };
    loose.on(event, listener);
    return () => void loose.off(event, listener);
  });
  return () => {
    for (const off of offs) off();
  };
}
