'use strict';
// kite(): the official Kite Connect client against kite-sim, kept current by following kited.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Sim, Kited, cleanup, eventually, track, waitExit } = require('./harness');
const kited = require('..');

/** How long a new token may take to reach the client in these tests (the goal is 100 ms). */
const ROTATION_DEADLINE_MS = 5000;

let sim;
let daemon;
const clients = [];

async function client() {
  const kc = await kited.kite({ socket: daemon.socket, root: sim.url });
  clients.push(kc);
  return kc;
}

async function profileCalls() {
  return (await sim.calls()).filter((c) => c.path === '/user/profile').length;
}

test.before(async () => {
  sim = await Sim.start();
  daemon = await Kited.start(sim);
  await daemon.login();
});
test.after(async () => {
  for (const kc of clients) kc.close();
  await cleanup();
});

test('kite() gives the official client with the api key and token set', async () => {
  const kc = await client();
  const [live] = await sim.tokens();
  assert.equal(kc.constructor.name, 'KiteConnect');
  assert.equal(kc.api_key, sim.env.KITE_API_KEY);
  assert.equal(kc.access_token, live);
  const profile = await kc.getProfile();
  assert.equal(profile.user_id, 'AB1234');
  const last = (await sim.calls()).filter((c) => c.path === '/user/profile').pop();
  assert.equal(last.authorization, `token ${sim.env.KITE_API_KEY}:${live}`);
});

test('a second login reaches the client, and calls work after Kite killed the old token', async () => {
  const kc = await client();
  const old = kc.access_token;
  await daemon.login();
  await eventually(ROTATION_DEADLINE_MS, 'the new token in kc.access_token', () => kc.access_token !== old);
  const tokens = await sim.tokens();
  assert.ok(tokens.includes(kc.access_token));
  await sim.kill(old);
  assert.equal((await kc.getProfile()).user_id, 'AB1234');
});

test('a failed call is not retried, and the expiry hook re-reads the token', async () => {
  const kc = await client();
  const live = kc.access_token;
  let hookRan;
  const hooked = new Promise((r) => (hookRan = r));
  kc.setSessionExpiryHook(() => hookRan(kc.access_token));
  // A stale token in the client (as after a missed rotation): Kite answers 403 TokenException.
  kc.setAccessToken('stale-token-for-the-test');
  const before = await profileCalls();
  await assert.rejects(kc.getProfile(), (err) => err.error_type === 'TokenException');
  // The program's own hook runs once the library has re-read the token.
  assert.equal(await hooked, live);
  assert.equal(kc.access_token, live);
  assert.equal(await profileCalls(), before + 1, 'the library repeated the failed call');
  // The program decides to call again, and that works.
  assert.equal((await kc.getProfile()).user_id, 'AB1234');
});

test('after kited restarts, the client follows again and picks up the next login', async () => {
  const kc = await client();
  const old = kc.access_token;
  await daemon.restart();
  await daemon.login();
  await eventually(ROTATION_DEADLINE_MS + 1000, 'the post-restart token in kc.access_token', () => kc.access_token !== old);
  await sim.kill(old);
  assert.equal((await kc.getProfile()).user_id, 'AB1234');
});

test('a login made while the client was disconnected is picked up on reconnect', async () => {
  const kc = await client();
  const old = kc.access_token;
  const runDir = path.dirname(daemon.socket);
  await daemon.stop();
  await daemon.spawn();
  // Keep the client away while the login happens: it refuses a socket directory others can
  // write to (kited does not look again), so no watch event can reach it. Only the token
  // comparison after it reconnects can bring the new token.
  fs.chmodSync(runDir, 0o777);
  try {
    await daemon.login();
    assert.equal(kc.access_token, old);
  } finally {
    fs.chmodSync(runDir, 0o700);
  }
  await eventually(ROTATION_DEADLINE_MS + 2000, 'the token in kc.access_token', () => kc.access_token !== old);
  assert.equal(kc.access_token, (await kited.session({ socket: daemon.socket })).accessToken);
});

function runChild(how) {
  const script = path.join(__dirname, 'fixtures', 'close-child.js');
  const child = track(
    spawn(process.execPath, [script, daemon.socket, sim.url, how], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: process.env,
    }),
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
  const started = Date.now();
  return waitExit(child, 10000).then((ended) => ({ ended, code: child.exitCode, out, err, ms: Date.now() - started }));
}

for (const how of ['kc', 'module']) {
  test(`close() (${how === 'kc' ? 'the client\'s' : 'the module\'s'}) stops following and the program ends by itself`, async () => {
    const r = await runChild(how);
    assert.ok(r.ended, `the child still runs after 10 s; stderr: ${r.err}`);
    assert.equal(r.code, 0, r.err);
    const counts = JSON.parse(r.out);
    assert.ok(counts.during > counts.baseline, `no watch connection seen: ${r.out}`);
    assert.equal(counts.after, counts.baseline, `a socket is left after close(): ${r.out}`);
  });
}

test('without close(), following never keeps the program alive either', async () => {
  const r = await runChild('none');
  assert.ok(r.ended, `the child still runs after 10 s; stderr: ${r.err}`);
  assert.equal(r.code, 0, r.err);
  const counts = JSON.parse(r.out);
  assert.ok(counts.after > counts.baseline, `the control case should still hold its watch socket: ${r.out}`);
});

test('kite() without a login fails with LoginRequired, and with NotRunning without kited', async () => {
  await assert.rejects(kited.kite({ socket: '/nonexistent-dir/kited.sock' }), kited.NotRunning);
  await daemon.call({ op: 'logout' });
  await assert.rejects(kited.kite({ socket: daemon.socket, root: sim.url }), kited.LoginRequired);
});
