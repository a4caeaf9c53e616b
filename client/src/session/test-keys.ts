/**
 * TEST BUILD ONLY: the key recorder behind `?e2ee-test-hooks=1`. It keeps this browser's own send keys and the
 * receive keys it was given, as hex, so the e2e tests can decrypt what the server tap recorded.
 *
 * It exists only in the bundle built with `--mode test-hooks` (client/vite.config.ts, into `.cache/client-test/`):
 * every use is guarded by the build-time constant `__SEALED_MEET_TEST_HOOKS__`, which is the literal `false` in
 * every other build, so the production bundle (client/dist) has neither this class nor the query parameter nor
 * `__meet.exportKeysForTest` (test/build/test-hooks.test.ts searches the built files). Even in the test build a
 * page opened without the parameter never creates one.
 *
 * @module
 */
import { hex } from '@scure/base';
import type { KeyLog } from './key-bridge.ts';

declare global {
  /** Build-time constant (Vite `define`): true only in the TEST build, false in production. */
  const __SEALED_MEET_TEST_HOOKS__: boolean;
}

/** Keys of this browser exported for tests. Hex strings. */
export interface TestKeyExport {
  peerId: string | null;
  senderIndex: number | null;
  send: { kid: string; key: string } | null;
  /** Every send key this session used (initial, ratchets, fresh keys), oldest first. */
  sendHistory: { kid: string; key: string }[];
  receive: { peerId: string; senderIndex: number; kid: string; key: string }[];
}

/** What the call knows at export time: our member id, our sender index and a copy of the current send key. */
export interface TestKeySource {
  peerId: string | null;
  senderIndex: number | null;
  current: { kid: bigint; baseKey: Uint8Array } | null;
}


export class TestKeyRecorder implements KeyLog {
  readonly #send: { kid: string; key: string }[] = [];
  readonly #receive: { peerId: string; senderIndex: number; kid: string; key: string }[] = [];
  readonly #source: () => TestKeySource;

  constructor(source: () => TestKeySource) {
    this.#source = source;
  }

  send(kid: bigint, baseKey: Uint8Array): void {
    this.#send.push({ kid: kid.toString(), key: hex.encode(baseKey) });
  }

  receive(memberId: string, senderIndex: number, kid: bigint, baseKey: Uint8Array): void {
    this.#receive.push({ peerId: memberId, senderIndex, kid: kid.toString(), key: hex.encode(baseKey) });
  }

  export(): TestKeyExport {
    const { peerId, senderIndex, current } = this.#source();
    const send = current ? { kid: current.kid.toString(), key: hex.encode(current.baseKey) } : null;
    current?.baseKey.fill(0);
    return { peerId, senderIndex, send, sendHistory: [...this.#send], receive: [...this.#receive] };
  }
}
