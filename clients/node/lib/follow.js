'use strict';
// Following new tokens: a `watch` connection to kited (or a Redis SUBSCRIBE) that re-reads the
// token on every `token_new`, and again after every reconnect in case one was missed while the
// connection was down. Nothing here keeps the process alive: every socket and timer is unref'd.

const socket = require('./socket');
const redis = require('./redis');
const { fetchSession, redisSettings } = require('./session');

/** The first retry after the connection drops; doubled on each failure, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 100;
/** A daemon that stays away is retried every 30 s: often enough to pick up a restart soon. */
const MAX_BACKOFF_MS = 30000;

class Follower {
  /**
   * @param {object} opts where to read from (profile, socket, redisUrl, ...; no wait).
   * @param {(session: import('./session').Session) => void} onSession called with every token read.
   */
  constructor(opts, onSession) {
    this.opts = opts;
    this.onSession = onSession;
    this.redis = redisSettings(opts);
    this.stopped = false;
    this.backoff = FIRST_BACKOFF_MS;
    this.timer = null;
    this.conn = null;
    this.reading = null;
    this.readAgain = false;
    /** How many times the follow connection has been (re)established; for tests and diagnostics. */
    this.connects = 0;
  }

  /**
   * Starts following. Resolves once the first subscription is made and the token re-read after
   * it (or once that first try failed and a retry is scheduled), so a login right after cannot
   * be missed and no later read races one the caller makes.
   */
  start() {
    return this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.conn) this.conn.close();
    this.conn = null;
  }

  async connect() {
    if (this.stopped) return;
    try {
      if (this.redis) await this.subscribeRedis();
      else await this.watchSocket();
    } catch {
      this.retry();
      return;
    }
    if (this.stopped) return;
    this.connects += 1;
    this.backoff = FIRST_BACKOFF_MS;
    await this.refresh();
  }

  /** Opens `watch` and resolves once kited confirms the subscription. */
  watchSocket() {
    const conn = new socket.Connection(socket.socketPath(this.opts), { keepAlive: false });
    this.conn = conn;
    return new Promise((resolve, reject) => {
      let subscribed = false;
      conn.onLine = (line) => {
        if (!subscribed) {
          if (line.ok !== true) {
            conn.fail(socket.protocolError('watch was not accepted'));
            return;
          }
          subscribed = true;
          resolve();
        } else if (line.event === 'token_new') {
          this.refresh();
        }
      };
      conn.onEnd = (err) => {
        if (!subscribed) reject(err || new Error('closed'));
        else if (this.conn === conn) this.retry();
      };
      conn.open().then(() => {
        if (this.stopped) conn.close();
        else conn.send({ op: 'watch' });
      }, reject);
    });
  }

  async subscribeRedis() {
    const conn = new redis.RedisConnection(this.redis.cfg, { keepAlive: false });
    this.conn = conn;
    conn.onEnd = () => {
      if (this.conn === conn) this.retry();
    };
    try {
      await conn.open();
      await conn.subscribe(this.redis.channel, (_channel, text) => {
        let event;
        try {
          event = JSON.parse(text);
        } catch {
          return;
        }
        if (event && event.event === 'token_new') this.refresh();
      });
    } catch (err) {
      conn.onEnd = () => {};
      conn.close();
      throw err;
    }
    if (this.stopped) conn.close();
  }

  retry() {
    if (this.stopped || this.timer) return;
    if (this.conn) this.conn.close();
    this.conn = null;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
    this.timer.unref();
  }

  /**
   * Reads the token now and hands it to onSession. Reads never overlap: a request during a read
   * makes one more read after it. Resolves when the reads asked for so far are done.
   */
  refresh() {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.readAgain = false;
        try {
          const session = await fetchSession(this.opts, { keepAlive: false });
          if (!this.stopped) this.onSession(session);
        } catch {
          // No token (logged out, expired) or kited away: keep the current one; the next
          // token_new or reconnect reads again.
        }
      } while (this.readAgain && !this.stopped);
      this.reading = null;
    })();
    return this.reading;
  }
}

module.exports = { Follower, FIRST_BACKOFF_MS, MAX_BACKOFF_MS };
