'use strict';
// kited-client: the live Kite Connect access token from kited (or from Redis), for Node programs.

const { KitedError, NotRunning, LoginRequired } = require('./lib/errors');
const { Session, fetchSession } = require('./lib/session');
const { Follower } = require('./lib/follow');
const socket = require('./lib/socket');

/** Options that choose where the token comes from; everything else goes to KiteConnect. */
const SOURCE_OPTIONS = ['profile', 'socket', 'wait', 'redisUrl', 'redisUsername', 'redisPassword', 'KiteConnect'];

/** Followers of every kite() client not yet closed, for the module-level close(). */
const live = new Set();

/** The access token alone. */
async function getToken(opts = {}) {
  return (await fetchSession(opts)).accessToken;
}

/** The api key, the access token and its expiry. */
function session(opts = {}) {
  return fetchSession(opts);
}

function loadKiteConnect() {
  let mod;
  try {
    mod = require('kiteconnect');
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes("'kiteconnect'")) {
      throw new KitedError('no_kiteconnect', 'kite() needs the official Kite Connect client: npm install kiteconnect');
    }
    throw e;
  }
  const KiteConnect = mod.KiteConnect || (mod.default && mod.default.KiteConnect) || mod.default || mod;
  if (typeof KiteConnect !== 'function') {
    throw new KitedError('no_kiteconnect', 'the kiteconnect package does not export a KiteConnect class');
  }
  return KiteConnect;
}

/**
 * A KiteConnect client with the api key and token set, kept current: it follows kited for new
 * tokens (reconnecting after a restart) and re-reads the token when Kite says the session
 * expired. A failed call is never retried. `client.close()` stops following.
 */
/** How long kite() waits for its follower's first subscription before returning anyway. */
const FOLLOW_START_MS = 5000;

async function kite(opts = {}) {
  const source = {};
  const params = {};
  for (const [key, value] of Object.entries(opts)) {
    if (SOURCE_OPTIONS.includes(key)) source[key] = value;
    else params[key] = value;
  }
  const KiteConnect = source.KiteConnect || loadKiteConnect();
  delete source.KiteConnect;
  const first = await fetchSession(source);
  const kc = new KiteConnect({ ...params, api_key: first.apiKey, access_token: first.accessToken });

  delete source.wait;
  if (!source.redisUrl && !process.env.KITED_REDIS_URL) {
    // Pin the socket found now, so that the client keeps following the daemon it started with.
    source.socket = socket.socketPath(source);
  }
  const follower = new Follower(source, (next) => {
    if (next.apiKey !== kc.api_key) kc.api_key = next.apiKey;
    if (next.accessToken !== kc.access_token) kc.setAccessToken(next.accessToken);
  });

  let userHook = null;
  const setHook = kc.setSessionExpiryHook.bind(kc);
  setHook(() => {
    follower.refresh().then(() => {
      if (userHook) userHook();
    });
  });
  // Kite Connect keeps one hook; a program's own hook runs after the token has been re-read.
  kc.setSessionExpiryHook = (cb) => {
    userHook = cb;
  };

  live.add(follower);
  Object.defineProperty(kc, 'close', {
    value: () => {
      follower.stop();
      live.delete(follower);
    },
    enumerable: false,
    configurable: true,
    writable: true,
  });
  // Wait (at most FOLLOW_START_MS) for the first subscription, so a login right after kite()
  // returns cannot be missed. Every follower handle is unref'd; this one timer keeps the
  // program alive while it waits.
  let settle;
  const bound = new Promise((resolve) => {
    settle = setTimeout(resolve, FOLLOW_START_MS);
  });
  try {
    await Promise.race([follower.start(), bound]);
  } finally {
    clearTimeout(settle);
  }
  return kc;
}

/** Stops following for every client kite() made. */
function close() {
  for (const follower of live) follower.stop();
  live.clear();
}

module.exports = {
  getToken,
  session,
  kite,
  close,
  socketPath: socket.socketPath,
  Session,
  KitedError,
  NotRunning,
  LoginRequired,
};
