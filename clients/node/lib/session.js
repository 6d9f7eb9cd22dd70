'use strict';
// Where the token comes from: kited's socket, or Redis when KITED_REDIS_URL is set. Both give the
// same Session value, and both can be followed for new tokens.

const util = require('node:util');
const { KitedError, LoginRequired } = require('./errors');
const socket = require('./socket');
const redis = require('./redis');

/** What an access token looks like in any printout of a Session. */
const REDACTED = '[redacted]';

/** The api key, the access token and when it expires. Printing or JSON never shows the token. */
class Session {
  #accessToken;

  constructor({ apiKey, accessToken, expiresAt }) {
    if (typeof apiKey !== 'string' || typeof accessToken !== 'string' || !accessToken) {
      throw new KitedError('protocol', 'the token answer lacks api_key or access_token');
    }
    const when = new Date(expiresAt);
    if (Number.isNaN(when.getTime())) {
      throw new KitedError('protocol', 'the token answer carries no valid expires_at');
    }
    this.apiKey = apiKey;
    this.#accessToken = accessToken;
    this.expiresAt = when;
  }

  /** The access token (a getter, so that spreading or logging the object leaves it out). */
  get accessToken() {
    return this.#accessToken;
  }

  toJSON() {
    return { apiKey: this.apiKey, accessToken: REDACTED, expiresAt: this.expiresAt.toISOString() };
  }

  toString() {
    return `Session(apiKey=${this.apiKey}, accessToken=${REDACTED}, expiresAt=${this.expiresAt.toISOString()})`;
  }

  [util.inspect.custom]() {
    return this.toString();
  }
}

/** The Redis settings when Redis mode is on (`opts.redisUrl` or `KITED_REDIS_URL`), else null. */
function redisSettings(opts = {}) {
  const url = opts.redisUrl || process.env.KITED_REDIS_URL;
  if (!url) return null;
  const profile = socket.profileName(opts);
  return {
    cfg: redis.parseRedisUrl(url, { username: opts.redisUsername, password: opts.redisPassword }),
    key: `kite:${profile}:token`,
    channel: `kite:${profile}:events`,
  };
}

/** Turns the JSON value kited stores in Redis into a Session; null: no token there. */
function sessionFromRedis(settings, value) {
  if (value === null) return null;
  let parsed;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new KitedError('redis', `the value of ${settings.key} in Redis is not JSON`);
  }
  if (!parsed || typeof parsed !== 'object') {
    throw new KitedError('redis', `the value of ${settings.key} in Redis is not a JSON object`);
  }
  try {
    return new Session({ apiKey: parsed.api_key, accessToken: parsed.access_token, expiresAt: parsed.expires_at });
  } catch (e) {
    throw new KitedError('redis', `the value of ${settings.key} in Redis: ${e.message}`);
  }
}

function loginRequiredInRedis(settings) {
  return new LoginRequired(
    `no token in Redis at ${redis.describe(settings.cfg)} key ${settings.key}: log in (kitectl login), or check kited's Redis sink`,
  );
}

/**
 * Waits for a Redis token: subscribes first (so no publication is missed), then reads the key,
 * and reads it again on every message until one is there or `waitSecs` pass.
 */
async function waitInRedis(settings, waitSecs, keepAlive) {
  const conn = new redis.RedisConnection(settings.cfg, { keepAlive });
  let timer;
  try {
    await conn.open();
    return await new Promise((resolve, reject) => {
      const check = () =>
        redis.getKey(settings.cfg, settings.key, { keepAlive }).then((value) => {
          const found = sessionFromRedis(settings, value);
          if (found) resolve(found);
        }, reject);
      timer = setTimeout(() => reject(loginRequiredInRedis(settings)), waitSecs * 1000);
      conn.onEnd = reject;
      conn.subscribe(settings.channel, () => check()).then(check, reject);
    });
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

/**
 * The current token as a Session. `opts.wait` (seconds): wait that long for a login instead of
 * failing at once with LoginRequired. `keepAlive: false` is for the follower, which must never
 * keep the process alive.
 */
async function fetchSession(opts = {}, { keepAlive = true } = {}) {
  const wait = opts.wait === undefined || opts.wait === null ? undefined : Number(opts.wait);
  if (wait !== undefined && !(wait >= 0)) {
    throw new KitedError('bad_request', `wait must be a number of seconds, not ${opts.wait}`);
  }
  const settings = redisSettings(opts);
  if (settings) {
    const value = await redis.getKey(settings.cfg, settings.key, { keepAlive });
    const found = sessionFromRedis(settings, value);
    if (found) return found;
    if (!wait) throw loginRequiredInRedis(settings);
    return waitInRedis(settings, wait, keepAlive);
  }
  const request = { op: 'get_token' };
  if (wait) request.wait_secs = Math.ceil(wait);
  const timeout = socket.ANSWER_TIMEOUT_MS + (wait ? Math.ceil(wait) * 1000 : 0);
  const answer = await socket.call(opts, request, timeout, { keepAlive });
  return new Session({ apiKey: answer.api_key, accessToken: answer.access_token, expiresAt: answer.expires_at });
}

module.exports = { Session, fetchSession, redisSettings, sessionFromRedis, REDACTED };
