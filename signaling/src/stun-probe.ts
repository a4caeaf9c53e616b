/**
 * `npm run doctor`'s TURN/STUN probe: one real STUN request to a `stun:`/`turn:`/`turns:` URL over its own
 * transport (UDP, TCP or TLS), with a short timeout, to tell "reachable" from "no answer" in plain words.
 *
 * - `stun:`/`stuns:` get a Binding request (RFC 8489 §3); any answer with our transaction id counts.
 * - `turn:`/`turns:` get an Allocate request without credentials (RFC 8656 §7.1): a TURN server answers it with
 *   401 Unauthorized and its realm and nonce even when it is set to ignore plain STUN (coturn `no-stun`).
 *   With credentials (`auth`), the 401's realm and nonce are used for an authenticated Allocate (long-term
 *   credential mechanism, RFC 8489 §9.2), which shows whether the server accepts our TURN credentials; a
 *   granted allocation is released at once (Refresh with LIFETIME 0, RFC 8656 §7.2).
 *
 * No npm STUN client is a dependency; the probe needs only the 20-byte header, four attributes and
 * MESSAGE-INTEGRITY, written here from the RFCs. Credentials are only used to compute MESSAGE-INTEGRITY and
 * never appear in a result.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as tls from 'node:tls';

/** RFC 8489 §5: the magic cookie. */
const MAGIC_COOKIE = 0x2112a442;
const HEADER = 20;
// RFC 8489 §18.2 / RFC 8656 §18: methods and classes.
const BINDING = 0x0001;
const ALLOCATE = 0x0003;
const REFRESH = 0x0004;
const CLASS_SUCCESS = 0x0100;
const CLASS_ERROR = 0x0110;
// RFC 8489 §18.3 / RFC 8656 §18: attributes.
const ATTR_USERNAME = 0x0006;
const ATTR_MESSAGE_INTEGRITY = 0x0008;
const ATTR_ERROR_CODE = 0x0009;
const ATTR_LIFETIME = 0x000d;
const ATTR_REALM = 0x0014;
const ATTR_NONCE = 0x0015;
const ATTR_REQUESTED_TRANSPORT = 0x0019;

export type IceScheme = 'stun' | 'stuns' | 'turn' | 'turns';
export type IceTransport = 'udp' | 'tcp' | 'tls';

export interface IceTarget {
  scheme: IceScheme;
  host: string;
  port: number;
  transport: IceTransport;
}

/** RFC 7064 §3.1 / RFC 7065 §3.1: `scheme:host[:port][?transport=udp|tcp]`, IPv6 hosts in brackets. */
export function parseIceUrl(url: string): IceTarget {
  const m = /^(stuns?|turns?):(\[[0-9a-fA-F:.]+\]|[^:?\s[\]]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/i.exec(url.trim());
  if (!m) throw new Error(`"${url}" is not a stun:/turn:/turns: URL of the form turn:host[:port][?transport=udp|tcp]`);
  const scheme = m[1]!.toLowerCase() as IceScheme;
  const secure = scheme === 'stuns' || scheme === 'turns';
  const port = m[3] ? Number(m[3]) : secure ? 5349 : 3478;
  if (port < 1 || port > 65535) throw new Error(`"${url}": port ${port} is out of range`);
  const asked = m[4]?.toLowerCase();
  if (secure && asked === 'udp') throw new Error(`"${url}": ${scheme}: over UDP (DTLS) is not something browsers use`);
  const transport: IceTransport = secure ? 'tls' : asked === 'tcp' ? 'tcp' : 'udp';
  return { scheme, host: m[2]!.replace(/^\[|\]$/g, ''), port, transport };
}

export interface ProbeOptions {
  timeoutMs: number;
  /** TURN credentials (from the shared secret): also try an authenticated Allocate. */
  auth?: { username: string; password: string };
  /** Extra trusted CA certificates for turns: (default: the system store and NODE_EXTRA_CA_CERTS). */
  ca?: string | Buffer;
}

export type ProbeResult =
  | {
      reachable: true;
      rttMs: number;
      /** What answered: a Binding success/error, or the 401 to an anonymous Allocate. */
      answer: string;
      /** turns:/stuns: only: why the server's certificate is not trusted, if it is not. */
      certProblem?: string;
      /** With `auth`: whether the server granted an allocation with these credentials. */
      auth?: { accepted: true } | { accepted: false; error: string };
    }
  | { reachable: false; reason: string };

interface Message {
  type: number;
  txid: Buffer;
  attrs: Map<number, Buffer>;
}

function attr(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(value.length, 2);
  const pad = Buffer.alloc((4 - (value.length % 4)) % 4);
  return Buffer.concat([head, value, pad]);
}

/** RFC 8489 §14.5: MESSAGE-INTEGRITY is HMAC-SHA1 over the message up to it, the length field counting it. */
function encode(type: number, txid: Buffer, attrs: Buffer[], integrityKey?: Buffer): Buffer {
  const body = Buffer.concat(attrs);
  const head = Buffer.alloc(HEADER);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(body.length + (integrityKey ? 24 : 0), 2);
  head.writeUInt32BE(MAGIC_COOKIE, 4);
  txid.copy(head, 8);
  const msg = Buffer.concat([head, body]);
  if (!integrityKey) return msg;
  const mac = createHmac('sha1', integrityKey).update(msg).digest();
  return Buffer.concat([msg, attr(ATTR_MESSAGE_INTEGRITY, mac)]);
}

function decode(buf: Buffer): Message | undefined {
  if (buf.length < HEADER || (buf[0]! & 0xc0) !== 0 || buf.readUInt32BE(4) !== MAGIC_COOKIE) return undefined;
  const len = buf.readUInt16BE(2);
  if (buf.length < HEADER + len) return undefined;
  const attrs = new Map<number, Buffer>();
  for (let off = HEADER; off + 4 <= HEADER + len; ) {
    const t = buf.readUInt16BE(off);
    const l = buf.readUInt16BE(off + 2);
    if (off + 4 + l > HEADER + len) break;
    if (!attrs.has(t)) attrs.set(t, buf.subarray(off + 4, off + 4 + l));
    off += 4 + l + ((4 - (l % 4)) % 4);
  }
  return { type: buf.readUInt16BE(0), txid: buf.subarray(8, 20), attrs };
}

/** RFC 8489 §14.8: ERROR-CODE → "401 Unauthorized". */
function errorOf(m: Message): string {
  const v = m.attrs.get(ATTR_ERROR_CODE);
  if (!v || v.length < 4) return 'error without code';
  return `${(v[2]! & 0x7) * 100 + v[3]!} ${v.subarray(4).toString('utf8')}`.trim();
}

const requestedTransportUdp = (): Buffer => attr(ATTR_REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));

/** A request/response channel over UDP, TCP or TLS (STUN over a stream is framed by its own length field). */
interface Channel {
  transact(msg: Buffer, txid: Buffer, deadline: number): Promise<Message>;
  certProblem?: string;
  close(): void;
}

function withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(what)), Math.max(0, deadline - Date.now()));
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e)),
    );
  });
}

function waiterSet(): { waiters: Map<string, (m: Message) => void>; deliver(m: Message): void } {
  const waiters = new Map<string, (m: Message) => void>();
  return {
    waiters,
    deliver(m) {
      const key = m.txid.toString('hex');
      waiters.get(key)?.(m);
      waiters.delete(key);
    },
  };
}

async function udpChannel(t: IceTarget, deadline: number): Promise<Channel> {
  const sock = dgram.createSocket(net.isIPv6(t.host) ? 'udp6' : 'udp4');
  const { waiters, deliver } = waiterSet();
  let failure: Error | undefined;
  sock.on('message', (buf) => {
    const m = decode(buf);
    if (m) deliver(m);
  });
  // An ICMP port unreachable surfaces as ECONNREFUSED on a connected UDP socket.
  sock.on('error', (e) => (failure = e));
  await withDeadline(new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.connect(t.port, t.host, () => resolve());
  }), deadline, 'timed out resolving the host');
  return {
    transact(msg, txid, dl) {
      const key = txid.toString('hex');
      const answer = new Promise<Message>((resolve, reject) => {
        waiters.set(key, resolve);
        const resend = (n: number): void => {
          if (failure) return reject(failure);
          if (!waiters.has(key)) return;
          sock.send(msg, (e) => e && reject(e));
          // RFC 8489 §6.2.1 retransmits; a short fixed schedule is enough for a probe.
          if (n < 4) setTimeout(() => resend(n + 1), 250 * 2 ** n).unref();
        };
        resend(0);
        sock.once('error', reject);
      });
      return withDeadline(answer, dl, 'no answer (timed out)').finally(() => waiters.delete(key));
    },
    close: () => sock.close(),
  };
}

async function streamChannel(t: IceTarget, deadline: number, opts: ProbeOptions): Promise<Channel> {
  let certProblem: string | undefined;
  const connect = (verify: boolean): Promise<net.Socket> =>
    withDeadline(
      new Promise<net.Socket>((resolve, reject) => {
        const s =
          t.transport === 'tls'
            ? tls.connect({
                host: t.host,
                port: t.port,
                rejectUnauthorized: verify,
                ...(net.isIP(t.host) ? {} : { servername: t.host }),
                ...(opts.ca ? { ca: [...tls.rootCertificates, opts.ca.toString()] } : {}),
              })
            : net.connect({ host: t.host, port: t.port });
        s.once(t.transport === 'tls' ? 'secureConnect' : 'connect', () => resolve(s));
        s.once('error', (e) => (s.destroy(), reject(e)));
      }),
      deadline,
      'timed out connecting',
    );
  let sock: net.Socket;
  try {
    sock = await connect(true);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (t.transport !== 'tls' || !/CERT|SELF_SIGNED|VERIFY|ALTNAME|ISSUER/.test(code)) throw e;
    certProblem = `${code}: ${(e as Error).message}`;
    sock = await connect(false);
  }
  const { waiters, deliver } = waiterSet();
  let pending = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= HEADER) {
      const total = HEADER + pending.readUInt16BE(2);
      if (pending.length < total) break;
      const m = decode(pending.subarray(0, total));
      pending = pending.subarray(total);
      if (m) deliver(m);
    }
  });
  sock.on('error', () => undefined);
  return {
    certProblem,
    transact(msg, txid, dl) {
      const key = txid.toString('hex');
      const answer = new Promise<Message>((resolve, reject) => {
        waiters.set(key, resolve);
        sock.once('close', () => reject(new Error('the server closed the connection without answering')));
        sock.write(msg);
      });
      return withDeadline(answer, dl, 'no answer (timed out)').finally(() => waiters.delete(key));
    },
    close: () => sock.destroy(),
  };
}

function plainReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused (nothing listens on that port)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name does not resolve';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to the host';
    case 'ECONNRESET':
      return 'the connection was reset';
    default:
      return err.code ? `${err.code}: ${err.message}` : err.message;
  }
}

/** Sends one real STUN request to `url` and reports whether, and how, the server answered. */
export async function probeIceServer(url: string, opts: ProbeOptions): Promise<ProbeResult> {
  const target = parseIceUrl(url);
  const start = Date.now();
  const deadline = start + opts.timeoutMs;
  let ch: Channel | undefined;
  try {
    ch = target.transport === 'udp' ? await udpChannel(target, deadline) : await streamChannel(target, deadline, opts);
    const isTurn = target.scheme === 'turn' || target.scheme === 'turns';
    const txid = randomBytes(12);
    const first = await ch.transact(
      encode(isTurn ? ALLOCATE : BINDING, txid, isTurn ? [requestedTransportUdp()] : []),
      txid,
      deadline,
    );
    const rttMs = Date.now() - start;
    const cls = first.type & 0x0110;
    const answer = cls === CLASS_SUCCESS ? 'success' : cls === CLASS_ERROR ? errorOf(first) : `message type 0x${first.type.toString(16)}`;
    const result: Extract<ProbeResult, { reachable: true }> = { reachable: true, rttMs, answer };
    if (ch.certProblem) result.certProblem = ch.certProblem;
    if (isTurn && opts.auth) result.auth = await authenticatedAllocate(ch, first, opts.auth, deadline);
    return result;
  } catch (e) {
    return { reachable: false, reason: plainReason(e) };
  } finally {
    ch?.close();
  }
}

/** RFC 8489 §9.2.2: long-term credentials, key = MD5(username ":" realm ":" password). */
async function authenticatedAllocate(
  ch: Channel,
  challenge: Message,
  auth: { username: string; password: string },
  deadline: number,
): Promise<{ accepted: true } | { accepted: false; error: string }> {
  const realm = challenge.attrs.get(ATTR_REALM);
  const nonce = challenge.attrs.get(ATTR_NONCE);
  if (!realm || !nonce) return { accepted: false, error: 'the server sent no realm/nonce to authenticate with' };
  const key = createHash('md5').update(`${auth.username}:${realm.toString('utf8')}:${auth.password}`).digest();
  const creds = [attr(ATTR_USERNAME, Buffer.from(auth.username, 'utf8')), attr(ATTR_REALM, realm), attr(ATTR_NONCE, nonce)];
  try {
    const txid = randomBytes(12);
    const res = await ch.transact(encode(ALLOCATE, txid, [requestedTransportUdp(), ...creds], key), txid, deadline);
    if ((res.type & 0x0110) !== CLASS_SUCCESS) return { accepted: false, error: errorOf(res) };
    // Release the allocation at once (RFC 8656 §7.2: a Refresh with LIFETIME 0 deletes it).
    const refresh = randomBytes(12);
    const lifetime = Buffer.alloc(4);
    await ch.transact(encode(REFRESH, refresh, [attr(ATTR_LIFETIME, lifetime), ...creds], key), refresh, deadline).catch(() => undefined);
    return { accepted: true };
  } catch (e) {
    return { accepted: false, error: plainReason(e) };
  } finally {
    key.fill(0);
  }
}
