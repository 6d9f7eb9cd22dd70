'use strict';
// getToken and session against a real kited: a valid token, no login yet, no daemon, and a
// socket directory that others could write to.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const { Sim, Kited, cleanup, tempDir, dirs } = require('./harness');
const kited = require('..');

let sim;
let daemon;

test.before(async () => {
  sim = await Sim.start();
  daemon = await Kited.start(sim);
});
test.after(cleanup);

/** Runs `fn` with process.env changed as `env` says (undefined removes), then restores it. */
async function withEnv(env, fn) {
  const saved = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const noOverrides = { KITED_SOCKET: undefined, KITED_PROFILE: undefined, KITED_REDIS_URL: undefined };

test('before any login: LoginRequired, with kited\'s own message', async () => {
  await assert.rejects(kited.getToken({ socket: daemon.socket }), (err) => {
    assert.ok(err instanceof kited.LoginRequired);
    assert.ok(err instanceof kited.KitedError);
    assert.equal(err.kind, 'login_required');
    assert.ok(err.message.length > 0);
    return true;
  });
});

test('getToken waits for a login with wait', async () => {
  const pending = kited.getToken({ socket: daemon.socket, wait: 10 });
  await daemon.login();
  const token = await pending;
  assert.deepEqual(await sim.tokens(), [token]);
});

test('the socket is found in XDG_RUNTIME_DIR by profile, as kitectl finds it', async () => {
  const [live] = await sim.tokens();
  await withEnv({ ...noOverrides, XDG_RUNTIME_DIR: daemon.runtimeDir }, async () => {
    assert.equal(kited.socketPath(), daemon.socket);
    assert.equal(await kited.getToken(), live);
    // Another profile names another socket, where nothing runs.
    await assert.rejects(kited.getToken({ profile: 'dev' }), kited.NotRunning);
    await withEnv({ KITED_PROFILE: 'dev' }, () => assert.rejects(kited.getToken(), kited.NotRunning));
    // KITED_SOCKET wins over the profile; the socket option wins over both.
    await withEnv({ KITED_SOCKET: daemon.socket, KITED_PROFILE: 'dev' }, async () => {
      assert.equal(await kited.getToken(), live);
    });
    await withEnv({ KITED_SOCKET: '/nonexistent/x.sock' }, async () => {
      assert.equal(await kited.getToken({ socket: daemon.socket }), live);
    });
  });
  await withEnv({ ...noOverrides, XDG_RUNTIME_DIR: undefined }, async () => {
    assert.equal(kited.socketPath({ profile: 'p1' }), `/tmp/kited-${process.getuid()}/p1.sock`);
  });
  assert.throws(() => kited.socketPath({ profile: '../x' }), (e) => e.kind === 'bad_request');
});

test('session carries the api key and expiry and never prints the token', async () => {
  const [live] = await sim.tokens();
  const s = await kited.session({ socket: daemon.socket });
  assert.equal(s.accessToken, live);
  assert.equal(s.apiKey, sim.env.KITE_API_KEY);
  assert.ok(s.expiresAt instanceof Date);
  assert.ok(s.expiresAt.getTime() > Date.now(), `expires ${s.expiresAt.toISOString()}`);
  for (const shown of [JSON.stringify(s), util.inspect(s), String(s), JSON.stringify({ ...s }), util.format('%o', s)]) {
    assert.ok(!shown.includes(live), `the token shows in ${shown}`);
  }
  assert.ok(JSON.stringify(s).includes('[redacted]'));
});

test('no daemon: NotRunning naming the socket and how to start kited', async () => {
  const dir = tempDir('kited-node-none-');
  dirs.add(dir);
  const missing = path.join(dir, 'default.sock');
  await assert.rejects(kited.getToken({ socket: missing }), (err) => {
    assert.ok(err instanceof kited.NotRunning, String(err));
    assert.equal(err.kind, 'not_running');
    assert.match(err.message, /kited is not running \(no socket at .*default\.sock\): start it with/);
    return true;
  });
  // A socket file nobody listens on (a daemon that died without cleaning up).
  const net = require('node:net');
  const stale = path.join(dir, 'stale.sock');
  const srv = net.createServer();
  await new Promise((r) => srv.listen(stale, r));
  // Closing a Node server unlinks its socket; re-bind-and-drop via a child process is overkill,
  // so keep the file by hard-linking it first.
  fs.linkSync(stale, path.join(dir, 'dead.sock'));
  await new Promise((r) => srv.close(r));
  await assert.rejects(kited.getToken({ socket: path.join(dir, 'dead.sock') }), (err) => {
    assert.ok(err instanceof kited.NotRunning, String(err));
    assert.match(err.message, /nothing listening/);
    return true;
  });
});

test('a socket directory others can write to is refused before connecting', async () => {
  const runDir = path.dirname(daemon.socket);
  fs.chmodSync(runDir, 0o777);
  try {
    await assert.rejects(kited.getToken({ socket: daemon.socket }), (err) => {
      assert.ok(err instanceof kited.KitedError);
      assert.ok(!(err instanceof kited.NotRunning));
      assert.equal(err.kind, 'untrusted');
      assert.match(err.message, /refusing to talk to kited: .* can be written by other users \(mode 0777\)/);
      return true;
    });
  } finally {
    fs.chmodSync(runDir, 0o700);
  }
  // A symlink where the directory should be, and something that is not a socket.
  const dir = tempDir('kited-node-trust-');
  dirs.add(dir);
  fs.symlinkSync(runDir, path.join(dir, 'link'));
  await assert.rejects(kited.getToken({ socket: path.join(dir, 'link', 'default.sock') }), /symbolic link/);
  fs.writeFileSync(path.join(dir, 'plain.sock'), '');
  await assert.rejects(kited.getToken({ socket: path.join(dir, 'plain.sock') }), /is not a socket/);
  // Owned by another user (not root, not us): only root can make such a directory here.
  if (process.geteuid() === 0) {
    fs.mkdirSync(path.join(dir, 'theirs'), { mode: 0o700 });
    fs.chownSync(path.join(dir, 'theirs'), 4242, 4242);
    await assert.rejects(kited.getToken({ socket: path.join(dir, 'theirs', 'x.sock') }), /belongs to uid 4242/);
  }
  assert.equal(await kited.getToken({ socket: daemon.socket }), (await sim.tokens())[0]);
});

test('your own link to the socket is followed, and its target checked', async () => {
  const runDir = path.dirname(daemon.socket);
  const dir = tempDir('kited-node-link-');
  dirs.add(dir);
  const token = (await sim.tokens())[0];
  // Absolute, relative, and a link to a link: each reaches kited.
  fs.symlinkSync(daemon.socket, path.join(dir, 'kited.sock'));
  fs.symlinkSync(path.relative(dir, daemon.socket), path.join(dir, 'relative.sock'));
  fs.symlinkSync(path.join(dir, 'kited.sock'), path.join(dir, 'again.sock'));
  for (const name of ['kited.sock', 'relative.sock', 'again.sock']) {
    assert.equal(await kited.getToken({ socket: path.join(dir, name) }), token, name);
  }
  // The target is checked like any socket: in a directory others can write, refused.
  fs.chmodSync(runDir, 0o777);
  try {
    await assert.rejects(
      kited.getToken({ socket: path.join(dir, 'kited.sock') }),
      /can be written by other users \(mode 0777\)/,
    );
  } finally {
    fs.chmodSync(runDir, 0o700);
  }
  // A loop ends.
  fs.symlinkSync('loop.sock', path.join(dir, 'loop.sock'));
  await assert.rejects(kited.getToken({ socket: path.join(dir, 'loop.sock') }), /symbolic links in a row/);
  // A link another user owns is refused (only root can make one here; CI runs as root).
  if (process.geteuid() === 0 || process.env.CI === 'true') {
    fs.symlinkSync(daemon.socket, path.join(dir, 'theirs.sock'));
    fs.lchownSync(path.join(dir, 'theirs.sock'), 4242, 4242);
    await assert.rejects(kited.getToken({ socket: path.join(dir, 'theirs.sock') }), /belongs to uid 4242/);
  }
});
