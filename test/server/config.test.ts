/** Configuration from env: defaults, derivations and clear errors. */
import { describe, expect, it } from 'vitest';
import { ConfigError, firstExternalIPv4, iceServersOf, loadConfig, localMediaWarning, resolveConfig } from '../../sfu/src/config.ts';

describe('config', () => {
  it('defaults for localhost', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 3000,
      host: 'localhost',
      bindHost: '127.0.0.1',
      isLocal: true,
      listenIp: '127.0.0.1',
      announcedIp: '127.0.0.1',
      rtcMode: 'server',
      rtcPort: 40000,
      rtcMinPort: 40000,
      rtcMaxPort: 49999,
      roomCap: 50,
      routerMaxConsumers: 800,
      logLevel: 'info',
      audioLevelExt: true,
      turnUrls: [],
      rateLimitPerSec: 50,
      rateLimitBurst: 100,
    });
    expect(c.workers).toBeGreaterThanOrEqual(1);
    expect(c.clientDir).toMatch(/client[/\\]dist$/);
    expect(iceServersOf(c)).toEqual([]);
  });

  it('reads every variable', () => {
    const c = loadConfig({
      PORT: '8443',
      HOST: '0.0.0.0',
      LISTEN_IP: '0.0.0.0',
      ANNOUNCED_IP: '203.0.113.7',
      RTC_MODE: 'range',
      RTC_PORT: '45000',
      RTC_MIN_PORT: '41000',
      RTC_MAX_PORT: '41100',
      WORKERS: '3',
      ROOM_CAP: '8',
      ROUTER_MAX_CONSUMERS: '120',
      LOG_LEVEL: 'warn',
      TURN_URLS: 'turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349',
      TURN_USERNAME: 'u',
      TURN_CREDENTIAL: 'p',
      AUDIO_LEVEL_EXT: 'off',
      RATE_LIMIT_PER_SEC: '20',
      RATE_LIMIT_BURST: '40',
      ALLOWED_ORIGINS: 'https://meet.example.org, http://localhost:5173',
    });
    expect(c).toMatchObject({
      port: 8443,
      isLocal: false,
      bindHost: '0.0.0.0',
      listenIp: '0.0.0.0',
      announcedIp: '203.0.113.7',
      rtcMode: 'range',
      rtcPort: 45000,
      rtcMinPort: 41000,
      rtcMaxPort: 41100,
      workers: 3,
      roomCap: 8,
      routerMaxConsumers: 120,
      logLevel: 'warn',
      audioLevelExt: false,
      rateLimitPerSec: 20,
      rateLimitBurst: 40,
      allowedOrigins: ['https://meet.example.org', 'http://localhost:5173'],
    });
    expect(iceServersOf(c)).toEqual([
      { urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'], username: 'u', credential: 'p' },
    ]);
  });

  it('metadata and quota settings: defaults, env names, HIDE_VOICE_ACTIVITY turns the audio-level extension off', () => {
    expect(loadConfig({})).toMatchObject({
      hideVoiceActivity: false,
      relayBytesPerSec: 4_000_000,
      relayBurstBytes: 32_000_000,
      maxSocketsPerAddress: 64,
      maxRoomsPerAddress: 16,
      trustProxy: false,
    });
    const c = loadConfig({
      HIDE_VOICE_ACTIVITY: 'on',
      RELAY_BYTES_PER_SEC: '1000000',
      RELAY_BURST_BYTES: '65536',
      MAX_SOCKETS_PER_ADDRESS: '5',
      MAX_ROOMS_PER_ADDRESS: '2',
      TRUST_PROXY: 'on',
    });
    expect(c).toMatchObject({
      hideVoiceActivity: true,
      audioLevelExt: false,
      relayBytesPerSec: 1_000_000,
      relayBurstBytes: 65_536,
      maxSocketsPerAddress: 5,
      maxRoomsPerAddress: 2,
      trustProxy: true,
    });
    expect(loadConfig({ HIDE_VOICE_ACTIVITY: 'on', AUDIO_LEVEL_EXT: 'off' }).audioLevelExt).toBe(false);
    expect(() => loadConfig({ HIDE_VOICE_ACTIVITY: 'on', AUDIO_LEVEL_EXT: 'on' })).toThrow(/AUDIO_LEVEL_EXT=on contradicts HIDE_VOICE_ACTIVITY=on/);
    for (const [env, re] of [
      [{ RELAY_BURST_BYTES: '65535' }, /RELAY_BURST_BYTES/],
      [{ RELAY_BYTES_PER_SEC: '0' }, /RELAY_BYTES_PER_SEC/],
      [{ MAX_SOCKETS_PER_ADDRESS: '0' }, /MAX_SOCKETS_PER_ADDRESS/],
      [{ MAX_ROOMS_PER_ADDRESS: 'many' }, /MAX_ROOMS_PER_ADDRESS/],
      [{ TRUST_PROXY: 'maybe' }, /TRUST_PROXY/],
      [{ HIDE_VOICE_ACTIVITY: 'sometimes' }, /HIDE_VOICE_ACTIVITY/],
    ] as const) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(re);
    }
  });

  it('AUDIO_LEVEL_EXT accepts on/off/true/false/1/0', () => {
    for (const [v, want] of [['on', true], ['OFF', false], ['true', true], ['0', false], ['1', true], ['no', false]] as const) {
      expect(loadConfig({ AUDIO_LEVEL_EXT: v }).audioLevelExt).toBe(want);
    }
  });

  it('HOST=::1 and 127.0.0.1 count as local', () => {
    expect(loadConfig({ HOST: '::1' })).toMatchObject({ isLocal: true, bindHost: '::1', announcedIp: '127.0.0.1' });
    expect(loadConfig({ HOST: '127.0.0.1' })).toMatchObject({ isLocal: true, bindHost: '127.0.0.1' });
  });

  it('METRICS_LISTEN (off by default) and DRAIN_TIMEOUT (30 s by default)', () => {
    expect(loadConfig({})).toMatchObject({ metricsListen: undefined, drainTimeout: 30 });
    expect(loadConfig({ METRICS_LISTEN: '127.0.0.1:9464' }).metricsListen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(loadConfig({ METRICS_LISTEN: 'localhost:9464' }).metricsListen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(loadConfig({ METRICS_LISTEN: '[::1]:9464' }).metricsListen).toEqual({ host: '::1', port: 9464 });
    expect(loadConfig({ METRICS_LISTEN: '10.0.0.5:9100' }).metricsListen).toEqual({ host: '10.0.0.5', port: 9100 });
    expect(loadConfig({ METRICS_LISTEN: 'off' }).metricsListen).toBeUndefined();
    expect(loadConfig({ METRICS_LISTEN: '' }).metricsListen).toBeUndefined();
    expect(loadConfig({ DRAIN_TIMEOUT: '0' }).drainTimeout).toBe(0);
    expect(loadConfig({ DRAIN_TIMEOUT: '120' }).drainTimeout).toBe(120);
    const c = loadConfig({ METRICS_LISTEN: '[::1]:9464', DRAIN_TIMEOUT: '5' });
    expect(resolveConfig(c)).toEqual(c);
    for (const [env, re] of [
      [{ METRICS_LISTEN: '9464' }, /METRICS_LISTEN: "9464" is not ip:port/],
      [{ METRICS_LISTEN: 'on' }, /METRICS_LISTEN: "on" is not ip:port/],
      [{ METRICS_LISTEN: 'metrics.example.org:9464' }, /METRICS_LISTEN: "metrics\.example\.org:9464" is not ip:port/],
      [{ METRICS_LISTEN: '127.0.0.1:70000' }, /METRICS_LISTEN: "127\.0\.0\.1:70000" is not ip:port/],
      [{ METRICS_LISTEN: '::1:9464' }, /METRICS_LISTEN: "::1:9464" is not ip:port/],
      [{ METRICS_LISTEN: '127.0.0.1:3000' }, /METRICS_LISTEN: port 3000 is the public PORT; metrics need a separate listen address/],
      [{ METRICS_LISTEN: '0.0.0.0:8443', PORT: '8443' }, /METRICS_LISTEN: port 8443 is the public PORT/],
      [{ DRAIN_TIMEOUT: '-1' }, /DRAIN_TIMEOUT/],
      [{ DRAIN_TIMEOUT: '3601' }, /DRAIN_TIMEOUT/],
      [{ DRAIN_TIMEOUT: '1.5' }, /DRAIN_TIMEOUT/],
      [{ DRAIN_TIMEOUT: 'soon' }, /DRAIN_TIMEOUT/],
    ] as const) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(re);
    }
  });

  it('cluster mode: REDIS_URL (off by default), NODE_ID (random 8 hex per process by default), CLUSTER_LEASE (5 s default)', () => {
    const single = loadConfig({});
    expect(single).toMatchObject({ redisUrl: undefined, clusterLease: 5 });
    expect(single.nodeId).toMatch(/^[0-9a-f]{8}$/);
    expect(loadConfig({}).nodeId).not.toBe(single.nodeId);
    const c = loadConfig({ REDIS_URL: 'rediss://user:pw@redis.internal:6380/2', NODE_ID: 'node-a.1_x', CLUSTER_LEASE: '10' });
    expect(c).toMatchObject({ redisUrl: 'rediss://user:pw@redis.internal:6380/2', nodeId: 'node-a.1_x', clusterLease: 10 });
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).redisUrl).toBe('redis://127.0.0.1:6379');
    expect(loadConfig({ REDIS_URL: 'redis://[::1]:6379/' }).redisUrl).toBe('redis://[::1]:6379/');
    expect(resolveConfig(c)).toEqual(c);
    for (const [env, re] of [
      [{ REDIS_URL: 'http://redis.internal:6379' }, /REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/],
      [{ REDIS_URL: 'redis.internal:6379' }, /REDIS_URL: must be a redis/],
      [{ REDIS_URL: 'redis://' }, /REDIS_URL: must be a redis/],
      [{ REDIS_URL: 'redis://h:6379/db?password=x' }, /REDIS_URL: must be a redis/],
      [{ NODE_ID: 'node a' }, /NODE_ID: must be 1-40 characters/],
      [{ NODE_ID: 'x'.repeat(41) }, /NODE_ID: must be 1-40 characters/],
      [{ NODE_ID: 'nöde' }, /NODE_ID/],
      [{ CLUSTER_LEASE: '1' }, /CLUSTER_LEASE/],
      [{ CLUSTER_LEASE: '61' }, /CLUSTER_LEASE/],
      [{ CLUSTER_LEASE: '2.5' }, /CLUSTER_LEASE/],
    ] as const) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(re);
    }
    // A bad URL's message never repeats it (it may carry a password).
    expect(() => loadConfig({ REDIS_URL: 'http://user:s3cret-pw@h:6379' })).toThrow(/^(?![\s\S]*s3cret-pw)/);
  });

  it('TURN: TURN_SECRET / TURN_TTL (600 s default) / ICE_TRANSPORT_POLICY (all by default); static credentials stay an alternative', () => {
    expect(loadConfig({})).toMatchObject({ turnSecret: undefined, turnTtl: 600, iceTransportPolicy: 'all' });
    const secret = 'a'.repeat(16);
    const c = loadConfig({
      TURN_URLS: 'turn:t.example.org:3478?transport=udp,turn:t.example.org:3478?transport=tcp,turns:t.example.org:443?transport=tcp',
      TURN_SECRET: secret,
      TURN_TTL: '60',
      ICE_TRANSPORT_POLICY: 'relay',
    });
    expect(c).toMatchObject({ turnSecret: secret, turnTtl: 60, iceTransportPolicy: 'relay', turnUsername: undefined, turnCredential: undefined });
    expect(loadConfig({ TURN_URLS: 'turn:t:3478', TURN_SECRET: secret, TURN_TTL: '3600' }).turnTtl).toBe(3600);
    // A TURN server without the REST scheme: fixed credentials for everyone.
    const s = loadConfig({ TURN_URLS: 'turn:t:3478', TURN_USERNAME: 'u', TURN_CREDENTIAL: 'p', ICE_TRANSPORT_POLICY: 'all' });
    expect(s).toMatchObject({ turnSecret: undefined, turnUsername: 'u', turnCredential: 'p', iceTransportPolicy: 'all' });
    // stun: alone needs no credentials; a full Config re-resolves to itself.
    expect(loadConfig({ TURN_URLS: 'stun:t:3478' }).turnUrls).toEqual(['stun:t:3478']);
    expect(resolveConfig(c)).toEqual(c);
  });

  it('a specific LISTEN_IP off localhost is announced as itself', () => {
    expect(loadConfig({ HOST: '10.1.2.3', LISTEN_IP: '10.1.2.3' })).toMatchObject({ listenIp: '10.1.2.3', announcedIp: '10.1.2.3' });
  });

  it('LOCAL_LAN_MEDIA (default on): a local HOST also uses the first non-loopback IPv4, for Firefox', () => {
    const lan = firstExternalIPv4();
    expect(lan, 'this machine has a non-loopback IPv4 (the LOCAL_LAN_MEDIA tests need one)').toBeDefined();
    expect(loadConfig({})).toMatchObject({ localLanMedia: true, localLanIp: lan, listenIp: '127.0.0.1', announcedIp: '127.0.0.1' });
    expect(loadConfig({ RTC_MODE: 'range' })).toMatchObject({ localLanIp: lan });
    expect(loadConfig({ LOCAL_LAN_MEDIA: 'off' })).toMatchObject({ localLanMedia: false, localLanIp: undefined });
    expect(loadConfig({ LOCAL_LAN_IP: lan! })).toMatchObject({ localLanMedia: true, localLanIp: lan });
    // Not on a public HOST, nor when the admin chose the media address themselves.
    expect(loadConfig({ HOST: '0.0.0.0', ANNOUNCED_IP: '203.0.113.7' }).localLanIp).toBeUndefined();
    expect(loadConfig({ LISTEN_IP: '0.0.0.0' }).localLanIp).toBeUndefined();
    expect(loadConfig({ ANNOUNCED_IP: lan! }).localLanIp).toBeUndefined();
    const c = loadConfig({});
    expect(resolveConfig(c)).toEqual(c);
    const off = loadConfig({ LOCAL_LAN_MEDIA: 'off' });
    expect(resolveConfig(off)).toEqual(off);
  });

  it('first non-internal IPv4 of an interface list; none = a plain warning that Firefox cannot connect', () => {
    const lo = { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' } as const;
    const v6 = { address: 'fd00::2', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fd00::2/64', scopeid: 0 } as const;
    const v4 = { address: '10.9.8.7', netmask: '255.0.0.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.9.8.7/8' } as const;
    expect(firstExternalIPv4({ lo: [lo] })).toBeUndefined();
    expect(firstExternalIPv4({ lo: [lo], eth0: [v6] })).toBeUndefined();
    expect(firstExternalIPv4({ lo: [lo], eth0: [v6, v4] })).toBe('10.9.8.7');

    const base = { isLocal: true, localLanMedia: true, localLanIp: undefined, listenIp: '127.0.0.1', announcedIp: '127.0.0.1' };
    expect(localMediaWarning(base)).toMatch(/Firefox cannot connect.*\(Chromium can\).*LOCAL_LAN_IP/);
    expect(localMediaWarning({ ...base, localLanIp: '10.9.8.7' })).toBeUndefined();
    // Turned off on purpose, or not a local setup, or media not on loopback: nothing to warn about.
    expect(localMediaWarning({ ...base, localLanMedia: false })).toBeUndefined();
    expect(localMediaWarning({ ...base, isLocal: false })).toBeUndefined();
    expect(localMediaWarning({ ...base, announcedIp: '10.9.8.7' })).toBeUndefined();
    expect(localMediaWarning(loadConfig({}))).toBeUndefined();
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '70000' }, /PORT/],
    [{ WORKERS: '0' }, /WORKERS/],
    [{ ROOM_CAP: '-1' }, /ROOM_CAP/],
    [{ ROUTER_MAX_CONSUMERS: '0' }, /ROUTER_MAX_CONSUMERS/],
    [{ ROUTER_MAX_CONSUMERS: 'many' }, /ROUTER_MAX_CONSUMERS/],
    [{ ROUTER_MAX_CONSUMERS: '2.5' }, /ROUTER_MAX_CONSUMERS/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ RTC_MIN_PORT: '45000', RTC_MAX_PORT: '44000' }, /RTC_MIN_PORT must be below RTC_MAX_PORT/],
    [{ RTC_MIN_PORT: '80' }, /RTC_MIN_PORT/],
    [{ RTC_MODE: 'ports' }, /RTC_MODE/],
    [{ RTC_PORT: '80' }, /RTC_PORT: must be 0 \(any free port\) or 1024\.\.65535/],
    [{ RTC_PORT: '65535', WORKERS: '2' }, /RTC_PORT \+ WORKERS - 1 must not exceed 65535/],
    [{ TLS_CERT: '/tmp/cert.pem' }, /TLS_CERT and TLS_KEY must be given together/],
    [{ LISTEN_IP: 'not-an-ip' }, /LISTEN_IP: must be an IP address/],
    [{ ANNOUNCED_IP: '0.0.0.0' }, /ANNOUNCED_IP must be a routable address/],
    [{ TURN_URLS: 'http://x' }, /TURN_URLS/],
    [{ TURN_URLS: 'turn:x:3478' }, /TURN_USERNAME and TURN_CREDENTIAL are required/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 'short' }, /TURN_SECRET: must be at least 16 characters/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 's'.repeat(16), TURN_USERNAME: 'u', TURN_CREDENTIAL: 'p' }, /TURN_SECRET and TURN_USERNAME\/TURN_CREDENTIAL exclude each other/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 's'.repeat(16), TURN_USERNAME: 'u' }, /TURN_SECRET and TURN_USERNAME\/TURN_CREDENTIAL exclude each other/],
    [{ TURN_SECRET: 's'.repeat(16) }, /TURN_SECRET is set but TURN_URLS has no turn:\/turns: URL/],
    [{ TURN_URLS: 'stun:x:3478', TURN_SECRET: 's'.repeat(16) }, /TURN_SECRET is set but TURN_URLS has no turn:\/turns: URL/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 's'.repeat(16), TURN_TTL: '59' }, /TURN_TTL/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 's'.repeat(16), TURN_TTL: '86400' }, /TURN_TTL/],
    [{ TURN_URLS: 'turn:x:3478', TURN_SECRET: 's'.repeat(16), TURN_TTL: '10m' }, /TURN_TTL/],
    [{ ICE_TRANSPORT_POLICY: 'relay' }, /ICE_TRANSPORT_POLICY=relay needs a turn:\/turns: URL in TURN_URLS/],
    [{ ICE_TRANSPORT_POLICY: 'relay', TURN_URLS: 'stun:x:3478' }, /ICE_TRANSPORT_POLICY=relay needs a turn:\/turns: URL/],
    [{ ICE_TRANSPORT_POLICY: 'none', TURN_URLS: 'turn:x:3478', TURN_USERNAME: 'u', TURN_CREDENTIAL: 'p' }, /ICE_TRANSPORT_POLICY/],
    [{ AUDIO_LEVEL_EXT: 'maybe' }, /AUDIO_LEVEL_EXT/],
    [{ ALLOWED_ORIGINS: 'localhost:5173' }, /ALLOWED_ORIGINS/],
    [{ LOCAL_LAN_MEDIA: 'maybe' }, /LOCAL_LAN_MEDIA/],
    [{ LOCAL_LAN_IP: 'eth0' }, /LOCAL_LAN_IP: must be an IP address/],
    [{ LOCAL_LAN_IP: '127.0.0.2' }, /LOCAL_LAN_IP: must be a non-loopback address of this machine/],
    [{ LOCAL_LAN_IP: '203.0.113.9' }, /LOCAL_LAN_IP: 203\.0\.113\.9 is not an address of this machine/],
    [{ LOCAL_LAN_IP: '203.0.113.9', LOCAL_LAN_MEDIA: 'off' }, /LOCAL_LAN_IP: contradicts LOCAL_LAN_MEDIA=off/],
    [{ LOCAL_LAN_IP: '203.0.113.9', HOST: '0.0.0.0', ANNOUNCED_IP: '203.0.113.7' }, /LOCAL_LAN_IP: only applies with a local HOST/],
  ];
  for (const [env, re] of bad) {
    it(`rejects ${JSON.stringify(env)}`, () => {
      let err: unknown;
      try {
        loadConfig(env);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toMatch(re);
    });
  }

  it('RTC_PORT=0 (any free port) and the last port for one worker are accepted', () => {
    expect(loadConfig({ RTC_PORT: '0', WORKERS: '4' })).toMatchObject({ rtcMode: 'server', rtcPort: 0, workers: 4 });
    expect(loadConfig({ RTC_PORT: '65535', WORKERS: '1' })).toMatchObject({ rtcPort: 65535 });
    expect(loadConfig({ RTC_MODE: 'range', RTC_PORT: '65535', WORKERS: '2' })).toMatchObject({ rtcMode: 'range' });
  });

  it('resolveConfig takes objects (tests) and re-resolves a full Config', () => {
    const c = resolveConfig({ port: 0, workers: 1, roomCap: 2 });
    expect(c).toMatchObject({ port: 0, workers: 1, roomCap: 2 });
    expect(resolveConfig(c)).toEqual(c);
  });
});
