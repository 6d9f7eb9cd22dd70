'use strict';
// Starts the real kite-sim and kited binaries for the tests (each kited in its own temp dirs, on
// an ephemeral port), logs in through them as a browser would, and stops everything afterwards.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN_DIR = process.env.KITED_BIN_DIR || path.join(REPO, 'target', 'debug');
/** How long a process may take to become ready. */
const START_DEADLINE_MS = 10000;
/** How often readiness and other conditions are re-checked. */
const POLL_MS = 20;

function bin(name) {
  const p = path.join(BIN_DIR, name);
  if (!fs.existsSync(p)) {
    throw new Error(`${p} does not exist: run \`cargo build --workspace --bins\` first (or set KITED_BIN_DIR)`);
  }
  return p;
}

/** Polls `check` (sync or async) until it returns a truthy value; throws naming `what` after `ms`. */
async function eventually(ms, what, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** A port on 127.0.0.1 that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A private temp dir (0700), removed by `cleanup()`. */
function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o700);
  return dir;
}

/** `GET url` without keep-alive: resolves `{status, headers, body}`. */
function httpGet(url, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** One NDJSON request on a fresh connection to `socketPath`; resolves the answer object. */
function ipc(socketPath, request, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ path: socketPath });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${request.op} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(request) + '\n'));
    sock.on('data', (c) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.destroy();
        try {
          resolve(JSON.parse(buf.slice(0, nl)));
        } catch (e) {
          reject(e);
        }
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Every process and directory made here, for `cleanup()`. */
const children = new Set();
const dirs = new Set();

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child, ms) {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Kills every process still running and removes the temp dirs. */
async function cleanup() {
  for (const child of [...children]) {
    if (!exited(child)) child.kill('SIGKILL');
    await waitExit(child, 5000);
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

/** A running kite-sim: `url`, `loginUrl`, `apiKey`, `apiSecret`, and its control routes. */
class Sim {
  static async start() {
    const child = track(spawn(bin('kite-sim'), ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c) => {
      err = (err + c).slice(-20000);
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c) => (out += c));
    const line = await eventually(START_DEADLINE_MS, 'kite-sim to print its environment', () => {
      if (exited(child)) throw new Error(`kite-sim exited: ${err}`);
      const nl = out.indexOf('\n');
      return nl >= 0 ? out.slice(0, nl) : null;
    });
    const env = {};
    for (const m of line.matchAll(/([A-Z_]+)=(\S+)/g)) env[m[1]] = m[2];
    const sim = new Sim();
    sim.child = child;
    sim.env = env;
    sim.url = env.KITE_API_ROOT;
    sim.log = () => err;
    return sim;
  }

  async control(route, query = {}) {
    const qs = new URLSearchParams(query).toString();
    const res = await httpGet(`${this.url}/_sim/${route}${qs ? `?${qs}` : ''}`);
    if (res.status !== 200) throw new Error(`/_sim/${route} answered ${res.status}: ${res.body}`);
    return JSON.parse(res.body);
  }

  /** The API calls the sim has seen (not the control routes). */
  calls() {
    return this.control('calls');
  }

  async tokens() {
    return (await this.control('tokens')).access_tokens;
  }

  kill(accessToken) {
    return this.control('kill', { access_token: accessToken });
  }
}

/** A running kited with its own HOME and XDG dirs; the socket at the default place in them. */
class Kited {
  static async start(sim, { env = {} } = {}) {
    const dir = tempDir('kited-node-');
    dirs.add(dir);
    for (const sub of ['run', 'config', 'state']) fs.mkdirSync(path.join(dir, sub), { mode: 0o700 });
    const k = new Kited();
    k.sim = sim;
    k.dir = dir;
    k.runtimeDir = path.join(dir, 'run');
    k.socket = path.join(dir, 'run', 'kited', 'default.sock');
    k.logPath = path.join(dir, 'kited.log');
    k.extraEnv = env;
    k.port = await freePort();
    await k.spawn();
    return k;
  }

  /** The environment a client of this daemon runs with (no api secret). */
  clientEnv() {
    return {
      PATH: process.env.PATH,
      HOME: this.dir,
      XDG_RUNTIME_DIR: this.runtimeDir,
      XDG_CONFIG_HOME: path.join(this.dir, 'config'),
      XDG_STATE_HOME: path.join(this.dir, 'state'),
    };
  }

  async spawn() {
    await this.sim.control('redirect', { url: `http://127.0.0.1:${this.port}/auth/callback` });
    const env = {
      ...this.clientEnv(),
      RUST_LOG: 'info',
      KITE_API_ROOT: this.sim.env.KITE_API_ROOT,
      KITE_LOGIN_URL: this.sim.env.KITE_LOGIN_URL,
      KITE_API_KEY: this.sim.env.KITE_API_KEY,
      KITE_API_SECRET: this.sim.env.KITE_API_SECRET,
      ...this.extraEnv,
    };
    const log = fs.openSync(this.logPath, 'a');
    this.child = track(
      spawn(bin('kited'), ['--listen', `127.0.0.1:${this.port}`], { env, stdio: ['ignore', log, log] }),
    );
    fs.closeSync(log);
    await eventually(START_DEADLINE_MS, 'kited to answer ping and /healthz', async () => {
      if (exited(this.child)) throw new Error(`kited exited; log:\n${this.log()}`);
      const pong = await ipc(this.socket, { op: 'ping' }, 1000);
      if (pong.ok !== true) return false;
      const health = await httpGet(`http://127.0.0.1:${this.port}/healthz`, 1000);
      return health.status === 200;
    });
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  call(request) {
    return ipc(this.socket, request);
  }

  /**
   * Logs in as a browser does: kited's login URL at the sim (which redirects), then kited's
   * callback. Resolves with the time (performance.now()) the callback's answer was complete.
   */
  async login() {
    const urls = await this.call({ op: 'login_url' });
    if (!urls.ok) throw new Error(`login_url failed: ${JSON.stringify(urls)}`);
    const first = await httpGet(urls.login_url);
    if (first.status !== 302) throw new Error(`the sim answered the login with ${first.status}: ${first.body}`);
    const second = await httpGet(first.headers.location);
    const answered = performance.now();
    if (second.status !== 200) throw new Error(`kited's callback answered ${second.status}: ${second.body}`);
    return answered;
  }

  /** SIGTERM, wait for the exit. */
  async stop() {
    if (exited(this.child)) return;
    this.child.kill('SIGTERM');
    if (!(await waitExit(this.child, 5000))) {
      this.child.kill('SIGKILL');
      throw new Error(`kited did not exit within 5 s of SIGTERM; log:\n${this.log()}`);
    }
  }

  /** Stops kited and starts it again on the same state, socket and port. */
  async restart() {
    await this.stop();
    await this.spawn();
  }
}

/** The kiteconnect package the tests use (installed by run-tests into test/deps). */
const DEPS = path.join(__dirname, 'deps', 'node_modules');
// The library finds `kiteconnect` with a plain require(), as in a user's project; run-tests puts
// the test dependencies on NODE_PATH, and this does the same when a test file is run directly.
if (!(process.env.NODE_PATH || '').split(path.delimiter).includes(DEPS)) {
  process.env.NODE_PATH = [DEPS, process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
  require('node:module').Module._initPaths();
}
function kiteconnectDir() {
  const dir = path.join(DEPS, 'kiteconnect');
  if (!fs.existsSync(dir)) throw new Error(`${dir} is missing: run clients/node/run-tests (it installs the test dependencies)`);
  return dir;
}

module.exports = { Sim, Kited, cleanup, eventually, freePort, tempDir, httpGet, ipc, bin, track, waitExit, dirs, DEPS, kiteconnectDir, REPO };
