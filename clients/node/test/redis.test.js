'use strict';
// Redis mode against a real redis-server: the token read with GET, new tokens followed with
// SUBSCRIBE; the test writes the key and publishes the event itself, as kited's Redis sink does.
// Then servers that are not Redis: a clear KitedError, never a hang.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const { Sim, Kited, cleanup, eventually, freePort, tempDir, dirs, track } = require('./harness');
const { RedisConnection, parseRedisUrl } = require('../lib/redis');
const kited = require('..');

const PASSWORD = 'test-redis-password';
const PROFILE = 'bots';
const KEY = `kite:${PROFILE}:token`;
const CHANNEL = `kite:${PROFILE}:events`;

let sim;
let daemon;
let url;
let admin;

function redisServer() {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('redis-server is missing: apt-get install redis-server');
  }
}

test.before(async () => {
  const dir = tempDir('kited-node-redis-');
  dirs.add(dir);
  const port = await freePort();
  const child = track(
    spawn(
      redisServer(),
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--requirepass', PASSWORD],
      { stdio: 'ignore' },
    ),
  );
  url = `redis://127.0.0.1:${port}/3`;
  admin = await eventually(10000, 'redis-server to accept connections', async () => {
    if (child.exitCode !== null) throw new Error('redis-server exited');
    const conn = new RedisConnection(parseRedisUrl(url, { password: PASSWORD }));
    await conn.open();
    return conn;
  });
  sim = await Sim.start();
  daemon = await Kited.start(sim);
  await daemon.login();
});
test.after(async () => {
  kited.close();
  if (admin) admin.close();
  await cleanup();
});

/** What kited's Redis sink does on a new token: SET the value, then PUBLISH the event. */
async function publishCurrent() {
  const t = await daemon.call({ op: 'get_token' });
  assert.equal(t.ok, true);
  const value = JSON.stringify({ api_key: t.api_key, access_token: t.access_token, expires_at: t.expires_at, user_id: 'AB1234', login_time: new Date().toISOString() });
  await admin.command('SET', KEY, value, 'EXAT', String(Math.floor(new Date(t.expires_at).getTime() / 1000)));
  await admin.command('PUBLISH', CHANNEL, JSON.stringify({ event: 'token_new', at: new Date().toISOString(), user_id: 'AB1234', user_name: 'Kite Tester', expires_at: t.expires_at }));
  return t.access_token;
}

const opts = () => ({ redisUrl: url, redisPassword: PASSWORD, profile: PROFILE });

test('no key in Redis: LoginRequired', async () => {
  await admin.command('DEL', KEY);
  await assert.rejects(kited.getToken(opts()), (err) => {
    assert.ok(err instanceof kited.LoginRequired, String(err));
    assert.match(err.message, /kite:bots:token/);
    return true;
  });
});

test('getToken waits for the token to be published', async () => {
  await admin.command('DEL', KEY);
  const pending = kited.getToken({ ...opts(), wait: 10 });
  // Publish only once the waiter is subscribed.
  await eventually(5000, 'a subscriber on the channel', async () => (await admin.command('PUBSUB', 'NUMSUB', CHANNEL))[1] > 0);
  const token = await publishCurrent();
  assert.equal(await pending, token);
});

test('getToken and session read the key, from KITED_REDIS_URL and KITED_PROFILE too', async () => {
  const token = await publishCurrent();
  assert.equal(await kited.getToken(opts()), token);
  const s = await kited.session(opts());
  assert.equal(s.apiKey, sim.env.KITE_API_KEY);
  assert.ok(s.expiresAt > new Date());
  const saved = { ...process.env };
  try {
    process.env.KITED_REDIS_URL = url.replace('redis://', `redis://:${encodeURIComponent(PASSWORD)}@`);
    process.env.KITED_PROFILE = PROFILE;
    process.env.KITED_SOCKET = '/nonexistent/never-used.sock';
    assert.equal(await kited.getToken(), token);
    // No password (neither in the URL nor in KITED_REDIS_PASSWORD): Redis refuses, clearly.
    process.env.KITED_REDIS_URL = url;
    delete process.env.KITED_REDIS_PASSWORD;
    await assert.rejects(kited.getToken(), (err) => err.kind === 'redis' && /NOAUTH|auth/i.test(err.message));
    process.env.KITED_REDIS_PASSWORD = 'wrong-password';
    await assert.rejects(kited.getToken(), (err) => {
      assert.equal(err.kind, 'redis');
      assert.ok(!err.message.includes('wrong-password'), err.message);
      return true;
    });
  } finally {
    for (const k of ['KITED_REDIS_URL', 'KITED_PROFILE', 'KITED_SOCKET', 'KITED_REDIS_PASSWORD']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
});

test('kite() in Redis mode calls Kite and follows the channel to the next token', async () => {
  const first = await publishCurrent();
  const kc = await kited.kite({ ...opts(), root: sim.url });
  assert.equal(kc.access_token, first);
  assert.equal((await kc.getProfile()).user_id, 'AB1234');
  await eventually(5000, 'the client subscribed', async () => (await admin.command('PUBSUB', 'NUMSUB', CHANNEL))[1] > 0);
  await daemon.login();
  const second = await publishCurrent();
  assert.notEqual(second, first);
  await eventually(5000, 'the new token in kc.access_token', () => kc.access_token === second);
  await sim.kill(first);
  assert.equal((await kc.getProfile()).user_id, 'AB1234');
  kc.close();
  await eventually(5000, 'the subscription gone after close()', async () => (await admin.command('PUBSUB', 'NUMSUB', CHANNEL))[1] === 0);
});

test('a bot in Redis mode follows a real kited through its [sinks.redis] sink', async () => {
  // The whole path a bot in a container takes: kited writes Redis itself, the client reads
  // and follows Redis alone (no socket).
  const ownSim = await Sim.start();
  const cfgDir = tempDir('kited-node-sink-');
  dirs.add(cfgDir);
  const config = path.join(cfgDir, 'kited.toml');
  fs.writeFileSync(config, `[sinks.redis]\nurl = "${url}"\nkey = "${KEY}"\nchannel = "${CHANNEL}"\n`, { mode: 0o600 });
  const writer = await Kited.start(ownSim, { env: { KITED_CONFIG: config, KITED_REDIS_PASSWORD: PASSWORD } });
  try {
    await writer.login();
    const stored = async () => {
      const value = await admin.command('GET', KEY);
      return value ? JSON.parse(value).access_token : null;
    };
    const first = await eventually(5000, 'kited to write the key', stored);
    const kc = await kited.kite({ ...opts(), root: ownSim.url });
    assert.equal(kc.access_token, first);
    assert.equal((await kc.getProfile()).user_id, 'AB1234');
    await writer.login();
    await eventually(5000, 'the client to take the new token', () => kc.access_token !== first);
    const now = await writer.call({ op: 'get_token' });
    assert.equal(kc.access_token, now.access_token);
    await ownSim.kill(first);
    assert.equal((await kc.getProfile()).user_id, 'AB1234');
    kc.close();
  } finally {
    await writer.stop();
  }
});

/** A TCP server that answers every connection with `reply` (or nothing, when null). */
async function fakeRedis(reply) {
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    if (reply !== null) sock.once('data', () => sock.write(reply));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${server.address().port}/0`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

test('a server that answers garbage gives a clear KitedError at once', async () => {
  for (const reply of ['HTTP/1.1 400 Bad Request\r\n\r\n', '$abc\r\n', '$99999999999\r\n', '*1\r\n!oops\r\n', ':12x\r\n']) {
    const fake = await fakeRedis(reply);
    try {
      const started = Date.now();
      await assert.rejects(kited.getToken({ redisUrl: fake.url }), (err) => {
        assert.ok(err instanceof kited.KitedError, String(err));
        assert.equal(err.kind, 'redis');
        assert.match(err.message, /Redis|RESP/);
        return true;
      });
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms for ${JSON.stringify(reply)}`);
    } finally {
      await fake.close();
    }
  }
});

test('a server that never answers times out with a KitedError', async () => {
  const fake = await fakeRedis(null);
  try {
    const started = Date.now();
    await assert.rejects(kited.getToken({ redisUrl: fake.url }), (err) => err.kind === 'redis' && /did not answer/.test(err.message));
    assert.ok(Date.now() - started < 8000);
  } finally {
    await fake.close();
  }
});

test('a bad URL is refused with a message naming the problem', async () => {
  await assert.rejects(kited.getToken({ redisUrl: 'http://x' }), /must start with redis:\/\//);
  await assert.rejects(kited.getToken({ redisUrl: 'redis://127.0.0.1/x' }), /database .* must be a number/);
});
