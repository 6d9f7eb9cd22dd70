'use strict';
// A deliberately small RESP2 client: just enough to read kited's token from Redis (AUTH, SELECT,
// GET) and follow its channel (SUBSCRIBE). It is strict: anything that is not well-formed RESP2
// ends the connection with a KitedError, and connecting and every reply are timed out, so a wrong
// server or a dead network never leaves the caller waiting.

const net = require('node:net');
const tls = require('node:tls');
const { KitedError } = require('./errors');

/** How long connecting, authenticating and an ordinary reply may take. */
const REPLY_TIMEOUT_MS = 5000;
/** The longest simple-string, error or length line accepted: real replies are far shorter. */
const MAX_LINE = 4096;
/** The longest bulk string accepted: kited's token value is a few hundred bytes. */
const MAX_BULK = 1024 * 1024;
/** The most elements in one array reply (pub/sub messages have 3). */
const MAX_ARRAY = 1024;

function redisError(message) {
  return new KitedError('redis', message);
}

/**
 * `redis://[user[:password]@]host[:port][/db]` or `rediss://...` (TLS). The password comes from
 * `password`, else `KITED_REDIS_PASSWORD`, else the URL; the username from `username` or the URL.
 */
function parseRedisUrl(text, { username, password } = {}) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw redisError('KITED_REDIS_URL is not a URL (expected redis://host:port/db or rediss://...)');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw redisError(`KITED_REDIS_URL must start with redis:// or rediss://, not ${url.protocol}//`);
  }
  const dbText = url.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d+$/.test(dbText)) {
    throw redisError(`the database in KITED_REDIS_URL must be a number, not ${JSON.stringify(dbText)}`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    tls: url.protocol === 'rediss:',
    host: host || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    db: dbText === '' ? 0 : Number(dbText),
    username: username || decodeURIComponent(url.username) || undefined,
    password:
      password || process.env.KITED_REDIS_PASSWORD || decodeURIComponent(url.password) || undefined,
  };
}

/** Where a URL points, without any password: for messages. */
function describe(cfg) {
  return `${cfg.tls ? 'rediss' : 'redis'}://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${cfg.port}/${cfg.db}`;
}

/**
 * Incremental RESP2 parser over a Buffer. `next()` returns a parsed value, `undefined` when more
 * bytes are needed, and throws a KitedError on anything malformed. Errors from the server come
 * back as `{ redisError: 'text' }`.
 */
class Parser {
  constructor() {
    this.buf = Buffer.alloc(0);
  }

  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  next() {
    const parsed = this.parseAt(0);
    if (parsed === undefined) return undefined;
    this.buf = this.buf.subarray(parsed.end);
    return parsed.value;
  }

  line(at) {
    const cr = this.buf.indexOf('\r\n', at, 'latin1');
    if (cr < 0) {
      if (this.buf.length - at > MAX_LINE) throw redisError('Redis sent a line that never ends: not a Redis server?');
      return undefined;
    }
    if (cr - at > MAX_LINE) throw redisError('Redis sent an over-long line: not a Redis server?');
    return { text: this.buf.toString('utf8', at + 1, cr), end: cr + 2 };
  }

  integer(text, what) {
    if (!/^-?\d{1,18}$/.test(text)) throw redisError(`Redis sent a malformed ${what} (${JSON.stringify(text.slice(0, 40))})`);
    return Number(text);
  }

  parseAt(at) {
    if (at >= this.buf.length) return undefined;
    const type = String.fromCharCode(this.buf[at]);
    const l = this.line(at);
    if (l === undefined) return undefined;
    switch (type) {
      case '+':
        return { value: l.text, end: l.end };
      case '-':
        return { value: { redisError: l.text }, end: l.end };
      case ':':
        return { value: this.integer(l.text, 'integer'), end: l.end };
      case '$': {
        const len = this.integer(l.text, 'bulk length');
        if (len === -1) return { value: null, end: l.end };
        if (len < 0 || len > MAX_BULK) throw redisError(`Redis sent a bulk string of impossible length ${len}`);
        if (this.buf.length < l.end + len + 2) return undefined;
        if (this.buf[l.end + len] !== 13 || this.buf[l.end + len + 1] !== 10) {
          throw redisError('Redis sent a bulk string without its closing CRLF');
        }
        return { value: this.buf.toString('utf8', l.end, l.end + len), end: l.end + len + 2 };
      }
      case '*': {
        const n = this.integer(l.text, 'array length');
        if (n === -1) return { value: null, end: l.end };
        if (n < 0 || n > MAX_ARRAY) throw redisError(`Redis sent an array of impossible length ${n}`);
        const items = [];
        let end = l.end;
        for (let i = 0; i < n; i++) {
          const item = this.parseAt(end);
          if (item === undefined) return undefined;
          items.push(item.value);
          end = item.end;
        }
        return { value: items, end };
      }
      default: {
        const shown = this.buf.toString('latin1', at, Math.min(at + 20, this.buf.length));
        throw redisError(`Redis answered something that is not RESP (${JSON.stringify(shown)}): is that a Redis server?`);
      }
    }
  }
}

function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}

/**
 * One connection. `command(...args)` resolves with the reply (rejecting on a Redis error reply);
 * after `subscribe(channel, onMessage)` the connection only delivers messages. `onEnd(err)` is
 * called once when the connection ends for any reason other than `close()`.
 */
class RedisConnection {
  constructor(cfg, { keepAlive = true, timeoutMs = REPLY_TIMEOUT_MS } = {}) {
    this.cfg = cfg;
    this.keepAlive = keepAlive;
    this.timeoutMs = timeoutMs;
    this.parser = new Parser();
    this.pending = [];
    this.ended = false;
    this.closing = false;
    this.onMessage = null;
    this.onEnd = () => {};
  }

  /** Connects, then AUTH and SELECT as the URL says. */
  async open() {
    const { cfg } = this;
    await new Promise((resolve, reject) => {
      const options = { host: cfg.host, port: cfg.port };
      const sock = cfg.tls
        ? tls.connect({ ...options, servername: net.isIP(cfg.host) ? undefined : cfg.host })
        : net.connect(options);
      this.sock = sock;
      if (!this.keepAlive) sock.unref();
      const timer = setTimeout(() => {
        this.end(redisError(`connecting to Redis at ${describe(cfg)} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      if (!this.keepAlive) timer.unref();
      let connected = false;
      sock.once(cfg.tls ? 'secureConnect' : 'connect', () => {
        connected = true;
        clearTimeout(timer);
        resolve();
      });
      sock.on('data', (chunk) => this.receive(chunk));
      sock.on('error', (err) => {
        this.end(redisError(`Redis at ${describe(cfg)}: ${err.message}`));
      });
      sock.on('close', () => {
        clearTimeout(timer);
        this.end(redisError(`Redis at ${describe(cfg)} closed the connection`));
      });
      this.onOpenFail = (err) => {
        clearTimeout(timer);
        if (!connected) reject(err);
      };
    });
    if (cfg.password !== undefined) {
      const args = cfg.username ? ['AUTH', cfg.username, cfg.password] : ['AUTH', cfg.password];
      await this.command(...args).catch((err) => {
        throw redisError(`Redis at ${describe(cfg)} refused the login: ${err.message.replace(cfg.password, '***')}`);
      });
    }
    if (cfg.db !== 0) await this.command('SELECT', cfg.db);
  }

  receive(chunk) {
    this.parser.push(chunk);
    for (;;) {
      let value;
      try {
        value = this.parser.next();
      } catch (err) {
        this.end(err);
        return;
      }
      if (value === undefined) return;
      this.deliver(value);
      if (this.ended) return;
    }
  }

  deliver(value) {
    if (this.onMessage && Array.isArray(value) && value[0] === 'message' && value.length === 3) {
      this.onMessage(value[1], value[2]);
      return;
    }
    const waiter = this.pending.shift();
    if (!waiter) {
      this.end(redisError('Redis sent a reply nobody asked for: not a Redis server?'));
      return;
    }
    clearTimeout(waiter.timer);
    if (value && typeof value === 'object' && 'redisError' in value) {
      waiter.reject(redisError(`Redis error: ${value.redisError}`));
    } else {
      waiter.resolve(value);
    }
  }

  command(...args) {
    if (this.ended) return Promise.reject(redisError(`the connection to Redis at ${describe(this.cfg)} is closed`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.end(redisError(`Redis at ${describe(this.cfg)} did not answer ${args[0]} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      if (!this.keepAlive) timer.unref();
      this.pending.push({ resolve, reject, timer });
      this.sock.write(encode(args));
    });
  }

  /** SUBSCRIBE: resolves once Redis confirms; then every message goes to `onMessage(channel, text)`. */
  async subscribe(channel, onMessage) {
    const reply = await this.command('SUBSCRIBE', channel);
    if (!Array.isArray(reply) || reply[0] !== 'subscribe' || reply[1] !== channel) {
      const err = redisError('Redis answered SUBSCRIBE with something else: not a Redis server?');
      this.end(err);
      throw err;
    }
    this.onMessage = onMessage;
  }

  end(err) {
    if (this.ended) return;
    this.ended = true;
    if (this.onOpenFail) this.onOpenFail(err);
    for (const waiter of this.pending.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    if (this.sock) this.sock.destroy();
    if (!this.closing) this.onEnd(err);
  }

  close() {
    this.closing = true;
    this.end(redisError('closed'));
  }
}

/** Connects (with AUTH and SELECT), runs `GET key`, and closes. */
async function getKey(cfg, key, { keepAlive = true } = {}) {
  const conn = new RedisConnection(cfg, { keepAlive });
  try {
    await conn.open();
    const value = await conn.command('GET', key);
    if (value !== null && typeof value !== 'string') {
      throw redisError(`Redis answered GET ${key} with something other than a string`);
    }
    return value;
  } finally {
    conn.close();
  }
}

module.exports = { RedisConnection, Parser, parseRedisUrl, getKey, describe, REPLY_TIMEOUT_MS };
