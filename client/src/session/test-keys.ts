/**
 * TEST-ONLY key recorder behind `?e2ee-test-hooks=1`: keeps this browser's own send keys and the receive keys it
 * was given, so the e2e tests can decrypt what the server tap recorded. Constructed only when the page asked for
 * test hooks; a normal call never creates one.
 *
 * @module
 */
import type { KeyLog } from './key-bridge.ts';

/** Keys of this browser exported for tests. Hex strings. */
export interface TestKeyExport {
  peerId: string | null;
  senderIndex: number | null;
  send: { kid: string; key: string } | null;
  /** Every send key this session used (initial, ratchets, fresh keys), oldest first. */
  sendHistory: { kid: string; key: string }[];
  receive: { peerId: string; senderIndex: number; kid: string; key: string }[];
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

export class TestKeyRecorder implements KeyLog {
  readonly #send: { kid: string; key: string }[] = [];
  readonly #receive: { peerId: string; senderIndex: number; kid: string; key: string }[] = [];

  send(kid: bigint, baseKey: Uint8Array): void {
    this.#send.push({ kid: kid.toString(), key: hex(baseKey) });
  }

  receive(memberId: string, senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    this.#receive.push({ peerId: memberId, senderIndex, kid: kid.toString(), key: hex(baseKey) });
  }

  export(peerId: string | null, senderIndex: number | null, current: { kid: bigint; baseKey: Uint8Array } | null): TestKeyExport {
    const send = current ? { kid: current.kid.toString(), key: hex(current.baseKey) } : null;
    current?.baseKey.fill(0);
    return { peerId, senderIndex, send, sendHistory: [...this.#send], receive: [...this.#receive] };
  }
}
